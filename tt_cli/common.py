"""Helpers shared by the `tt` subcommands: bad-input errors (exit code 2), opening the database and the
pipeline, the symbol universe, and the partition progress and summary."""

from __future__ import annotations

import click
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


class BadInput(click.ClickException):
    """One-line error for bad input or an unreachable database; exit code 2."""

    exit_code = 2


def universe(symbols: str | None, limit: int | None) -> list[str]:
    """Symbols from --symbols (comma-separated), else from the watchlist; the first `limit` of them."""
    if symbols:
        return list(dict.fromkeys(s.strip().upper() for s in symbols.split(",") if s.strip()))[:limit]
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        return load_watchlist(limit=limit).symbols
    except WatchlistError as exc:
        raise BadInput(str(exc)) from None


def open_pipeline(via_dagster: bool, source: str | None, console: Console):
    """The pipeline this command runs: tt_cli.pipeline.ViaDagster or Direct, on the migrated database."""
    from tt_cli.pipeline import Direct, ViaDagster

    engine = open_database()
    return ViaDagster(engine, source, status=console.status) if via_dagster else Direct(engine, source)


def refresh(pipeline, console: Console, symbols: list[str], timeframes: list[str], *, start=None, end=None):
    """Refresh the partitions with a progress bar per timeframe; returns their PartitionReports."""
    with timeframe_progress(console) as progress:
        tasks = {tf: progress.add_task(tf, total=len(symbols), note="") for tf in timeframes}

        def advance(report) -> None:
            note = f"{report.symbol}: {report.status}" + (f" ({report.reason})" if report.reason else "")
            progress.update(tasks[report.timeframe], advance=1, note=note[:60])

        return pipeline.refresh(symbols, timeframes, start=start, end=end, progress=advance)


def report_partitions(console: Console, reports, *, fail: bool = True) -> list:
    """Print the summary table and one line per failed partition with its reason; exit 1 when a partition
    failed and `fail`. Returns the failed reports."""
    console.print(ingest_summary(reports))
    failed = [r for r in reports if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/red] {r.symbol} {r.timeframe}: {r.reason}", highlight=False)
    if failed and fail:
        raise SystemExit(1)
    return failed


def open_database(url: str | None = None) -> sa.Engine:
    """Engine for `url` (default DATABASE_URL or the embedded SQLite file), reachable and migrated to head.

    An unreachable database raises BadInput naming host and database, never the password.
    """
    from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine
    from tt_resources.db.migrate import upgrade

    engine = create_engine(url)
    try:
        check_connection(engine)
    except DatabaseConnectionError as exc:
        raise BadInput(str(exc)) from None
    upgrade(engine)
    return engine


def ingest_summary(results) -> Table:
    """Per-timeframe counts of partition results (fresh/updated/failed, bars written, requests, pacing waits)."""
    table = Table(title="ingest summary")
    for column in (
        "timeframe",
        "partitions",
        "fresh",
        "updated",
        "failed",
        "bars",
        "requests",
        "pacing",
    ):
        table.add_column(column, justify="left" if column == "timeframe" else "right")
    for timeframe in dict.fromkeys(r.timeframe for r in results):
        rows = [r for r in results if r.timeframe == timeframe]
        table.add_row(
            timeframe,
            str(len(rows)),
            *(str(sum(r.status == s for r in rows)) for s in ("fresh", "updated", "failed")),
            f"{sum(r.bars_written for r in rows):,}",
            str(sum(r.requests for r in rows)),
            str(sum(r.pacing_waits for r in rows)),
        )
    return table


def timeframe_progress(console: Console) -> Progress:
    """A rich progress display with one bar per timeframe (`add_task(timeframe, total=..., note=...)`)."""
    return Progress(
        TextColumn("[bold]{task.description:>4}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )
