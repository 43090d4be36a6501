"""`tt ingest`: bring the watchlist's bars up to date in the database (replaces mvp_pipeline)."""

from __future__ import annotations

from datetime import datetime

import click
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tt_resources.timeframes import TIMEFRAME_NAMES

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


def _utc(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_localize("UTC")


def _open_database():
    """Migrated engine for DATABASE_URL (or the embedded SQLite file); one clear line when unreachable."""
    from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine
    from tt_resources.db.migrate import upgrade

    engine = create_engine()
    try:
        check_connection(engine)
    except DatabaseConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    upgrade(engine)
    return engine


def _universe(symbols: str | None, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """(symbols, symbol -> sector): from --symbols, else from the watchlist (first `limit`)."""
    if symbols:
        return [s.strip().upper() for s in symbols.split(",") if s.strip()][:limit], {}
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        watchlist = load_watchlist(limit=limit)
    except WatchlistError as exc:
        raise click.ClickException(str(exc)) from None
    return watchlist.symbols, dict(zip(watchlist.frame["symbol"], watchlist.frame["sector"], strict=True))


def _summary(results) -> Table:
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


@click.command()
@click.option(
    "--start", type=DATE, help="First bar (UTC) for partitions with no data yet; default per timeframe."
)
@click.option("--end", type=DATE, help="Ingest bars that closed by this instant (UTC); default now.")
@click.option("--interval", type=click.Choice([*TIMEFRAME_NAMES, "all"]), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N watchlist symbols.")
@click.option("--symbols", help="Comma-separated symbols instead of the watchlist.")
@click.option(
    "--source", type=click.Choice(["synthetic", "csv", "ibkr"]), help="Default: TT_SOURCE, else synthetic."
)
def ingest(start, end, interval, limit, symbols, source) -> None:
    """Fetch the missing tail of every symbol x timeframe partition and store it (fresh ones make no request)."""

    from tt_resources import config
    from tt_resources.ingest import ingest_many
    from tt_resources.sources import make_source

    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise click.UsageError(f"--start {start:%Y-%m-%d %H:%M} is not before --end {end:%Y-%m-%d %H:%M}")
    timeframes = list(TIMEFRAME_NAMES) if interval == "all" else [interval]
    names, sectors = _universe(symbols, limit)
    engine = _open_database()
    name = source or config.source_name()
    market = make_source(name, **({"sectors": sectors} if name == "synthetic" else {}))
    console = Console()
    try:
        with Progress(
            TextColumn("[bold]{task.description:>4}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            tasks = {tf: progress.add_task(tf, total=len(names), note="") for tf in timeframes}

            def advance(result) -> None:
                note = f"{result.symbol}: {result.status}" + (f" ({result.error})" if result.error else "")
                progress.update(tasks[result.timeframe], advance=1, note=note[:60])

            results = ingest_many(engine, market, names, timeframes, start=start, end=end, progress=advance)
    finally:
        market.close()
    console.print(_summary(results))
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/red] {r.symbol} {r.timeframe}: {r.error}", highlight=False)
    if failed:
        raise SystemExit(1)
