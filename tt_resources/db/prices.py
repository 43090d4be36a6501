"""OHLCV bars in tt_prices: validated idempotent upserts, readers and per-partition high-water marks.

A bars frame has one row per bar: symbol, timeframe ('1d' | '1h' | '15m'), ts (tz-aware bar start),
open, high, low, close (> 0, instrument currency), volume (>= 0, shares) and optionally wap, bar_count, source.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.db.bulk import (
    UpsertResult,
    duplicate_rows,
    float_values,
    insert_frame,
    read_frame,
    upsert_time_series,
)
from tt_resources.db.schema import prices, quarantine
from tt_resources.terms import PRICE_COLUMNS, SOURCE_BAR_COLUMNS, aware_utc
from tt_resources.timeframes import TIMEFRAME_NAMES

KEY_COLUMNS = ("symbol", "timeframe", "ts")
REQUIRED_COLUMNS = (*KEY_COLUMNS, *PRICE_COLUMNS, "volume")
TEXT_COLUMNS = frozenset({"symbol", "timeframe", "source"})
STORED_BAR_COLUMNS = ("symbol", *SOURCE_BAR_COLUMNS)  # what read_bars returns: a bars frame per symbol


class BarValidationError(ValueError):
    """A bars frame breaks a rule; the one-line message names symbol, timeframe and the first bad ts."""


def validate_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Check every rule before anything is written; returns the bars ready to store.

    The result has the frame's tt_prices columns only (others are ignored), `ts` as datetime64[us, UTC]
    and symbol/timeframe/source as categoricals. Raises BarValidationError for missing columns, naive timestamps,
    unknown timeframes, duplicate (symbol, timeframe, ts) keys and any bar that breaks a BAR_RULES rule (NaN or
    non-positive prices, high < low, open/close outside [low, high], negative volume). A missing volume (NaN)
    is an unknown volume and is stored as NULL.
    """
    bars = _prepare(frame)
    rules = {
        "missing symbol": (bars["symbol"].isna() | (bars["symbol"] == "")).to_numpy(),
        f"unknown timeframe (valid: {', '.join(TIMEFRAME_NAMES)})": ~bars["timeframe"]
        .isin(TIMEFRAME_NAMES)
        .to_numpy(),
        "missing timestamp": bars["ts"].isna().to_numpy(),
        **bar_problems(bars),
        "duplicate (symbol, timeframe, ts) in the batch": duplicate_rows(bars, KEY_COLUMNS),
    }
    bad = np.logical_or.reduce(list(rules.values()))
    if bad.any():
        row = int(np.argmax(bad))
        _fail(bars, bars["ts"], row, [name for name, mask in rules.items() if mask[row]], int(bad.sum()))
    return bars


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's tt_prices columns, text as categoricals, `ts` as datetime64[us, UTC] (naive: an error)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BarValidationError(f"bars frame lacks column(s) {', '.join(missing)}")
    bars = pd.DataFrame(
        {c.name: _values(frame[c.name]) for c in prices.columns if c.name in frame.columns}, copy=False
    )
    for text in TEXT_COLUMNS.intersection(bars.columns):  # categoricals: each distinct string hashed once
        bars[text] = bars[text].astype("category")
    ts = bars["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts)
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            _fail(bars, ts, 0, ["naive timestamp (need tz-aware UTC)"], len(bars))
    bars["ts"] = ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return bars


def bar_problems(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per BAR_RULES rule, the mask of bars that break it (the rules a single bar can break on its own)."""
    o, h, lo, c = (float_values(bars[col]) for col in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        return {
            "NaN or non-positive price": ~((o > 0) & (h > 0) & (lo > 0) & (c > 0)),
            "high < low": h < lo,
            "open outside [low, high]": (o < lo) | (o > h),
            "close outside [low, high]": (c < lo) | (c > h),
            "negative volume": float_values(bars["volume"]) < 0,
        }


def split_invalid(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bars that pass every rule, ready to store; bars that break a BAR_RULES rule with a `reason` column).

    BarValidationError as validate_bars for what no single bar explains (columns, naive or missing
    timestamps, unknown timeframes, duplicate keys)."""
    bars = _prepare(frame)
    problems = bar_problems(bars)
    bad = np.logical_or.reduce(list(problems.values()))
    rejected = bars.loc[bad].reset_index(drop=True)
    rejected["reason"] = [
        "; ".join(name for name, mask in problems.items() if mask[i]) for i in np.flatnonzero(bad)
    ]
    return validate_bars(bars.loc[~bad].reset_index(drop=True)), rejected


def _values(column: pd.Series):
    """The column's data without its index and without a copy (numpy array or pandas extension array)."""
    return column.array if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) else column.to_numpy()


def _fail(bars: pd.DataFrame, ts: pd.Series, row: int, reasons: list[str], n_bad: int) -> None:
    """Raise the one-line BarValidationError for `row` (the first bad one)."""
    stamp = ts.iloc[row]
    raise BarValidationError(
        f"bars for {bars['symbol'].iloc[row]} {bars['timeframe'].iloc[row]}: {'; '.join(reasons)} "
        f"at ts {'NaT' if pd.isna(stamp) else stamp.isoformat()} "
        f"(row {row} of {len(bars)}, {n_bad} bad rows); nothing written"
    )


def upsert_price_bars(
    engine: sa.Engine | sa.Connection, frame: pd.DataFrame, *, source: str = "unknown"
) -> UpsertResult:
    """Validate `frame`, then insert/update it into tt_prices idempotently by (symbol, timeframe, ts).

    Bars past each partition's high-water mark are appended with COPY; only the overlap is upserted,
    and unchanged rows are not rewritten. `source` fills a missing `source` column; columns that
    tt_prices does not have are ignored. One transaction.
    """
    bars = validate_bars(frame)
    if "source" not in bars.columns:
        bars["source"] = pd.Categorical.from_codes(np.zeros(len(bars), dtype=np.int8), [source])
    bars["ingested_at"] = pd.Timestamp(datetime.now(UTC))
    return upsert_time_series(engine, prices, bars, audit_columns=("ingested_at",))


def _symbol_list(symbols: str | Sequence[str] | None) -> list[str] | None:
    return [symbols] if isinstance(symbols, str) else None if symbols is None else list(symbols)


def select_series(
    table: sa.Table,
    columns: Sequence[str],
    symbols: str | Sequence[str] | None,
    timeframe: str,
    start=None,
    end=None,
) -> sa.Select:
    """SELECT `columns` of `table` for one timeframe, `symbols` (None = all) and start <= ts < end (tz-aware
    bounds; ValueError for naive ones)."""
    stmt = sa.select(*(table.c[c] for c in columns)).where(table.c.timeframe == timeframe)
    wanted = _symbol_list(symbols)
    if wanted is not None:
        stmt = stmt.where(table.c.symbol.in_(wanted))
    if start is not None:
        stmt = stmt.where(table.c.ts >= aware_utc(start, "start"))
    if end is not None:
        stmt = stmt.where(table.c.ts < aware_utc(end, "end"))
    return stmt.order_by(table.c.symbol, table.c.ts)


def read_bars(
    engine: sa.Engine | sa.Connection,
    symbols: str | Sequence[str] | None,
    timeframe: str,
    start=None,
    end=None,
) -> pd.DataFrame:
    """Bars of `timeframe` for `symbols` (None = all) with start <= ts < end, sorted by symbol, ts.

    Columns: symbol, ts (datetime64[us, UTC]), open, high, low, close, volume, wap, bar_count.
    """
    return read_frame(engine, select_series(prices, STORED_BAR_COLUMNS, symbols, timeframe, start, end))


def high_water_marks(engine: sa.Engine | sa.Connection, timeframe: str | None = None) -> pd.DataFrame:
    """One row per stored (symbol, timeframe): first_ts and last_ts (earliest and latest bar start, UTC) and
    n_bars; one query."""
    stmt = (
        sa.select(
            prices.c.symbol,
            prices.c.timeframe,
            sa.func.min(prices.c.ts).label("first_ts"),
            sa.func.max(prices.c.ts).label("last_ts"),
            sa.func.count().label("n_bars"),
        )
        .group_by(prices.c.symbol, prices.c.timeframe)
        .order_by(prices.c.symbol, prices.c.timeframe)
    )
    if timeframe is not None:
        stmt = stmt.where(prices.c.timeframe == timeframe)
    return read_frame(engine, stmt)


def window_counts(
    engine: sa.Engine | sa.Connection,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> pd.DataFrame:
    """Per stored (symbol, timeframe) of these: `inside` (bars with start <= ts < end; None = open),
    first_ts and last_ts of all its bars; one query."""
    inside = sa.and_(
        prices.c.ts >= aware_utc(start, "start") if start is not None else sa.true(),
        prices.c.ts < aware_utc(end, "end") if end is not None else sa.true(),
    )
    stmt = (
        sa.select(
            prices.c.symbol,
            prices.c.timeframe,
            sa.func.count(sa.case((inside, 1))).label("inside"),
            sa.func.min(prices.c.ts).label("first_ts"),
            sa.func.max(prices.c.ts).label("last_ts"),
        )
        .where(prices.c.symbol.in_(list(symbols)), prices.c.timeframe.in_(list(timeframes)))
        .group_by(prices.c.symbol, prices.c.timeframe)
    )
    return read_frame(engine, stmt)


def committed_counts(
    engine: sa.Engine | sa.Connection, symbols: Sequence[str], timeframes: Sequence[str], since: pd.Timestamp
) -> pd.DataFrame:
    """Per stored (symbol, timeframe) of these: `stored` (its bars in tt_prices) and `written` (those
    inserted or changed at or after `since`: their ingested_at, the writer's clock); one query. What a run
    committed, read back, whatever the run itself believed it wrote."""
    written = sa.func.count(sa.case((prices.c.ingested_at >= aware_utc(since, "since"), 1)))
    stmt = (
        sa.select(
            prices.c.symbol,
            prices.c.timeframe,
            sa.func.count().label("stored"),
            written.label("written"),
        )
        .where(prices.c.symbol.in_(list(symbols)), prices.c.timeframe.in_(list(timeframes)))
        .group_by(prices.c.symbol, prices.c.timeframe)
    )
    return read_frame(engine, stmt)


def replace_quarantine(
    conn: sa.Connection,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rejected: pd.DataFrame,
    *,
    source: str,
) -> int:
    """Make tt_bar_quarantine's bars of (symbol, timeframe) in [start, end) the `rejected` ones (split_invalid's
    second frame: the latest answer for that span); returns how many were quarantined."""
    conn.execute(
        sa.delete(quarantine).where(
            quarantine.c.symbol == symbol,
            quarantine.c.timeframe == timeframe,
            quarantine.c.ts >= aware_utc(start, "start"),
            quarantine.c.ts < aware_utc(end, "end"),
        )
    )
    if rejected.empty:
        return 0
    rows = rejected.assign(
        symbol=symbol, timeframe=timeframe, source=source, quarantined_at=pd.Timestamp(datetime.now(UTC))
    )
    return insert_frame(conn, quarantine, rows[[c.name for c in quarantine.columns]])


def quarantined(
    engine: sa.Engine | sa.Connection, symbols: Sequence[str] | None, timeframe: str
) -> pd.DataFrame:
    """Quarantined bars of `timeframe` for `symbols` (None = all): symbol, ts, OHLCV, reason; sorted."""
    columns = ("symbol", "ts", *SOURCE_BAR_COLUMNS[1:], "reason")
    return read_frame(engine, select_series(quarantine, columns, symbols, timeframe))
