"""`tt ingest` end to end: progress, summary, incremental second run, exit codes, and CSV files read right
(stored values read back from SQLite and PostgreSQL) or rejected in one line naming file, line and reason."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tt_cli.common import SUMMARY_COUNTS
from tt_cli.main import cli
from tt_resources import calendar
from tt_resources.db.engine import create_engine
from tt_resources.db.prices import read_bars
from tt_resources.sources.synthetic import SyntheticSource
from tt_resources.watchlist import Listing

RECENT = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10)).strftime("%Y-%m-%d")


def run(db_url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, ["ingest", *args], env={"DATABASE_URL": db_url, "COLUMNS": "120", **env})


def summary_rows(output: str) -> dict[str, list[str]]:
    """timeframe -> its counts in the ingest summary, in SUMMARY_COUNTS order (partitions .. open holes).

    The summary has one row per count and one column per timeframe: cells split on the box's "│"."""
    rows = [
        [c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")
    ]
    [header] = [cells for cells in rows if cells[:1] == [""]]
    counts = {cells[0]: cells[1:] for cells in rows if cells[0] in SUMMARY_COUNTS}
    assert list(counts) == list(SUMMARY_COUNTS), output
    return {
        timeframe: [counts[label][i] for label in SUMMARY_COUNTS] for i, timeframe in enumerate(header[1:])
    }


def test_ingest_then_everything_fresh(db_url):
    first = run(db_url, "--symbols", "AAA,BBB", "--start", RECENT, "--source", "synthetic")
    assert first.exit_code == 0, first.output
    assert "ingest summary" in first.output
    assert all(cells[:4] == ["2", "0", "2", "0"] for cells in summary_rows(first.output).values())
    second = run(db_url, "--symbols", "AAA,BBB", "--start", RECENT, "--source", "synthetic")
    assert second.exit_code == 0, second.output
    rows = summary_rows(second.output)
    assert set(rows) == {"1d", "1h", "15m"}
    assert all(cells[:-1] == ["2", "2", "0", "0", "0", "0", "0", "0", "0"] for cells in rows.values())
    # bars stored (the last count) is read back from the database: the first run stored them all
    assert {tf: cells[-1] for tf, cells in rows.items()} == {
        tf: cells[4] for tf, cells in summary_rows(first.output).items()
    }


def test_failed_partition_exits_non_zero_after_the_others(db_url, tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    good = SyntheticSource(seed=1, clock=lambda: now).fetch(
        Listing("GOOD"), "1d", now - pd.Timedelta(days=30), now
    )
    good.to_csv(tmp_path / "GOOD_1d.csv", index=False)
    good.assign(close=-1.0).to_csv(tmp_path / "BAD_1d.csv", index=False)
    args = ("--symbols", "BAD,GOOD", "--timeframe", "1d", "--source", "csv", "--start", RECENT)
    result = run(db_url, *args, TT_CSV_DIR=str(tmp_path))
    assert result.exit_code == 1
    assert "failed BAD 1d:" in result.output
    assert "BAD_1d.csv: line 2: close missing or not positive" in result.output
    assert summary_rows(result.output)["1d"][:4] == ["2", "0", "1", "1"]


def test_start_must_precede_end(sqlite_url):
    result = run(sqlite_url, "--symbols", "AAA", "--start", "2025-02-01", "--end", "2025-01-01")
    assert result.exit_code == 2 and "is not before --end" in result.output


def test_watchlist_symbols_with_limit(sqlite_url, tmp_path):
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol,sector\nAAA,Energy\nBBB,Energy\nCCC,Utilities\n")
    result = run(
        sqlite_url, "--limit", "2", "--timeframe", "1d", "--start", RECENT, TT_WATCHLIST=str(watchlist)
    )
    assert result.exit_code == 0, result.output
    assert summary_rows(result.output)["1d"][:3] == ["2", "0", "2"]


@pytest.mark.parametrize("option", ["--timeframe", "--interval"])
def test_timeframe_has_one_name_across_commands_and_interval_stays_an_alias(sqlite_url, option):
    result = run(sqlite_url, "--symbols", "AAA", option, "1h", "--start", RECENT, "--source", "synthetic")
    assert result.exit_code == 0, result.output
    assert set(summary_rows(result.output)) == {"1h"}
    with create_engine(sqlite_url).connect() as conn:
        stored = conn.execute(sa.text("SELECT DISTINCT timeframe FROM tt_prices")).scalars().all()
    assert stored == ["1h"]
    assert "--timeframe, --interval [1d|1h|15m|all]" in run(sqlite_url, "--help").output


def test_bad_watchlist_is_one_clear_line(sqlite_url, tmp_path):
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol\nAAA\nAAA\n")
    result = run(sqlite_url, "--timeframe", "1d", TT_WATCHLIST=str(watchlist))
    assert result.exit_code == 2
    assert "watchlist.csv" in result.output and "Traceback" not in result.output


def test_via_dagster_records_runs_and_second_run_is_fresh(sqlite_url, tmp_path):
    import dagster as dg

    home = tmp_path / "dagster_home"
    args = ("--symbols", "AAA,BBB", "--timeframe", "1d", "--start", RECENT, "--via-dagster")
    first = run(sqlite_url, *args, DAGSTER_HOME=str(home))
    assert first.exit_code == 0, first.output
    assert summary_rows(first.output)["1d"][:4] == ["2", "0", "2", "0"]
    second = run(sqlite_url, *args, DAGSTER_HOME=str(home))
    assert second.exit_code == 0, second.output
    assert summary_rows(second.output)["1d"][:-1] == ["2", "2", "0", "0", "0", "0", "0", "0", "0"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.job_name == "market_data_job" for r in runs)
        assert set(instance.get_dynamic_partitions("symbol")) == {"AAA", "BBB"}
        assert instance.get_latest_materialization_event(dg.AssetKey("features")) is not None


# ---------------------------------------------------------------- CSV files through `tt ingest --source csv`

HEADER = "timestamp,open,high,low,close,volume\n"


def csv_file(directory, name: str, stamps, bar: str = "10,11,9,10.5,100") -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(HEADER + "".join(f"{stamp},{bar}\n" for stamp in stamps))


def ingest_csv(db_url: str, directory, symbol: str, interval: str, *args: str, **env: str):
    return run(
        db_url,
        "--symbols",
        symbol,
        "--timeframe",
        interval,
        "--source",
        "csv",
        *args,
        TT_CSV_DIR=str(directory),
        **env,
    )


def stored(db_url: str, symbol: str, timeframe: str) -> pd.DataFrame:
    engine = create_engine(db_url)
    try:
        return read_bars(engine, [symbol], timeframe)
    finally:
        engine.dispose()


def failure(result, symbol: str, timeframe: str) -> str:
    """The reason in the one line the CLI prints for a failed partition, `failed SYMBOL TF: <reason> (N bars
    stored)`, N read back from the database (checked present)."""
    head = f"failed {symbol} {timeframe}: "
    [line] = [line for line in result.output.splitlines() if line.startswith(head)]
    found = re.fullmatch(r"(.*) \([\d,]+ bars stored\)", line.removeprefix(head))
    assert found is not None, line
    return found.group(1)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_offsets_across_a_clock_change_are_stored_in_utc(db_url, tmp_path):
    grid = calendar.expected_bar_starts("15m", utc("2024-03-08"), utc("2024-03-12"))  # EST Friday, EDT Monday
    csv_file(tmp_path / "csv", "AAPL_15m.csv", (t.isoformat() for t in grid.tz_convert("America/New_York")))
    result = ingest_csv(
        db_url, tmp_path / "csv", "AAPL", "15m", "--start", "2024-03-08", "--end", "2024-03-12"
    )
    assert result.exit_code == 0, result.output
    bars = stored(db_url, "AAPL", "15m")
    assert list(bars["ts"]) == list(grid) and len(grid) == 52
    assert bars["ts"].iloc[0] == utc("2024-03-08 14:30") and bars["ts"].iloc[26] == utc("2024-03-11 13:30")


def test_header_only_file_is_one_line_and_nothing_is_stored(sqlite_url, tmp_path):
    csv_file(tmp_path / "csv", "AAPL_15m.csv", [])
    result = ingest_csv(sqlite_url, tmp_path / "csv", "AAPL", "15m", "--start", RECENT)
    assert result.exit_code == 1
    path = tmp_path / "csv" / "AAPL_15m.csv"
    assert failure(result, "AAPL", "15m") == f"{path}: no rows (only the header {HEADER.strip()})"
    assert stored(sqlite_url, "AAPL", "15m").empty


def test_rejected_bar_text_keeps_its_brackets_and_names_file_and_line(sqlite_url, tmp_path):
    sessions = calendar.expected_bar_starts("1d", utc("2024-06-03"), utc("2024-06-05"))
    csv_file(tmp_path / "csv", "BAD_1d.csv", [f"{sessions[0]:%Y-%m-%d}"])
    with (tmp_path / "csv" / "BAD_1d.csv").open("a") as file:
        file.write(f"{sessions[1]:%Y-%m-%d},12,11,9,10.5,100\n")  # open above high
    result = ingest_csv(
        sqlite_url, tmp_path / "csv", "BAD", "1d", "--start", "2024-06-01", "--end", "2024-06-06"
    )
    assert result.exit_code == 1
    assert failure(result, "BAD", "1d") == (
        f"{tmp_path / 'csv' / 'BAD_1d.csv'}: line 3: open outside [low, high] (timestamp 2024-06-04); "
        "nothing from this file is used"
    )
    assert stored(sqlite_url, "BAD", "1d").empty


def test_a_csv_head_at_midnight_new_york_and_the_synthetic_tail_store_each_session_once(db_url, tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    sessions = calendar.expected_bar_starts("1d", now - pd.Timedelta(days=40), now - pd.Timedelta(days=10))
    head = SyntheticSource(seed=5).fetch(
        Listing("AAA"), "1d", sessions[0], sessions[-1] + pd.Timedelta(hours=1)
    )
    assert list(head["ts"]) == list(sessions)
    midnight = head["ts"].dt.tz_convert("America/New_York").dt.normalize()  # 04:00Z or 05:00Z
    head.assign(ts=midnight.map(lambda t: t.isoformat())).to_csv(tmp_path / "AAA_1d.csv", index=False)
    first, last = f"{sessions[0]:%Y-%m-%d}", f"{sessions[-1] + pd.Timedelta(days=1):%Y-%m-%d}"
    assert ingest_csv(db_url, tmp_path, "AAA", "1d", "--start", first, "--end", last).exit_code == 0
    assert list(stored(db_url, "AAA", "1d")["ts"]) == list(sessions)
    tail = run(db_url, "--symbols", "AAA", "--timeframe", "1d", "--source", "synthetic")
    assert tail.exit_code == 0, tail.output
    bars = stored(db_url, "AAA", "1d")
    expected = calendar.expected_bar_starts("1d", sessions[0], bars["ts"].iloc[-1] + pd.Timedelta(hours=1))
    assert list(bars["ts"]) == list(expected) and bars["ts"].iloc[-1] > sessions[-1]


@pytest.mark.parametrize(
    ("timeframe", "stamp", "why"),
    [
        ("15m", "2024-06-04T08:00:00-04:00", "(Tue 08:00 New York): before the 09:30 open (pre-market;"),
        ("15m", "2024-06-04T09:40:00-04:00", "(Tue 09:40 New York): not a 15m bar start"),
        ("1h", "2024-06-04T09:00:00-04:00", "(Tue 09:00 New York): before the 09:30 open (pre-market;"),
        (
            "1h",
            "2024-06-08T10:00:00-04:00",
            "(Sat 10:00 New York): 2024-06-08 is a Saturday: no trading on NYSE",
        ),
        (
            "1h",
            "2024-06-04T16:00:00-04:00",
            "(Tue 16:00 New York): at or after the 16:00 close (after hours;",
        ),
    ],
)
def test_an_off_grid_bar_rejects_its_file(sqlite_url, tmp_path, timeframe, stamp, why):
    csv_file(tmp_path / "csv", f"AAPL_{timeframe}.csv", ["2024-06-03T10:00:00-04:00", stamp])
    result = ingest_csv(
        sqlite_url, tmp_path / "csv", "AAPL", timeframe, "--start", "2024-06-01", "--end", "2024-06-10"
    )
    assert result.exit_code == 1
    line = failure(result, "AAPL", timeframe)
    assert line.startswith(f"{tmp_path / 'csv' / f'AAPL_{timeframe}.csv'}: line 3: ") and why in line
    assert stored(sqlite_url, "AAPL", timeframe).empty


REAL_WEEK = ("01/09/2004", "02/09/2004", "03/09/2004", "07/09/2004", "08/09/2004", "09/09/2004")


def test_day_first_dates_need_the_format_named_then_are_stored_right(db_url, tmp_path):
    csv_file(tmp_path / "csv", "KO_1d.csv", REAL_WEEK)
    window = ("--start", "2004-08-30", "--end", "2004-09-10")
    refused = ingest_csv(db_url, tmp_path / "csv", "KO", "1d", *window)
    assert refused.exit_code == 1
    assert "line 2: dates such as '01/09/2004' read both day-first and month-first" in failure(
        refused, "KO", "1d"
    )
    assert stored(db_url, "KO", "1d").empty
    result = ingest_csv(db_url, tmp_path / "csv", "KO", "1d", *window, "--date-format", "day-first")
    assert result.exit_code == 0, result.output
    expected = [calendar.session_open(f"2004-09-{day:02d}") for day in (1, 2, 3, 7, 8, 9)]
    assert list(stored(db_url, "KO", "1d")["ts"]) == expected


def test_a_1999_file_is_stored(db_url, tmp_path):
    sessions = calendar.expected_bar_starts("1d", utc("1999-01-01"), utc("1999-02-01"))
    csv_file(tmp_path / "csv", "KO_1d.csv", (f"{t:%Y-%m-%d}" for t in sessions))
    result = ingest_csv(db_url, tmp_path / "csv", "KO", "1d", "--start", "1999-01-01", "--end", "1999-02-01")
    assert result.exit_code == 0, result.output
    bars = stored(db_url, "KO", "1d")
    assert list(bars["ts"]) == list(sessions) and bars["ts"].iloc[0] == utc("1999-01-04 14:30")


def test_naive_intraday_times_take_the_zone_from_tz_or_the_setting(sqlite_url, tmp_path):
    grid = calendar.expected_bar_starts("1h", utc("2024-06-03"), utc("2024-06-04"))
    csv_file(
        tmp_path / "csv", "AAPL_1h.csv", (f"{t:%Y-%m-%d %H:%M}" for t in grid.tz_convert("America/New_York"))
    )
    window = ("--start", "2024-06-03", "--end", "2024-06-04")
    refused = ingest_csv(sqlite_url, tmp_path / "csv", "AAPL", "1h", *window)
    assert refused.exit_code == 1
    assert "line 2: naive timestamp '2024-06-03 09:30' and no time zone" in failure(refused, "AAPL", "1h")
    assert "--tz / TT_CSV_TZ" in failure(refused, "AAPL", "1h")
    result = ingest_csv(sqlite_url, tmp_path / "csv", "AAPL", "1h", *window, "--tz", "America/New_York")
    assert result.exit_code == 0, result.output
    assert list(stored(sqlite_url, "AAPL", "1h")["ts"]) == list(grid)
    again = ingest_csv(sqlite_url, tmp_path / "csv", "AAPL", "1h", *window, TT_CSV_TZ="America/New_York")
    assert again.exit_code == 0, again.output


def test_tz_reaches_the_dagster_runs(sqlite_url, tmp_path):
    grid = calendar.expected_bar_starts("1h", utc("2024-06-03"), utc("2024-06-04"))
    csv_file(
        tmp_path / "csv", "AAPL_1h.csv", (f"{t:%Y-%m-%d %H:%M}" for t in grid.tz_convert("America/New_York"))
    )
    args = ("--start", "2024-06-03", "--end", "2024-06-04", "--tz", "America/New_York", "--via-dagster")
    result = ingest_csv(
        sqlite_url, tmp_path / "csv", "AAPL", "1h", *args, DAGSTER_HOME=str(tmp_path / "home")
    )
    assert result.exit_code == 0, result.output
    assert list(stored(sqlite_url, "AAPL", "1h")["ts"]) == list(grid)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--source", "synthetic", "--tz", "America/New_York"), "Error: --tz: only for the csv source"),
        (("--source", "csv", "--tz", "Mars/Olympus"), "Error: --tz: 'Mars/Olympus' is not an IANA time zone"),
        (("--source", "csv", "--date-format", "dmy"), "Error: Invalid value for '--date-format'"),
    ],
)
def test_bad_csv_options_are_bad_input(sqlite_url, args, line):
    result = run(sqlite_url, "--symbols", "AAA", *args)
    assert result.exit_code == 2 and line in result.output


def test_a_file_before_the_history_window_says_where_its_bars_are(sqlite_url, tmp_path):
    sessions = calendar.expected_bar_starts("1d", utc("1999-01-01"), utc("1999-02-01"))
    csv_file(tmp_path / "csv", "KO_1d.csv", (f"{t:%Y-%m-%d}" for t in sessions))
    result = ingest_csv(sqlite_url, tmp_path / "csv", "KO", "1d")
    assert result.exit_code == 1
    line = failure(result, "KO", "1d")
    assert line.startswith(
        f"{tmp_path / 'csv' / 'KO_1d.csv'}: nothing stored: its 19 bars from 1999-01-04 to "
    )
    assert line.endswith("; pass --start 1999-01-04 (or earlier) to ingest them")
    assert stored(sqlite_url, "KO", "1d").empty
