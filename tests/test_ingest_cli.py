"""`tt ingest` end to end: progress, summary, incremental second run, exit codes."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from tt_cli.main import cli
from tt_resources.synthetic import SyntheticSource

RECENT = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10)).strftime("%Y-%m-%d")


def run(db_url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, ["ingest", *args], env={"DATABASE_URL": db_url, "COLUMNS": "120", **env})


def summary_rows(output: str) -> dict[str, list[str]]:
    """timeframe -> the summary table's cells."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in ("1d", "1h", "15m"):
            rows[cells[0]] = cells[1:]
    return rows


def test_ingest_then_everything_fresh(db_url):
    first = run(db_url, "--symbols", "AAA,BBB", "--start", RECENT, "--source", "synthetic")
    assert first.exit_code == 0, first.output
    assert "ingest summary" in first.output
    assert all(cells[:4] == ["2", "0", "2", "0"] for cells in summary_rows(first.output).values())
    second = run(db_url, "--symbols", "AAA,BBB", "--start", RECENT, "--source", "synthetic")
    assert second.exit_code == 0, second.output
    rows = summary_rows(second.output)
    assert set(rows) == {"1d", "1h", "15m"}
    assert all(cells == ["2", "2", "0", "0", "0", "0", "0", "0", "0"] for cells in rows.values())


def test_failed_partition_exits_non_zero_after_the_others(db_url, tmp_path):
    now = pd.Timestamp.now(tz="UTC")
    good = SyntheticSource(seed=1, clock=lambda: now).fetch("GOOD", "1d", now - pd.Timedelta(days=30), now)
    good.to_csv(tmp_path / "GOOD_1d.csv", index=False)
    good.assign(close=-1.0).to_csv(tmp_path / "BAD_1d.csv", index=False)
    args = ("--symbols", "BAD,GOOD", "--interval", "1d", "--source", "csv", "--start", RECENT)
    result = run(db_url, *args, TT_CSV_DIR=str(tmp_path))
    assert result.exit_code == 1
    assert "failed BAD 1d:" in result.output
    assert "BAD_1d.csv: row 1: close missing or not positive" in result.output.replace("\n", "")
    assert summary_rows(result.output)["1d"][:4] == ["2", "0", "1", "1"]


def test_start_must_precede_end(sqlite_url):
    result = run(sqlite_url, "--symbols", "AAA", "--start", "2025-02-01", "--end", "2025-01-01")
    assert result.exit_code == 2 and "is not before --end" in result.output


def test_watchlist_symbols_with_limit(sqlite_url, tmp_path):
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol,sector\nAAA,Energy\nBBB,Energy\nCCC,Utilities\n")
    result = run(
        sqlite_url, "--limit", "2", "--interval", "1d", "--start", RECENT, TT_WATCHLIST=str(watchlist)
    )
    assert result.exit_code == 0, result.output
    assert summary_rows(result.output)["1d"][:3] == ["2", "0", "2"]


def test_bad_watchlist_is_one_clear_line(sqlite_url, tmp_path):
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol\nAAA\nAAA\n")
    result = run(sqlite_url, "--interval", "1d", TT_WATCHLIST=str(watchlist))
    assert result.exit_code == 2
    assert "watchlist.csv" in result.output and "Traceback" not in result.output


def test_via_dagster_records_runs_and_second_run_is_fresh(sqlite_url, tmp_path):
    import dagster as dg

    home = tmp_path / "dagster_home"
    args = ("--symbols", "AAA,BBB", "--interval", "1d", "--start", RECENT, "--via-dagster")
    first = run(sqlite_url, *args, DAGSTER_HOME=str(home))
    assert first.exit_code == 0, first.output
    assert summary_rows(first.output)["1d"][:4] == ["2", "0", "2", "0"]
    second = run(sqlite_url, *args, DAGSTER_HOME=str(home))
    assert second.exit_code == 0, second.output
    assert summary_rows(second.output)["1d"] == ["2", "2", "0", "0", "0", "0", "0", "0", "0"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.job_name == "market_data_job" for r in runs)
        assert set(instance.get_dynamic_partitions("symbol")) == {"AAA", "BBB"}
        assert instance.get_latest_materialization_event(dg.AssetKey("features")) is not None
