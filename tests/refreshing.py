"""The fetch results of production's refresh loop (tt_pipeline.market.refresh_partitions), for tests that
assert what ingest fetched and stored."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from tt_pipeline.market import refresh_partitions
from tt_resources.ingest import PartitionResult
from tt_resources.sources.base import MarketDataSource
from tt_resources.watchlist import Listing


def fetch_results(
    engine: sa.Engine,
    source: MarketDataSource,
    listings: Iterable[Listing],
    timeframes: Iterable[str],
    **options,
) -> list[PartitionResult]:
    """refresh_partitions of every listing x timeframe (timeframe-major, without features; `options` as it
    takes them): each partition's fetch result, in that order."""
    listings = list(listings)
    return [
        outcome.fetched
        for timeframe in timeframes
        for outcome in refresh_partitions(engine, source, listings, timeframe, features=False, **options)
    ]


def fetch_result(
    engine: sa.Engine, source: MarketDataSource, listing: Listing, timeframe: str, **options
) -> PartitionResult:
    """The fetch result of one partition's refresh (see fetch_results)."""
    [result] = fetch_results(engine, source, [listing], [timeframe], **options)
    return result
