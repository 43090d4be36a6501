"""`tt ingest`: bring the watchlist's bars up to date in the database (replaces mvp_pipeline)."""

from __future__ import annotations

import click
from rich.console import Console

from tt_cli.common import DATE, open_pipeline, refresh, report_partitions, time_window, universe
from tt_resources.timeframes import TIMEFRAME_NAMES


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
@click.option(
    "--via-dagster",
    is_flag=True,
    help="Run the same steps as Dagster runs (runs, lineage and check results in `dagster dev`).",
)
def ingest(start, end, interval, limit, symbols, source, via_dagster) -> None:
    """Fetch the missing tail of every symbol x timeframe partition and store it (fresh ones make no request)."""
    start, end = time_window(start, end)
    timeframes = list(TIMEFRAME_NAMES) if interval == "all" else [interval]
    names = universe(symbols, limit)
    console = Console()
    pipeline = open_pipeline(via_dagster, source, console)
    report_partitions(console, refresh(pipeline, console, names, timeframes, start=start, end=end))
