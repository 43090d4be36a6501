"""Scale-out on Celery: real RabbitMQ, two real Celery workers started by `tt workers`, a Dagster instance on
PostgreSQL (dagster.celery.yaml) and TT_EXECUTOR=celery.

Each test uses its own Celery queue, worker names, Dagster database and platform database, so parallel test
sessions on one broker never take each other's steps. Waits are bounded against hangs only.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL
from tests.fake_ibgateway import FakeIBGateway, Faults, pacing_breaks
from tests.scratch import scratch_postgres
from tests.test_concurrent_start import assert_all_succeeded, run_each
from tt_resources import calendar
from tt_resources.config import PROJECT_ROOT, Settings
from tt_resources.db.engine import create_engine
from tt_resources.db.prices import read_bars
from tt_resources.pacing import PacingRules

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1500)]

BROKER = Settings.model_fields["tt_celery_broker"].default
READY_PINGS = 300  # pings (1 s each) for the workers to come up: a bound against hangs only
STOP_TIMEOUT_S = 300  # warm shutdown of idle workers: a bound against hangs only
RULES = PacingRules(mode="strict", max_requests=6, window_s=3.0)  # IBKR's identical and per-contract rules
TIMEFRAMES = ("1d", "1h", "15m")
SYMBOL_SETS = (("AAPL", "MSFT"), ("NVDA", "AMZN"))  # one `tt ingest` process each, at once


@dataclass
class Site:
    """One scale-out site: the environment every process shares and the worker names."""

    env: dict[str, str]
    home: Path
    workers: tuple[str, ...]

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The site's Dagster instance, opened with the site's DAGSTER_PG_* variables."""
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.env.items():
                if name.startswith("DAGSTER_PG_"):
                    patch.setenv(name, value)
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance


@contextmanager
def celery_site(directory: Path, env: dict[str, str]) -> Iterator[Site]:
    """A Dagster instance on a fresh PostgreSQL database (dagster.celery.yaml), a fresh platform database,
    a queue of its own and two `tt workers` processes reading it (stopped with Ctrl-C on exit)."""
    with ExitStack() as stack:
        try:
            dagster_db = make_url(stack.enter_context(scratch_postgres(PG_ADMIN_URL, "dagster_celery")))
            platform_db = stack.enter_context(scratch_postgres(PG_ADMIN_URL, "tt_celery"))
        except sa.exc.OperationalError as exc:
            pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
        home = directory / "dagster_home"
        home.mkdir()
        shutil.copy(PROJECT_ROOT / "dagster.celery.yaml", home / "dagster.yaml")
        tag = uuid.uuid4().hex[:8]
        site_env = {
            **env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": dagster_db.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(dagster_db.port or 5432),
            "DAGSTER_PG_USER": dagster_db.username or "postgres",
            "DAGSTER_PG_PASSWORD": dagster_db.password or "unused-with-trust-auth",
            "DAGSTER_PG_DB": dagster_db.database,
            "DATABASE_URL": platform_db,
            "TT_DATA_DIR": str(directory / "data"),
            "TT_EXECUTOR": "celery",
            "TT_CELERY_QUEUE": f"tt-test-{tag}",
        }
        prefix = f"t{tag}-w"
        site = Site(site_env, home, (_node(f"{prefix}1"), _node(f"{prefix}2")))
        stack.enter_context(_workers(site, prefix, directory / "workers.log"))
        yield site


def _node(name: str) -> str:
    from celery.utils.nodenames import host_format

    return host_format(f"{name}@%h")


@contextmanager
def _workers(site: Site, prefix: str, log: Path) -> Iterator[None]:
    """`tt workers -n 2` in its own session, up once both workers answer a ping; Ctrl-C (SIGINT) on exit."""
    from celery import Celery

    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tt_cli", "workers", "-n", "2", "--prefix", prefix],
            env=os.environ | site.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = Celery(broker=BROKER)
    try:
        for _ in range(READY_PINGS):
            assert process.poll() is None, log.read_text()
            answered = {name for reply in app.control.ping(list(site.workers), timeout=1.0) for name in reply}
            if answered == set(site.workers):
                break
        else:
            pytest.fail(f"workers did not answer within {READY_PINGS} pings:\n{log.read_text()}")
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def celery_steps(instance: dg.DagsterInstance) -> list[tuple[str, str, str]]:
    """(run id, step key, worker) of every step a Celery worker executed, from the engine event
    dagster-celery records as the worker starts the step ("Executing steps <keys> in celery worker")."""
    steps = []
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.get_dagster_event()
            metadata = event.engine_event_data.metadata
            if "Celery worker" in metadata:
                steps.append((run.run_id, event.step_key, metadata["Celery worker"].value))
    return steps


# ------------------------------------------------------------------ a raw_bars + features backfill over IBKR


@dataclass
class Backfill:
    site: Site
    gateway: FakeIBGateway
    start: pd.Timestamp
    cutoff: pd.Timestamp
    results: list[tuple[int, str]]


@pytest.fixture(scope="module")
def ibkr_backfill(tmp_path_factory) -> Iterator[Backfill]:
    """Two `tt ingest --via-dagster --source ibkr --interval all` processes at once (two symbols each) on the
    celery executor, two workers, the `ibkr` pool at 2 so fetching steps overlap, and one stand-in gateway
    enforcing IBKR's pacing over every connection (it answers once both workers are connected)."""
    directory = tmp_path_factory.mktemp("celery_backfill")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    gateway = FakeIBGateway(now, rules=RULES)
    gateway.faults = Faults(answer_after_clients=2)
    gateway.start()
    start = (now - pd.Timedelta(days=20)).normalize()
    cutoff = now.normalize()  # --end: the target bar cannot move while the runs go on
    env = {
        "IB_PORT": str(gateway.port),
        "IB_CLIENT_ID": "40",
        "IB_TIMEOUT_S": "600",  # the first worker's requests wait for the second to connect
        "TT_IB_PACING": "strict",
        "TT_IB_MAX_REQUESTS": str(RULES.max_requests),
        "TT_IB_WINDOW_S": str(RULES.window_s),
    }
    try:
        with celery_site(directory, env) as site:
            pool = ["dagster", "instance", "concurrency", "set", "ibkr", "2"]
            subprocess.run([sys.executable, "-m", *pool], env=os.environ | site.env, check=True)
            ingest = ["ingest", "--via-dagster", "--source", "ibkr", "--interval", "all"]
            window = ["--start", f"{start:%Y-%m-%d}", "--end", f"{cutoff:%Y-%m-%d}"]
            commands = [[*ingest, "--symbols", ",".join(s), *window] for s in SYMBOL_SETS]
            results = run_each(commands, site.env, directory)
            yield Backfill(site, gateway, start, cutoff, results)
    finally:
        gateway.stop()


def test_backfill_processes_succeed(ibkr_backfill):
    assert_all_succeeded(ibkr_backfill.results)


def test_backfill_steps_ran_on_both_workers(ibkr_backfill):
    with ibkr_backfill.site.instance() as instance:
        workers = {worker for _, _, worker in celery_steps(instance)}
    assert workers == set(ibkr_backfill.site.workers)


def test_backfill_materialised_every_partition_exactly_once(ibkr_backfill):
    expected = {f"{s}|{tf}" for symbols in SYMBOL_SETS for s in symbols for tf in TIMEFRAMES}
    with ibkr_backfill.site.instance() as instance:
        for asset in ("raw_bars", "features"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            keys = sorted(r.partition_key for r in records)
            assert keys == sorted(expected), asset


def test_backfill_stored_each_bar_once(ibkr_backfill):
    engine = create_engine(ibkr_backfill.site.env["DATABASE_URL"])
    try:
        for symbols in SYMBOL_SETS:
            for symbol in symbols:
                for timeframe in TIMEFRAMES:
                    end = calendar.last_closed_bar(timeframe, ibkr_backfill.cutoff) + pd.Timedelta(seconds=1)
                    stored = read_bars(engine, [symbol], timeframe)
                    expected = ibkr_backfill.gateway.expected(symbol, timeframe, ibkr_backfill.start, end)
                    assert list(stored["ts"]) == list(expected["ts"]), (symbol, timeframe)
    finally:
        engine.dispose()


def test_backfill_workers_fetched_at_once_on_distinct_client_ids(ibkr_backfill):
    # the stand-in refuses a second connection on a client id in use (error 326), as IB does, and answers
    # only once two client ids are connected: the workers' connections overlapped, each on its own id
    historical = ibkr_backfill.gateway.historical()
    assert len({r.client_id for r in historical}) >= 2
    assert any(a.client_id != b.client_id for a, b in itertools.pairwise(historical))


def test_backfill_held_the_pacing_budget_across_both_workers(ibkr_backfill):
    historical = ibkr_backfill.gateway.historical()
    assert not ibkr_backfill.gateway.violations()
    assert not pacing_breaks(historical, RULES)


# ------------------------------------------------------------------ walk-forward training over the workers

FOLDS, SEEDS = 2, 2


@dataclass
class Training:
    site: Site
    result: tuple[int, str]


@pytest.fixture(scope="module")
def celery_training(tmp_path_factory) -> Iterator[Training]:
    """`tt train --via-dagster` (synthetic bars of 3 symbols, 2 folds x 2 seeds of a short PPO) on the celery
    executor with two workers."""
    directory = tmp_path_factory.mktemp("celery_training")
    config = directory / "rl.json"
    config.write_text(
        '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}, "env": {"max_episode_steps": 50},'
        f' "eval": {{"n_folds": {FOLDS}, "seeds": {SEEDS}}}}}'
    )
    train = ["train", "--via-dagster", "--limit", "3", "--steps", "128", "--months", "14"]
    with celery_site(directory, {"TT_SOURCE": "synthetic"}) as site:
        [result] = run_each([[*train, "--config", str(config)]], site.env, directory)
        yield Training(site, result)


def test_training_on_workers_succeeds(celery_training):
    assert_all_succeeded([celery_training.result])


def test_training_on_workers_gets_the_stitched_evaluation_of_every_fold_and_seed(celery_training):
    from tt_resources.db import registry
    from tt_resources.terms import AGENT

    with celery_training.site.instance() as instance:
        model = instance.get_latest_materialization_event(dg.AssetKey("ppo_model")).asset_materialization
        scored = instance.get_latest_materialization_event(dg.AssetKey("evaluation")).asset_materialization
    assert len(model.metadata["fold_models"].value) == FOLDS * SEEDS
    assert scored.metadata["model_id"].value == model.metadata["model_id"].value
    engine = create_engine(celery_training.site.env["DATABASE_URL"])
    try:
        stitched = registry.stitched_metrics(engine, model.metadata["model_id"].value)
    finally:
        engine.dispose()
    assert AGENT in set(stitched["policy"])


def test_training_steps_ran_on_the_workers(celery_training):
    with celery_training.site.instance() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        workers = {worker for run_id, _, worker in celery_steps(instance) if run_id == run.run_id}
    assert workers and workers <= set(celery_training.site.workers)
