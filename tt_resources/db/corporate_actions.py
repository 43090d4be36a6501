"""tt_corporate_action: splits and revisions of stored bars, found by comparing a fetch's re-read overlap with
what the source serves now (tt_resources.splits.compare_overlap), or declared with a CSV file's splits."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.bulk import read_frame
from tt_resources.db.schema import corporate_actions
from tt_resources.splits import Change


def record_change(
    conn: sa.Connection,
    symbol: str,
    timeframe: str,
    change: Change,
    *,
    source: str,
    first_session: pd.Timestamp,
) -> bool:
    """Record `change` (first_session: a split's earliest first session; a revision's first changed bar);
    a split of the same ratio already recorded for `symbol` from `first_session` on is not recorded again
    (another timeframe saw it first). Returns whether a row was written."""
    if change.kind == "split":
        known = conn.execute(
            sa.select(sa.func.count()).where(
                corporate_actions.c.symbol == symbol,
                corporate_actions.c.kind == "split",
                corporate_actions.c.ratio == change.ratio,
                corporate_actions.c.first_session >= first_session,
            )
        ).scalar_one()
        if known:
            return False
    conn.execute(
        sa.insert(corporate_actions).values(
            symbol=symbol,
            kind=change.kind,
            ratio=change.ratio,
            timeframe=timeframe,
            first_session=first_session,
            detected_at=pd.Timestamp.now(tz="UTC"),
            source=source,
            evidence=change.evidence,
        )
    )
    return True


def recorded_actions(engine: sa.Engine | sa.Connection, symbol: str | None = None) -> pd.DataFrame:
    """tt_corporate_action rows (one symbol, or all), oldest first: symbol, kind, ratio, timeframe,
    first_session, detected_at, source, evidence."""
    stmt = sa.select(*(c for c in corporate_actions.c if c.name != "id")).order_by(corporate_actions.c.id)
    if symbol is not None:
        stmt = stmt.where(corporate_actions.c.symbol == symbol)
    return read_frame(engine, stmt)


def recorded_splits(engine: sa.Engine | sa.Connection, symbol: str) -> list[tuple[pd.Timestamp, float]]:
    """(first session, ratio) of the splits recorded for `symbol`: jumps there are not fake returns."""
    found = recorded_actions(engine, symbol)
    found = found[found["kind"] == "split"]
    return [
        (pd.Timestamp(ts), float(r)) for ts, r in zip(found["first_session"], found["ratio"], strict=True)
    ]
