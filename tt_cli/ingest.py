"""`tt ingest`: bring the watchlist's bars up to date in the database."""

from __future__ import annotations

import typing

import click
from rich.console import Console

from tt_cli.common import (
    DATE,
    accepted,
    market_config,
    open_pipeline,
    refresh,
    report_partitions,
    time_window,
    universe,
)
from tt_resources.terms import SOURCE_NAMES, DateFormat
from tt_resources.timeframes import TIMEFRAME_NAMES


@click.command()
@click.option(
    "--start", type=DATE, help="First bar (UTC) for partitions with no data yet; default per timeframe."
)
@click.option("--end", type=DATE, help="Ingest bars that closed by this instant (UTC); default now.")
@click.option(
    "--timeframe",
    "--interval",
    "timeframe",
    type=click.Choice([*TIMEFRAME_NAMES, "all"]),
    default="all",
    show_default=True,
    help="Bar timeframe to bring up to date (--interval is the older name of this option).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N watchlist symbols.")
@click.option("--symbols", help="Comma-separated symbols instead of the watchlist.")
@click.option("--source", type=click.Choice(SOURCE_NAMES), help="Default: TT_SOURCE, else synthetic.")
@click.option(
    "--tz",
    metavar="ZONE",
    help="CSV source: IANA time zone of naive timestamps in the files, e.g. America/New_York (TT_CSV_TZ).",
)
@click.option(
    "--date-format",
    type=click.Choice(typing.get_args(DateFormat)),
    help="CSV source: field order of dates like 03/06/2024 when a file does not show it (TT_CSV_DATE_FORMAT).",
)
@click.option(
    "--via-dagster",
    is_flag=True,
    help="Run the same steps as Dagster runs (runs, lineage and check results in `dagster dev`).",
)
@click.option(
    "--accept-hole",
    "accept",
    multiple=True,
    metavar="SYMBOL:TF:FIRST..LAST[:NOTE]",
    help="Accept a span as empty (a trading suspension), e.g. AAPL:15m:2026-04-06..04-20:suspended: never asked "
    "for again, counted as expected-empty by coverage. Repeatable.",
)
def ingest(start, end, timeframe, limit, symbols, source, tz, date_format, via_dagster, accept) -> None:
    """Fetch the missing tail of every symbol x timeframe partition and store it (fresh ones make no request)."""
    start, end = time_window(start, end)
    timeframes = list(TIMEFRAME_NAMES) if timeframe == "all" else [timeframe]
    names = universe(symbols, limit)
    market = market_config(source, tz=tz, date_format=date_format)
    console = Console()
    pipeline = open_pipeline(via_dagster, market, console)
    accepted(pipeline.engine, accept, console)
    reports = refresh(pipeline, console, names, timeframes, start=start, end=end)
    report_partitions(console, reports)
