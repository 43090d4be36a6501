"""Bad `tt` input is answered in one line with exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from tests.scratch import PG_ADMIN_URL
from tt_cli import common, db
from tt_cli.main import cli
from tt_resources import config
from tt_resources.db import create_engine, upsert_price_bars
from tt_resources.sources.settings import SYNTHETIC_END
from tt_resources.watchlist import check_symbol

# a session (a Monday) shortly before the synthetic market's pinned end, on any day the suite runs (it was 10
# days before the wall clock: a Saturday on 2026-12-08, whose first stored bar is the Monday after, and past
# the pinned end from 2026-12-11 on)
RECENT = "2026-11-16"
assert pd.Timestamp(RECENT) < pd.Timestamp(SYNTHETIC_END)
URL_HELP = "use sqlite:///<file> or postgresql[+psycopg]://user:password@host:port/database"


def tt(tmp_path: Path, *args: str, **env: str | None):
    """`tt *args` with the data directory, the SQLite file and a one-symbol watchlist under tmp_path."""
    watchlist = tmp_path / "watchlist.csv"
    if not watchlist.exists():
        watchlist.write_text("symbol\nAAA\n")
    defaults = {
        "TT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tt.sqlite'}",
        "TT_WATCHLIST": str(watchlist),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(cli, list(args), env=defaults | env)


def one_line(result, exit_code: int = 2) -> str:
    """The only line of a failed command's output (checked: exit code, no traceback)."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def usage_error(result) -> str:
    """click's own error line (after its usage hint) of a rejected option value."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def price_rows(tmp_path: Path) -> int | None:
    """tt_prices rows in the test's SQLite file; None when the file was never created."""
    path = tmp_path / "tt.sqlite"
    if not path.exists():
        return None
    with create_engine(f"sqlite:///{path}").connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM tt_prices")).scalar_one()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--months", "100000"], "'--months': 100000 is not in the range 1<=x<=600"),
        (["train", "--source", "nosuch"], "'--source': 'nosuch' is not one of"),
        (["ingest", "--end", "2025-13-01"], "'--end': '2025-13-01' does not match the formats"),
    ],
)
def test_option_values_out_of_range_are_rejected_by_click(tmp_path, args, message):
    assert message in usage_error(tt(tmp_path, *args))
    assert price_rows(tmp_path) is None and not (tmp_path / "data" / "models").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["ingest", "--start", "2030-01-01"],
            "--start 2030-01-01 is in the future: no bar has closed since then",
        ),
        (
            ["ingest", "--end", "2030-01-01 12:30"],
            "--end 2030-01-01 12:30 is in the future; leave it out to take every bar closed by now",
        ),
        (
            ["train", "--start", "2030-01-01", "--end", "2031-01-01"],
            "--start 2030-01-01 is in the future: no bar has closed since then",
        ),
        (
            ["ingest", "--start", "1960-01-01"],
            "--start 1960-01-01 is before 1970-01-01, where the platform's calendars start",
        ),
        (
            ["train", "--months", "600", "--end", "1980-01-01"],
            "--months 600 (from 1930-01-01) is before 1970-01-01",
        ),
        (
            ["ingest", "--start", "2025-02-01", "--end", "2025-01-01"],
            "--start 2025-02-01 is not before --end 2025-01-01",
        ),
    ],
)
def test_a_window_with_nothing_to_fetch_is_bad_input(tmp_path, args, line):
    assert one_line(tt(tmp_path, *args)).startswith(f"Error: {line}")
    assert price_rows(tmp_path) is None


@pytest.mark.parametrize(("symbol", "exit_code"), [("AAA", 0), ("BBB", 1)])
def test_partitions_with_no_bar_in_the_asked_window_say_so(tmp_path, symbol, exit_code):
    assert tt(tmp_path, "ingest", "--symbols", "AAA", "--timeframe", "1d", "--start", RECENT).exit_code == 0
    before = price_rows(tmp_path)
    result = tt(tmp_path, "ingest", "--symbols", symbol, "--timeframe", "1d", "--end", "2010-01-01")
    assert result.exit_code == exit_code, result.output
    held = f"stored {RECENT}" if symbol == "AAA" else "none stored"
    assert f"--end 2010-01-01: no bar closed before it for {symbol} 1d ({held}" in result.output
    assert price_rows(tmp_path) == before


@pytest.mark.parametrize("command", ["ingest", "train"])
@pytest.mark.parametrize(
    ("symbols", "line"),
    [
        ("A'B;--", '--symbols: invalid symbol "A\'B;--"'),
        ("AAA,B$B", "--symbols: invalid symbol 'B$B'"),
        ("ABCDEFGHIJKLM", "--symbols: invalid symbol 'ABCDEFGHIJKLM'"),
        ("--", "--symbols: invalid symbol '--'"),
        (" , ", "--symbols ' , ': no symbol given"),
    ],
)
def test_symbols_follow_the_watchlist_rule(tmp_path, command, symbols, line):
    assert one_line(tt(tmp_path, command, "--symbols", symbols)).startswith(f"Error: {line}")
    assert price_rows(tmp_path) is None


def test_class_shares_are_valid_symbols():
    assert [check_symbol(s) for s in ("BRK.B", "bf.b", " BRK B ")] == ["BRK.B", "BF.B", "BRK B"]
    assert common.universe("brk.b, BF.B,BRK.B", None) == ["BRK.B", "BF.B"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "byte 0"),
        ("symbol\nAAA\n".encode("utf-16"), "byte 0"),
        ("symbol\nAAA\n".encode("utf-16-le"), "NUL byte"),
    ],
)
@pytest.mark.parametrize("command", [["watchlist"], ["ingest", "--timeframe", "1d"]])
def test_a_watchlist_that_is_not_utf8_text_is_one_line(tmp_path, content, why, command):
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_bytes(content)
    line = one_line(tt(tmp_path, *command))
    assert line == f"Error: {watchlist}: not UTF-8 text ({why}); save the watchlist as UTF-8 CSV"
    assert price_rows(tmp_path) is None


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("foo://x", f"unsupported database URL foo://x (scheme 'foo'); {URL_HELP}"),
        (
            "mysql://u:s3cret@h/db",
            f"unsupported database URL mysql://u:***@h/db (scheme 'mysql'); {URL_HELP}",
        ),
        ("hello", f"the database URL is not a URL; {URL_HELP}"),
        ("u:s3cret@h/db", f"the database URL is not a URL; {URL_HELP}"),
    ],
)
@pytest.mark.parametrize("command", [["show"], ["db", "upgrade"], ["ingest", "--symbols", "AAA"]])
def test_an_unsupported_database_url_names_the_schemes(tmp_path, url, line, command):
    result = tt(tmp_path, *command, DATABASE_URL=url)
    assert one_line(result) == f"Error: {line}"
    assert "s3cret" not in result.output


@pytest.fixture
def as_non_root(monkeypatch):
    """os.access as a non-root user sees it (root may write anything), so read-only files are read-only."""
    if os.geteuid() == 0:
        monkeypatch.setattr(
            common.os, "access", lambda path, mode: bool(os.stat(path).st_mode & stat.S_IWUSR)
        )


@pytest.mark.parametrize("read_only", ["file", "directory"])
def test_a_read_only_sqlite_file_is_one_line_naming_it(tmp_path, as_non_root, read_only):
    home = tmp_path / "db"
    home.mkdir()
    url = f"sqlite:///{home / 'tt.sqlite'}"
    seeded = tt(
        tmp_path, "ingest", "--symbols", "AAA", "--timeframe", "1d", "--start", RECENT, DATABASE_URL=url
    )
    assert seeded.exit_code == 0, seeded.output
    target = home / "tt.sqlite" if read_only == "file" else home
    mode = target.stat().st_mode
    target.chmod(mode & ~0o222)
    try:
        result = tt(tmp_path, "ingest", "--symbols", "BBB", "--timeframe", "1d", DATABASE_URL=url)
    finally:
        target.chmod(mode)
    line = one_line(result)
    if read_only == "file":
        assert line == f"Error: sqlite file {home / 'tt.sqlite'} is read-only: cannot store anything in it"
    else:
        assert line == f"Error: sqlite file {home / 'tt.sqlite'}: its directory {home} is read-only"
    with create_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tt_prices WHERE symbol = 'BBB'")).scalar_one() == 0


@pytest.mark.parametrize("data_dir", ["/dev/null/x", "{tmp}/a_file/x"])
@pytest.mark.parametrize("command", [["show"], ["ingest", "--symbols", "AAA"]])
def test_a_data_directory_that_cannot_be_created_is_one_line(tmp_path, data_dir, command):
    (tmp_path / "a_file").write_text("")
    path = data_dir.format(tmp=tmp_path)
    line = one_line(tt(tmp_path, *command, TT_DATA_DIR=path, DATABASE_URL=None))
    assert line == f"Error: cannot create the data directory {path} (TT_DATA_DIR): Not a directory"


def test_show_caps_last_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "SHOW_MAX_ROWS", 30)
    ts = pd.date_range("2024-01-01", periods=40, freq="D", tz="UTC")
    bars = pd.DataFrame({"symbol": "AAA", "timeframe": "1d", "ts": ts, "volume": 1e6})
    bars = bars.assign(open=10.0, high=12.0, low=9.0, close=11.0)
    assert tt(tmp_path, "db", "upgrade").exit_code == 0
    upsert_price_bars(create_engine(f"sqlite:///{tmp_path / 'tt.sqlite'}"), bars)
    result = tt(tmp_path, "show", "tt_prices", "--last", "100000000", "--columns", "ts")
    assert result.exit_code == 0, result.output
    assert "tt_prices: last 30 rows" in result.output
    assert result.output.count("2024-") == 30
    assert result.output.strip().splitlines()[-1] == (
        "showing the last 30 rows (the most `tt show` prints); use --symbol/--timeframe to narrow"
    )
    uncapped = tt(tmp_path, "show", "tt_prices", "--last", "100000000", "--timeframe", "1h")
    assert uncapped.exit_code == 0 and "showing the last" not in uncapped.output


def test_show_cap_is_ten_thousand_rows():
    assert db.SHOW_MAX_ROWS == 10_000


@pytest.mark.parametrize(
    ("args", "first_error"),
    [
        (["--config", "{bad}", "--start", "2030-01-01", "--symbols", "A'B"], "{bad}: invalid JSON"),
        (["--start", "2030-01-01", "--symbols", "A'B"], "--start 2030-01-01 is in the future"),
        (["--symbols", "A'B"], "--symbols: invalid symbol"),
    ],
)
def test_train_checks_config_then_dates_then_symbols_before_touching_the_database(
    tmp_path, args, first_error
):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    args = [arg.format(bad=bad) for arg in args]
    assert one_line(tt(tmp_path, "train", *args)).startswith(f"Error: {first_error.format(bad=bad)}")
    assert price_rows(tmp_path) is None and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "--limit", "1"], "Error: a portfolio needs at least 2 symbols, got 1: "),
        (["train", "--symbols", "AAPL"], "Error: a portfolio needs at least 2 symbols, got 1: AAPL"),
        (["demo", "--symbols", "1"], "Error: Invalid value for '--symbols': 1 is not in the range x>=2."),
        (["demo", "--symbols", "200"], "Error: --symbols 200: the watchlist has 150 symbols"),
        (
            ["show", "tt_prices", "--timeframe", "4h"],
            "Error: Invalid value for '--timeframe': '4h' is not one of",
        ),
    ],
)
def test_a_universe_that_cannot_work_is_refused_before_any_work(tmp_path, args, line):
    from click.testing import CliRunner

    from tt_cli.main import cli

    env = {"TT_DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'tt.sqlite'}"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert line in result.output
    assert not (tmp_path / "dagster_home").exists() and not (tmp_path / "models").exists()


def test_months_count_back_from_end():
    from tt_cli.common import time_window

    start, end = time_window(None, "2025-06-30", months=3)
    assert (start, end) == (pd.Timestamp("2025-03-30", tz="UTC"), pd.Timestamp("2025-06-30", tz="UTC"))


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


PG = make_url(PG_ADMIN_URL)  # a reachable server, asked for a role that does not exist
PG_ENV = {
    "HOST": PG.host,
    "PORT": str(PG.port or 5432),
    "USER": "no_such_role",
    "PASSWORD": "Wr0ng@pw",
    "DB": "postgres",
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--steps", "0"], "'--steps': 0 is not in the range 1<=x<=1000000000"),
        (["demo", "--steps", "-5"], "'--steps': -5 is not in the range 1<=x<=1000000000"),
        (["train", "--steps", "10000000000"], "'--steps': 10000000000 is not in the range 1<=x<=1000000000"),
        (["dev", "--port", "abc"], "'--port' / '-p': 'abc' is not a valid integer range"),
        (["dev", "--port", "99999"], "'--port' / '-p': 99999 is not in the range 1<=x<=65535"),
    ],
)
def test_flags_out_of_their_range_are_rejected_before_any_work(tmp_path, args, message):
    assert message in usage_error(tt(tmp_path, *args, DAGSTER_HOME=str(tmp_path / "home")))
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["ingest", "--symbols", "AAPL", "--limit", "1"],
            {},
            "--limit takes the watchlist's first N symbols: give --symbols or --limit, not both",
        ),
        (
            ["train", "--config", "{tmp}/dup.yaml"],
            {},
            "{tmp}/dup.yaml: invalid YAML at line 3, column 3: duplicate key 'n_steps'",
        ),
        (
            ["train", "--config", "{tmp}/budget.yaml"],
            {},
            "{tmp}/budget.yaml: ppo.n_steps: must be <= 1048576 (got 100000000)",
        ),
        (
            ["train", "--config", "{tmp}/steps.yaml"],
            {},
            "{tmp}/steps.yaml: ppo.total_timesteps: must be <= 1000000000 (got 1000000000000000000000)",
        ),
        (["dev", "--host", "999.1.1.1"], {}, "--host: '999.1.1.1' is not a host name or IP address"),
        (
            ["show"],
            {"DAGSTER_HOME": "/dev/null/x"},
            "cannot create the Dagster home /dev/null/x (DAGSTER_HOME): Not a directory",
        ),
        (
            ["show"],
            {"IB_HOST": ""},
            "IB_HOST: empty; give a host name or IP address, e.g. 127.0.0.1 (got '')",
        ),
        (
            ["show"],
            {"TT_CELERY_BROKER": "not a url"},
            "TT_CELERY_BROKER: not a broker URL; give one like amqp://guest@127.0.0.1:5672//",
        ),
        (
            ["show"],
            {"TT_DAGSTER_URL": "not a url"},
            "TT_DAGSTER_URL: contains white space; give an address like http://127.0.0.1:3000 (got 'not a url')",
        ),
        (
            ["show"],
            {"TT_DASHBOARD_URL": "ftp://x"},
            "TT_DASHBOARD_URL: not an http(s) address; give one like http://127.0.0.1:3000 (got 'ftp://x')",
        ),
        (
            ["show"],
            {"DATABASE_URL": "postgresql://u:s3cret@127.0.0.1:abc/x"},
            "DATABASE_URL: the port after the host is not a number in 1..65535 (host:port, e.g. 127.0.0.1:5432)",
        ),
        (
            ["ingest", "--symbols", "AAA"],
            {"DATABASE_URL": "postgresql://user:P@ss%w/rd:X9@127.0.0.1:5432/db"},
            "DATABASE_URL: more than one '@' before the host; escape @ in the password as %40 (and % as %25, "
            "/ as %2F, : as %3A)",
        ),
        (
            ["ingest", "--symbols", "AAA", "--via-dagster"],
            {"DAGSTER_HOME": "{tmp}/pg_home"},
            "DAGSTER_PG_HOST is not set; {tmp}/pg_home/dagster.yaml uses it (see README: Dagster storage)",
        ),
        (
            ["ingest", "--symbols", "AAA", "--via-dagster"],
            {"DAGSTER_HOME": "{tmp}/pg_home", **{f"DAGSTER_PG_{k}": v for k, v in PG_ENV.items()}},
            "Dagster storage ({tmp}/pg_home/dagster.yaml): cannot connect to postgresql database 'postgres' on "
            '{host}:{port}: connection failed: connection to server at "{host}", port {port} failed: FATAL:  '
            'role "no_such_role" does not exist',
        ),
    ],
)
def test_bad_settings_files_and_flags_are_one_line_before_any_work(tmp_path, args, env, line):
    write(tmp_path / "dup.yaml", "ppo:\n  n_steps: 64\n  n_steps: 128\n")
    write(tmp_path / "budget.yaml", "ppo:\n  n_steps: 100000000\n")
    write(tmp_path / "steps.yaml", "ppo:\n  total_timesteps: 1000000000000000000000\n")
    (tmp_path / "pg_home").mkdir()
    shutil.copy(Path(__file__).parents[1] / "dagster.celery.yaml", tmp_path / "pg_home" / "dagster.yaml")
    fill = {"DAGSTER_HOME": str(tmp_path / "home")} | {k: v.format(tmp=tmp_path) for k, v in env.items()}
    result = tt(tmp_path, *[arg.format(tmp=tmp_path) for arg in args], **fill)
    assert one_line(result) == f"Error: {line.format(tmp=tmp_path, host=PG.host, port=PG.port or 5432)}"
    assert not any(secret in result.output for secret in ("s3cret", "ss%w", "Wr0ng"))
    assert price_rows(tmp_path) is None and not (tmp_path / "data").exists()
    assert not (tmp_path / "home").exists() and sorted(os.listdir(tmp_path / "pg_home")) == ["dagster.yaml"]


def test_home_directories_expand_the_tilde_and_state_a_relative_path_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", "~/dagster")
    assert config.dagster_home() == tmp_path / "dagster"
    monkeypatch.chdir(tmp_path)
    result = tt(tmp_path, "show", TT_DATA_DIR="relative")
    assert result.exit_code == 0, result.output
    note = f"TT_DATA_DIR=relative is relative: using {tmp_path / 'relative'}"
    assert result.output.splitlines().count(note) == 1
    assert (tmp_path / "relative").is_dir() and not (tmp_path / "~").exists()


def test_tt_dev_stops_every_process_it_started_even_one_ignoring_sigterm(monkeypatch):
    import subprocess
    import sys

    from tt_cli import dev

    monkeypatch.setattr(dev, "STOP_GRACE_S", 0.5)
    # a process whose child ignores SIGTERM, as a hung server would; the child says when it ignores it
    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(600)"
    script = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline() == b"1\n"
        [server] = dev._descendants(parent.pid)
        dev.stop_descendants(parent.pid)
        assert not dev._alive(server)
        assert parent.poll() is None  # only what it started is stopped
    finally:
        parent.kill()
        parent.wait()
