"""Helpers shared by the `tt` subcommands: bad-input errors (exit code 2) and opening the database."""

from __future__ import annotations

import click
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class BadInput(click.ClickException):
    """One-line error for bad input or an unreachable database; exit code 2."""

    exit_code = 2


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
