"""Database faults in the middle of `tt ingest` cost only the partitions they hit, each told in one line,
and the summary's counts are the database's.

Faults are real: a PostgreSQL trigger terminates its own backend (`pg_terminate_backend`, the server's
AdminShutdown, as when an operator or a failover ends the connections) whenever a given partition's rows are
written, so the hit partitions and the reconnect attempt are known in advance; a full disk is a small tmpfs
holding the SQLite file (skipped where mounting is not permitted).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.scratch import PG_ADMIN_URL, scratch_postgres
from tests.test_ingest_cli import summary_rows
from tt_cli.common import SUMMARY_COUNTS
from tt_cli.main import cli
from tt_resources.db.engine import create_engine
from tt_resources.db.faults import DatabaseFault, with_reconnect
from tt_resources.db.migrate import upgrade

START = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=60)).strftime("%Y-%m-%d")
LOST = "database connection lost"
WRITTEN, STORED = list(SUMMARY_COUNTS).index("bars written"), list(SUMMARY_COUNTS).index("bars stored")

# a backend writing a row of the partition `symbol` terminates itself: every attempt at it is cut
CUT = """
CREATE FUNCTION tt_test_cut() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
    RETURN NEW;
END $$;
CREATE TRIGGER cut_prices BEFORE INSERT OR UPDATE ON tt_prices
    FOR EACH ROW WHEN (NEW.symbol = 'BBB') EXECUTE FUNCTION tt_test_cut();
CREATE TRIGGER cut_features BEFORE INSERT OR UPDATE ON tt_features
    FOR EACH ROW WHEN (NEW.symbol = 'CCC') EXECUTE FUNCTION tt_test_cut();
"""


def ingest(url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, ["ingest", *args], env={"DATABASE_URL": url, "COLUMNS": "200", **env})


def stored_bars(url: str) -> dict[str, int]:
    """symbol -> its bars in tt_prices."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT symbol, count(*) FROM tt_prices GROUP BY symbol")).all()
    finally:
        engine.dispose()
    return dict(rows)


@pytest.fixture(scope="module")
def cut_postgres() -> str:
    """A migrated scratch PostgreSQL database whose connections die writing BBB's bars or CCC's features."""
    try:
        with scratch_postgres(PG_ADMIN_URL, "tt_fault") as url:
            engine = create_engine(url)
            upgrade(engine)
            with engine.begin() as conn:
                conn.execute(sa.text(CUT))
            engine.dispose()
            yield url
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")


@pytest.mark.parametrize("via_dagster", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_terminated_connections_cost_only_the_partitions_they_hit(cut_postgres, tmp_path, via_dagster):
    with create_engine(cut_postgres).begin() as conn:
        conn.execute(sa.text("DELETE FROM tt_features; DELETE FROM tt_prices"))
    args = ["--symbols", "AAA,BBB,CCC,DDD", "--interval", "1d", "--start", START]
    result = ingest(
        cut_postgres,
        *args,
        *(["--via-dagster"] if via_dagster else []),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        TT_DATA_DIR=str(tmp_path),
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "sqlalchemy" not in result.output
    stored = stored_bars(cut_postgres)
    assert set(stored) == {"AAA", "CCC", "DDD"}  # BBB's bars never commit; CCC's do, its features do not
    failed = [line for line in result.output.splitlines() if line.startswith("failed ")]
    # the server's message, or psycopg's when the cut came in the middle of a COPY
    assert [line.split(": ")[:2] for line in failed] == [["failed BBB 1d", LOST], ["failed CCC 1d", LOST]]
    assert all("the reconnect attempt failed too" in line for line in failed)
    assert failed[0].endswith(" (0 bars stored)") and failed[1].endswith(f" ({stored['CCC']:,} bars stored)")
    cells = summary_rows(result.output)["1d"]
    assert cells[:4] == ["4", "0", "2", "2"]  # partitions, fresh, updated, failed
    assert cells[WRITTEN] == cells[STORED] == f"{sum(stored.values()):,}"


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs under tmp_path, unmounted afterwards; skip where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_fails_the_partitions_that_do_not_fit_and_the_summary_counts_what_was_stored(
    small_disk, tmp_path
):
    url = f"sqlite:///{small_disk / 'tt.sqlite'}"
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    result = ingest(url, "--symbols", ",".join(symbols), "--interval", "1d", TT_DATA_DIR=str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    stored = stored_bars(url)
    failed = [line for line in result.output.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1, result.output  # one line for the one cause, naming every partition it cost
    named = re.fullmatch(
        r"failed (?:(\w+) 1d|(\d) partitions \((.+)\)): database disk full: database or disk is full "
        r"\(([\d,]+) bars stored\)",
        failed[0],
    )
    assert named, failed[0]
    lost = [named[1]] if named[1] else [name.removesuffix(" 1d") for name in named[3].split(", ")]
    assert named[2] is None or int(named[2]) == len(lost)
    assert named[4] == f"{sum(stored.get(symbol, 0) for symbol in lost):,}"
    cells = summary_rows(result.output)["1d"]
    assert cells[3] == str(len(lost)) and len(lost) < len(symbols)
    assert cells[WRITTEN] == cells[STORED] == f"{sum(stored.values()):,}"


def test_only_a_lost_connection_is_retried_once_and_any_other_error_passes_unchanged(sqlite_engine):
    calls = []

    def missing_table():
        calls.append(1)
        with sqlite_engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        with_reconnect(missing_table, pause_s=0)
    assert len(calls) == 1  # a bug or bad data is neither retried nor hidden

    closed = create_engine("postgresql://postgres@127.0.0.1:1/none")  # nothing listens on port 1

    def unreachable():
        calls.append(2)
        with closed.connect():
            pass

    with pytest.raises(DatabaseFault) as fault:
        with_reconnect(unreachable, pause_s=0)
    assert calls.count(2) == 2  # one reconnect attempt
    assert str(fault.value).startswith(f"{LOST}: connection failed: ")
    assert str(fault.value).endswith("; the reconnect attempt failed too")
    assert "\n" not in str(fault.value)


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
# BBB's first write sleeps until the test has restarted the server under it; later writes go through
SLEEP_ONCE = """
CREATE SEQUENCE tt_test_once;
CREATE FUNCTION tt_test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('tt_test_once') = 1 THEN PERFORM pg_sleep(600); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sleep_prices BEFORE INSERT ON tt_prices
    FOR EACH ROW WHEN (NEW.symbol = 'BBB') EXECUTE FUNCTION tt_test_sleep();
"""


@pytest.fixture
def own_server():
    """URL of a database on a PostgreSQL server of the test's own (initdb in /tmp, a free port), and a
    function that restarts it (fast shutdown: every connection is ended); skipped without PostgreSQL's
    binaries or root (the server runs as user postgres)."""
    from tests.serving import free_port

    if not PG_BINS or os.geteuid() != 0:
        pytest.skip("needs /usr/lib/postgresql/*/bin and root to run a server as user postgres")
    home = Path(tempfile.mkdtemp(prefix="tt_pg_"))  # tmp_path's parents are closed to user postgres
    shutil.chown(home, "postgres")
    bin_dir, data, port = PG_BINS[-1], home / "data", free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "pg.log"), "-w"]
    options = ["-o", f"-p {port} -k {home} -c fsync=off"]
    as_postgres(*ctl, *options, "start")
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            lambda: as_postgres(*ctl, *options, "-m", "fast", "restart"),
        )
    finally:
        as_postgres(*ctl, "-m", "immediate", "stop")
        shutil.rmtree(home)


@pytest.mark.slow
def test_a_server_restart_costs_at_most_the_partition_it_hit(own_server, tmp_path):
    url, restart = own_server
    engine = create_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(SLEEP_ONCE))
    env = {**os.environ, "DATABASE_URL": url, "TT_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    args = ["--symbols", "AAA,BBB,CCC,DDD", "--interval", "1d", "--start", START]
    tt = subprocess.Popen(
        [sys.executable, "-m", "tt_cli", "ingest", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        sleeping = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
        while tt.poll() is None:  # bound: the test run's own timeout
            with engine.connect() as conn:
                if conn.execute(sleeping).scalar_one():
                    break
            time.sleep(0.2)
        assert tt.poll() is None, "the ingest ended before BBB's first write slept"
        engine.dispose()
        restart()
        output = tt.communicate(timeout=600)[0].decode()
    finally:
        tt.kill()
    assert "Traceback" not in output
    failed = [line for line in output.splitlines() if line.startswith("failed ")]
    # BBB's reconnect attempt finds the server up again (BBB is stored) or still starting (one line for it)
    assert all(line.startswith(f"failed BBB 1d: {LOST}: ") for line in failed) and len(failed) <= 1, output
    assert tt.returncode == (1 if failed else 0), output
    stored = stored_bars(url)
    assert set(stored) == ({"AAA", "CCC", "DDD"} if failed else {"AAA", "BBB", "CCC", "DDD"})
    cells = summary_rows(output)["1d"]
    assert cells[:4] == ["4", "0", str(4 - len(failed)), str(len(failed))]
    assert cells[WRITTEN] == cells[STORED] == f"{sum(stored.values()):,}"
