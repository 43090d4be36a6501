"""Processes started together on a fresh database / Dagster home all succeed: the schema migration and the
Dagster instance's first creation run under a lock instead of racing (real `tt` processes, not threads)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tt_resources.db.engine import create_engine

HANG_TIMEOUT = 300  # seconds; only bounds a hang, the processes normally end in seconds


def run_together(
    args: list[str], env: dict[str, str], directory: Path, copies: int = 2
) -> list[tuple[int, str]]:
    """Start `copies` identical `tt <args>` processes at once (output to files in `directory`), then wait for
    all; (exit code, output) of each."""
    return run_each([args] * copies, env, directory)


def run_each(
    commands: list[list[str]], env: dict[str, str], directory: Path, hang_timeout: float = HANG_TIMEOUT
) -> list[tuple[int, str]]:
    """Start a `tt <args>` process per entry of `commands` at once (output to files in `directory`), then
    wait for all (each at most `hang_timeout` seconds: a bound against hangs); (exit code, output) of each."""
    logs = [directory / f"tt-{i}.log" for i in range(len(commands))]
    procs = []
    try:
        for args, log in zip(commands, logs, strict=True):
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tt_cli", *args],
                        cwd=directory,
                        env=os.environ | {"COLUMNS": "200"} | env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [proc.wait(timeout=hang_timeout) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return [(code, log.read_text()) for code, log in zip(codes, logs, strict=True)]


def assert_all_succeeded(results: list[tuple[int, str]]) -> None:
    failed = [output for code, output in results if code != 0]
    assert not failed, failed[0]


@pytest.mark.slow
def test_concurrent_db_upgrade_on_fresh_sqlite_file_all_succeed(tmp_path):
    for attempt in range(5):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        url = f"sqlite:///{directory / 'tt.sqlite'}"
        assert_all_succeeded(run_together(["db", "upgrade"], {"DATABASE_URL": url}, directory))


@pytest.mark.slow
def test_concurrent_db_upgrade_on_fresh_postgres_database_all_succeed(pg_database, tmp_path):
    for attempt in range(5):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        url = pg_database.empty()
        assert_all_succeeded(run_together(["db", "upgrade"], {"DATABASE_URL": url}, directory))


@pytest.mark.slow
def test_concurrent_ingest_via_dagster_on_fresh_home_all_succeed_and_store_each_bar_once(tmp_path):
    start = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%d")
    args = ["ingest", "--via-dagster", "--symbols", "AAA", "--timeframe", "1d", "--start", start]
    for attempt in range(3):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        url = f"sqlite:///{directory / 'tt.sqlite'}"
        env = {
            "DATABASE_URL": url,
            "TT_DATA_DIR": str(directory / "data"),
            "DAGSTER_HOME": str(directory / "dagster_home"),
            "TT_SOURCE": "synthetic",
        }
        assert_all_succeeded(run_together(args, env, directory))
        engine = create_engine(url)
        with engine.connect() as conn:
            bars, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT ts) FROM tt_prices")).one()
        engine.dispose()
        assert bars == distinct > 0
