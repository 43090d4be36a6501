"""The market-data source protocol shared by the synthetic, CSV/Parquet and IBKR implementations.

A source returns *bars frames*: one row per bar, sorted by `ts` (bar start, tz-aware UTC, unique), columns
`tt_resources.terms.SOURCE_BAR_COLUMNS` = ts, open, high, low, close (price units), volume (shares), wap
(volume-weighted average price, may be NaN), bar_count (trades, may be NaN). Windows are half-open: [start, end),
bounded by tz-aware instants (`terms.aware_utc`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from tt_resources import config
from tt_resources.terms import SOURCE_BAR_COLUMNS

SOURCE_NAMES: tuple[str, ...] = ("synthetic", "csv", "ibkr")


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
    bars: int = 0  # bars returned by fetch()

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


@runtime_checkable
class MarketDataSource(Protocol):
    """Anything that returns OHLCV bars for (symbol, timeframe, [start, end))."""

    name: str
    stats: SourceStats

    def fetch(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Bars of `symbol` in `timeframe` starting in [start, end) as a bars frame (may be empty)."""
        ...

    def bind(self, engine) -> None:
        """Where to keep the source's own records (IBKR: tt_contracts, tt_fetch_log); others ignore it."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def fetch_chunks(
    source: MarketDataSource, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[Chunk]:
    """The source's delivery of [start, end) chunk by chunk (IBKR: one chunk per historical request, so each
    can be stored as it arrives); a source without `fetch_chunks` gives one chunk (failed when it raises)."""
    if hasattr(source, "fetch_chunks"):
        yield from source.fetch_chunks(symbol, timeframe, start, end)
        return
    before = source.stats.snapshot()
    try:
        bars = source.fetch(symbol, timeframe, start, end)
    except Exception as exc:  # the source's own one-line error; the caller reports it for this partition
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield Chunk(start, end, empty_bars(), source.stats.since(before), "failed", reason)
        return
    yield Chunk(start, end, bars, source.stats.since(before))


def empty_bars() -> pd.DataFrame:
    """A bars frame with no rows and the right dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in SOURCE_BAR_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def _watchlist_column(*columns: str) -> dict[str, str | tuple[str, ...]]:
    """symbol -> the watchlist's value in `columns` (a tuple when several); empty when it cannot be read."""
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        frame = load_watchlist().frame
    except (OSError, WatchlistError):
        return {}
    values = frame[list(columns)].fillna("").itertuples(index=False, name=None)
    return {
        symbol: row if len(columns) > 1 else row[0]
        for symbol, row in zip(frame["symbol"], values, strict=True)
    }


def make_source(name: str | None = None, **options) -> MarketDataSource:
    """The source called `name` (default TT_SOURCE, else synthetic), built with `options`.

    synthetic: seed, sectors (default: the watchlist's); csv: directory (default TT_CSV_DIR or `<data dir>/csv`),
    tz (TT_CSV_TZ), date_format (TT_CSV_DATE_FORMAT);
    ibkr: host, port, client_id (default IB_HOST/IB_PORT/IB_CLIENT_ID), engine, rules, timeouts, listings
    (symbol -> (exchange, currency, primary exchange); default: the watchlist's).
    """
    name = (name or config.settings().tt_source).strip().lower()
    if name == "synthetic":
        from tt_resources.sources.synthetic import SyntheticSource

        options.setdefault("sectors", _watchlist_column("sector"))
        return SyntheticSource(**options)
    if name == "csv":
        from tt_resources.sources.csv import CsvSource

        return CsvSource(**options)
    if name == "ibkr":
        from tt_resources.sources.ibkr import IbkrSource

        options.setdefault("listings", _watchlist_column("exchange", "currency", "primary_exchange"))
        return IbkrSource.from_env(**options)
    raise ValueError(f"unknown market-data source {name!r}; valid: {', '.join(SOURCE_NAMES)}")
