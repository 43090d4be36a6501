"""Dagster instances beyond the test default: the documented PostgreSQL variant, and a real webserver whose
GraphQL API launches a materialisation."""

import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_graphql import DagsterGraphQLClient
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL
from tests.scratch import scratch_postgres
from tests.serving import free_port
from tt_assets.definitions import defs
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_resources.config import PROJECT_ROOT

RUN_CONFIG = {
    "ops": {
        "market_data": {"config": {"start": "2026-11-10T22:00:00+00:00", "end": "2026-11-20T22:00:00+00:00"}}
    }
}


@pytest.fixture
def scratch_pg_database():
    """An empty PostgreSQL database for Dagster's own storage; dropped afterwards."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, "dagster_test"))
        except sa.exc.OperationalError as exc:
            pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
        yield make_url(url)


def test_postgres_instance_runs_and_keeps_history(scratch_pg_database, sqlite_engine, tmp_path, monkeypatch):
    url = scratch_pg_database
    shutil.copy(PROJECT_ROOT / "dagster.postgres.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "unused-with-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    resources = {
        "database": DatabaseResource(url=sqlite_engine.url.render_as_string(hide_password=False)),
        "market_data": MarketDataResource(),
        "watchlist": WatchlistResource(),
    }
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("symbol", ["AAPL"])
        result = defs.resolve_job_def("market_data_job").execute_in_process(
            instance=instance, partition_key="AAPL|1d", run_config=RUN_CONFIG, resources=resources
        )
        assert result.success
    with dg.DagsterInstance.get() as reopened:  # a fresh instance reads the history back from PostgreSQL
        [run] = reopened.get_runs()
        assert run.run_id == result.run_id and run.status == dg.DagsterRunStatus.SUCCESS
        event = reopened.get_latest_materialization_event(dg.AssetKey("raw_bars"))
        assert event.asset_materialization.partition == "AAPL|1d"


@pytest.mark.slow
def test_webserver_graphql_launches_a_materialisation(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # no daemon here: runs launch immediately instead of waiting in the queue
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tt.sqlite'}",
        "TT_SOURCE": "synthetic",
    }
    port = free_port()
    webserver = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        [*webserver, "-w", str(PROJECT_ROOT / "workspace.yaml")],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("symbol", ["AAPL"])
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                run_id = client.submit_job_execution(
                    "market_data_job",
                    run_config=RUN_CONFIG,
                    tags={
                        "dagster/partition": "AAPL|1d",
                        "dagster/partition/symbol": "AAPL",
                        "dagster/partition/timeframe": "1d",
                    },
                )
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        status = None
        while time.monotonic() < deadline + 120:
            status = client.get_run_status(run_id)
            if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
                break
            time.sleep(1)
        assert status == dg.DagsterRunStatus.SUCCESS
    finally:
        server.terminate()
        server.wait(timeout=30)
