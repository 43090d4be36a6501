"""The market-data source protocol shared by the synthetic, CSV/Parquet and IBKR implementations, the chunks
they deliver, their counters and errors.

A source returns *bars frames*: one row per bar, sorted by `ts` (bar start, tz-aware UTC, unique), columns
`tt_resources.terms.SOURCE_BAR_COLUMNS` = ts, open, high, low, close (price units), volume (shares), wap
(volume-weighted average price, may be NaN), bar_count (trades, may be NaN). Windows are half-open: [start, end),
bounded by tz-aware instants (`terms.aware_utc`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from tt_resources.terms import SOURCE_BAR_COLUMNS, SourceName
from tt_resources.watchlist import Listing


class SourceError(RuntimeError):
    """A source could not deliver a partition; the message is one line naming the symbol or file."""


class SymbolNotFound(SourceError):
    """The source does not know the symbol (IBKR error 200, no CSV file)."""


@dataclass
class SourceStats:
    """Counters of what a source did since it was created (monotonic; diff two snapshots per partition)."""

    requests: int = 0  # data requests issued: historical bars, head timestamps, contract lookups, file reads
    pacing_waits: int = 0  # requests the throttle delayed + pacing violations backed off
    retries: int = 0  # requests sent again after a pacing violation, timeout or disconnect
    timeouts: int = 0
    reconnects: int = 0
    bars: int = 0  # bars delivered

    def add(self, other: SourceStats) -> None:
        """Add `other`'s counts to these."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def snapshot(self) -> SourceStats:
        return dataclasses.replace(self)

    def since(self, before: SourceStats) -> SourceStats:
        """Counter differences self - before."""
        return SourceStats(
            **{f.name: getattr(self, f.name) - getattr(before, f.name) for f in dataclasses.fields(self)}
        )


@dataclass(frozen=True)
class Chunk:
    """What a source delivered for the span [start, end) of a partition (a bars frame, see module doc).

    status: ok | no_data (the source says it has no bars there although it should; a hole) | failed (it could
    not deliver; `reason` says why and no later chunk of the walk follows). `stats` counts its requests."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: pd.DataFrame
    stats: SourceStats
    status: str = "ok"
    reason: str | None = None


class MarketDataSource(Protocol):
    """Anything that returns OHLCV bars for (listing, timeframe, [start, end)).

    `concurrency` is how many partitions are worth fetching at once (ingest's threads); `stats` counts what
    the source did since it was created."""

    name: SourceName
    concurrency: int
    stats: SourceStats

    def fetch_chunks(
        self, listing: Listing, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Iterator[Chunk]:
        """The bars of [start, end) chunk by chunk, oldest first (IBKR: one chunk per historical request, so
        each can be stored as it arrives); a failure is a last chunk of status failed."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def source_now(source: MarketDataSource | None) -> pd.Timestamp:
    """The present as `source` sees it: its `clock()` when it has one (the synthetic market's, pinned by
    TT_SYNTHETIC_END, so ingest and freshness follow the market it generates), else the wall clock (UTC)."""
    clock = getattr(source, "clock", None)
    return clock() if clock is not None else pd.Timestamp.now(tz="UTC")


def one_chunk(
    fetch: Callable[[], pd.DataFrame], stats: SourceStats, start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[Chunk]:
    """The delivery of a source that answers [start, end) at once: `fetch()`'s bars as one chunk, or a failed
    chunk with the first line of its error; `stats` is the source's counters."""
    before = stats.snapshot()
    try:
        bars = fetch()
    except Exception as exc:  # the source's own one-line error; the caller reports it for this partition
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield Chunk(start, end, empty_bars(), stats.since(before), "failed", reason)
        return
    yield Chunk(start, end, bars, stats.since(before))


def empty_bars() -> pd.DataFrame:
    """A bars frame with no rows and the right dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in SOURCE_BAR_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame
