"""Incremental ingest of bars into tt_prices, one (symbol, timeframe) partition at a time.

A partition's target is the latest bar that has closed by `now` (or by `end`) on the NYSE calendar. If the
stored high-water mark already reaches it, nothing is requested ("fresh"). Otherwise the source is asked for
[high-water mark, target] - the stored last bar is fetched again so a revised bar gets corrected - or, for an
empty partition, for the timeframe's default history (3 years 1d, 2 years 1h, 1 year 15m) unless `start` says
otherwise. Failures are caught per partition and reported in the result; ingest_many always finishes the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tt_resources import bar_grid, calendar
from tt_resources.db.prices import high_water_marks, upsert_price_bars
from tt_resources.sources import MarketDataSource
from tt_resources.terms import utc
from tt_resources.timeframes import get_timeframe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionResult:
    """What one partition's ingest did. status: fresh (no request needed) | updated | failed."""

    symbol: str
    timeframe: str
    status: str
    requests: int = 0
    bars_fetched: int = 0
    bars_written: int = 0  # inserted + updated rows
    first_ts: pd.Timestamp | None = None  # first and last bar fetched (None when nothing was)
    last_ts: pd.Timestamp | None = None
    pacing_waits: int = 0
    error: str | None = None


def ingest_partition(
    engine: sa.Engine,
    source: MarketDataSource,
    symbol: str,
    timeframe: str,
    *,
    start=None,
    end=None,
    now=None,
) -> PartitionResult:
    """Bring one partition up to the latest closed bar (see module doc). Naive start/end/now mean UTC."""
    marks = high_water_marks(engine, get_timeframe(timeframe).name)
    last = marks.loc[marks["symbol"] == symbol, "last_ts"]
    return ingest_after(
        engine, source, symbol, timeframe, last.iloc[0] if len(last) else None, start=start, end=end, now=now
    )


def ingest_many(
    engine: sa.Engine,
    source: MarketDataSource,
    symbols: Iterable[str],
    timeframes: Iterable[str],
    *,
    start=None,
    end=None,
    now=None,
    progress: Callable[[PartitionResult], None] | None = None,
) -> list[PartitionResult]:
    """Ingest every symbol x timeframe (timeframe-major); `progress` is called after each partition."""
    results = []
    for timeframe in timeframes:
        marks = high_water_marks(engine, get_timeframe(timeframe).name).set_index("symbol")["last_ts"]
        for symbol in symbols:
            result = ingest_after(
                engine, source, symbol, timeframe, marks.get(symbol), start=start, end=end, now=now
            )
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def ingest_after(
    engine: sa.Engine,
    source: MarketDataSource,
    symbol: str,
    timeframe: str,
    last_ts,
    *,
    start=None,
    end=None,
    now=None,
) -> PartitionResult:
    """Bring one partition whose stored high-water mark is `last_ts` (None: empty) up to the latest closed
    bar (see module doc); the callers that handle many partitions read the marks in one query."""
    tf = get_timeframe(timeframe)
    now = utc(now) or pd.Timestamp.now(tz="UTC")
    target = calendar.last_closed_bar(tf.name, min(now, utc(end) or now))
    last_ts = utc(last_ts)
    if target is None or (last_ts is not None and last_ts >= target):
        return PartitionResult(symbol, tf.name, "fresh", last_ts=last_ts)
    window_end = target + pd.Timedelta(seconds=1)  # exclusive: the target bar is the last one asked for
    window_start = last_ts if last_ts is not None else utc(start) or window_end - tf.default_history
    before = source.stats.snapshot()
    try:
        source.bind(engine)
        bars = bar_grid.conform(source.fetch(symbol, tf.name, window_start, window_end), symbol, tf.name)
        written = upsert_price_bars(engine, bars.assign(symbol=symbol, timeframe=tf.name), source=source.name)
    except Exception as exc:  # one partition's failure must not stop the others
        used = source.stats.since(before)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("ingest %s %s failed: %s", symbol, tf.name, reason)
        return PartitionResult(
            symbol, tf.name, "failed", used.requests, pacing_waits=used.pacing_waits, error=reason
        )
    used = source.stats.since(before)
    return PartitionResult(
        symbol,
        tf.name,
        "updated",
        requests=used.requests,
        bars_fetched=len(bars),
        bars_written=written.inserted + written.updated,
        first_ts=bars["ts"].iloc[0] if len(bars) else None,
        last_ts=bars["ts"].iloc[-1] if len(bars) else None,
        pacing_waits=used.pacing_waits,
    )
