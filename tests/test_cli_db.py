"""`tt db upgrade`, `tt show` and `tt watchlist` against real databases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from tt_cli import db
from tt_cli.main import cli
from tt_resources import config
from tt_resources.db import create_engine, upsert_price_bars
from tt_resources.db.migrate import alembic_config
from tt_resources.db.schema import TABLES

TT = Path(sys.executable).with_name("tt")


def run(args: list[str], db_url: str | None = None):
    env = {"COLUMNS": "200"} | ({"DATABASE_URL": db_url} if db_url else {})
    return CliRunner().invoke(cli, args, env=env)


def daily_bars(symbol: str, n: int) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "1d",
            "ts": ts,
            "open": 10.0,
            "high": 12.0,
            "low": 9.0,
            "close": [10.0 + i / 100 for i in range(n)],
            "volume": 1e6,
        }
    )


def test_db_upgrade_creates_the_schema(db_url):
    result = run(["db", "upgrade"], db_url)
    assert result.exit_code == 0, result.output
    head = ScriptDirectory.from_config(alembic_config(create_engine(db_url))).get_current_head()
    assert f"schema at revision {head}" in result.output
    assert set(TABLES) <= set(sa.inspect(create_engine(db_url)).get_table_names())


def test_show_lists_every_table_on_an_empty_database(db_url):
    result = run(["show"], db_url)
    assert result.exit_code == 0, result.output
    for name in TABLES:
        assert f"│ {name}" in result.output
    assert result.output.count(" 0 │") == len(TABLES)


def rows_of(output: str, symbol: str) -> list[list[str]]:
    """The cells of the printed rows of `symbol` (columns are separated by two or more blanks)."""
    return [
        re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.startswith(f"{symbol} ")
    ]


def test_show_prints_the_latest_rows_of_a_filled_table(db_url):
    engine = create_engine(db_url)
    assert run(["db", "upgrade"], db_url).exit_code == 0
    upsert_price_bars(engine, pd.concat([daily_bars("AAPL", 25), daily_bars("AA", 3)]))
    inventory = run(["show"], db_url)
    assert re.search(r"│ tt_prices +│ +28 │", inventory.output), inventory.output
    result = run(["show", "tt_prices", "--symbol", "AAPL", "--timeframe", "1d", "--last", "20"], db_url)
    assert result.exit_code == 0, result.output
    lines = rows_of(result.output, "AAPL")
    assert len(lines) == 20 and not rows_of(result.output, "AA")
    assert lines[0][:3] == ["AAPL", "1d", "2024-01-06"]  # oldest of the last 20, first; a session date
    assert lines[-1] == ["AAPL", "1d", "2024-01-25", "10.00", "12.00", "9.00", "10.24", "1,000,000"]
    narrow = run(["show", "tt_prices", "--columns", "symbol,ts,close", "--last", "2"], db_url)
    assert narrow.exit_code == 0 and "volume" not in narrow.output and "10.24" in narrow.output


# one symbol's last bars in every timeframe with a price, a volume and stamps as wide as real ones get
# (AAPL-like prices, 9-digit volumes, 1h bars at :30 and on the hour, 15m bars)
WIDE_BARS = pd.DataFrame(
    [
        (
            "AAPL",
            timeframe,
            pd.Timestamp(ts, tz="UTC"),
            187.123456,
            189.98765,
            186.00004,
            188.5049,
            123_456_789.0,
        )
        for timeframe, stamps in {
            "1d": pd.date_range("2024-01-02 14:30", periods=7, freq="D"),
            "1h": pd.date_range("2024-01-08 14:30", periods=7, freq="h"),
            "15m": pd.date_range("2024-01-08 14:30", periods=7, freq="15min"),
        }.items()
        for ts in stamps
    ],
    columns=["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"],
)


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('show') / 'tt.sqlite'}"
    assert run(["db", "upgrade"], url).exit_code == 0
    upsert_price_bars(create_engine(url), WIDE_BARS)
    return url


@pytest.mark.parametrize("width", [80, 120])
def test_show_prices_fit_the_terminal_whole_and_grouped_per_timeframe(wide_db, width):
    """At 80 (and 120) columns every default column of tt_prices is printed, no cell is cut, every line fits;
    without --timeframe the last 5 bars of each timeframe come grouped (1d, 1h, 15m), oldest first."""
    result = CliRunner().invoke(
        cli,
        ["show", "tt_prices", "--symbol", "AAPL", "--last", "5"],
        env={"DATABASE_URL": wide_db, "COLUMNS": str(width)},
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "left out" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= width
    header = next(line for line in result.output.splitlines() if line.startswith("symbol"))
    assert header.split() == ["symbol", "timeframe", "ts", "(UTC)", "open", "high", "low", "close", "volume"]
    rows = rows_of(result.output, "AAPL")
    assert [row[1] for row in rows] == ["1d"] * 5 + ["1h"] * 5 + ["15m"] * 5
    expected = WIDE_BARS.groupby("timeframe", sort=False).tail(5)
    daily = expected["timeframe"].eq("1d")
    stamps = (
        expected["ts"].dt.strftime("%Y-%m-%d %H:%M").where(~daily, expected["ts"].dt.strftime("%Y-%m-%d"))
    )
    assert [row[2] for row in rows] == list(stamps)
    assert all(row[3:] == ["187.12", "189.99", "186.00", "188.50", "123,456,789"] for row in rows)


def test_show_names_the_columns_left_out_of_a_narrow_terminal(wide_db):
    result = CliRunner().invoke(
        cli,
        ["show", "tt_prices", "--timeframe", "1h", "--last", "2"],
        env={"DATABASE_URL": wide_db, "COLUMNS": "60"},
    )
    assert result.exit_code == 0, result.output
    *table, note = result.output.splitlines()
    assert "…" not in result.output and max(len(line) for line in table) <= 60
    lows = [row[-1] for row in rows_of(result.output, "AAPL")]
    assert lows == ["186.00", "186.00"]  # low, the last column that fits
    assert note == "left out to fit 60 terminal columns: close, volume (choose with --columns)"


def test_every_table_has_default_columns_of_its_own():
    assert set(db.VIEWS) == set(TABLES)
    for name, view in db.VIEWS.items():
        named = {*view.columns, *view.bar_times, *([view.newest] if view.newest else [])}
        assert named <= set(TABLES[name].c.keys()), name


def test_show_on_an_empty_table_says_so(sqlite_url):
    result = run(["show", "tt_episode"], sqlite_url)
    assert result.exit_code == 0 and "tt_episode: no rows match" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "prices"], "unknown table 'prices'; valid: tt_action, tt_bar_quarantine, tt_contracts"),
        (
            ["show", "tt_prices", "--columns", "symbol,colour"],
            "tt_prices has no column 'colour'; valid: symbol,",
        ),
        (["show", "tt_episode", "--symbol", "AAPL"], "tt_episode has no column 'symbol'; valid: episode_id"),
    ],
)
def test_show_rejects_unknown_tables_and_columns(sqlite_url, args, message):
    result = run(args, sqlite_url)
    assert result.exit_code == 2
    assert message in result.output


BAD_URL = "postgresql://u:s3cret@127.0.0.1:1/x"


def test_failed_connection_names_host_and_database_but_never_the_password():
    proc = subprocess.run(
        [str(TT), "show"],
        env=os.environ | {"DATABASE_URL": BAD_URL},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'x'" in lines[0] and "127.0.0.1:1" in lines[0]


@pytest.mark.parametrize("args", [["db", "upgrade"], ["show", "tt_prices"]])
def test_every_database_command_fails_cleanly_without_a_server(args):
    result = run(args, BAD_URL)
    assert result.exit_code == 2
    assert "s3cret" not in result.output and "database 'x' on 127.0.0.1:1" in result.output


def test_watchlist_command(tmp_path):
    result = run(["watchlist", "--limit", "5"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"5 symbols from {config.watchlist_path()} (5 sectors)",
        "first: AAPL, GOOGL, AMZN, PG, UNH",
    ]
    bad = tmp_path / "w.csv"
    bad.write_text("symbol\nAAPL\nAAPL\n")
    result = run(["watchlist", "--path", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: duplicate symbol AAPL (first on line 2)" in result.output
