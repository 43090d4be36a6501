"""Derived per-bar features in tt_features (wide: one column per name in FEATURE_COLUMNS)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.bulk import UpsertResult, read_frame, upsert_time_series
from tt_resources.db.prices import select_series
from tt_resources.db.schema import features
from tt_resources.terms import FEATURE_COLUMNS
from tt_resources.timeframes import TIMEFRAME_NAMES

KEY_COLUMNS = ("symbol", "timeframe", "ts")


def upsert_features(engine: sa.Engine | sa.Connection, frame: pd.DataFrame) -> UpsertResult:
    """Insert/update feature rows idempotently by (symbol, timeframe, ts); one transaction.

    `frame`: symbol, timeframe, ts (tz-aware) and every FEATURE_COLUMNS column (float; NaN/inf stored as NULL).
    """
    missing = [c for c in (*KEY_COLUMNS, *FEATURE_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"features frame lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(frame["timeframe"]) - set(TIMEFRAME_NAMES))
    if unknown:
        raise ValueError(f"features frame: unknown timeframe(s) {', '.join(map(str, unknown))}")
    rows = frame[[*KEY_COLUMNS, *FEATURE_COLUMNS]].assign(computed_at=pd.Timestamp(datetime.now(UTC)))
    return upsert_time_series(engine, features, rows, audit_columns=("computed_at",))


def read_features(
    engine: sa.Engine | sa.Connection,
    symbols: str | Sequence[str] | None,
    timeframe: str,
    start=None,
    end=None,
) -> pd.DataFrame:
    """Features of `timeframe` for `symbols` (None = all) with start <= ts < end, sorted by symbol, ts.

    Columns: symbol, ts (datetime64[us, UTC]) and FEATURE_COLUMNS (float, NaN where NULL).
    """
    return read_frame(
        engine, select_series(features, ("symbol", "ts", *FEATURE_COLUMNS), symbols, timeframe, start, end)
    )


def feature_marks(engine: sa.Engine | sa.Connection, timeframe: str) -> dict[str, pd.Timestamp]:
    """Symbol -> start of its latest stored feature row (UTC) for one timeframe; one query."""
    stmt = (
        sa.select(features.c.symbol, sa.func.max(features.c.ts).label("last_ts"))
        .where(features.c.timeframe == timeframe)
        .group_by(features.c.symbol)
    )
    marks = read_frame(engine, stmt)
    return dict(zip(marks["symbol"], marks["last_ts"], strict=True))
