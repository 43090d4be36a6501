"""Fetch holes in tt_fetch_hole: spans [start_ts, end_ts) of a partition that a source did not deliver.

A hole is recorded when IBKR answers "no data" for a chunk inside the history it says it has, or when a walk
that fills in older bars fails part-way. It stays open (resolved_at NULL) until a later fetch delivers the
span; `attempts` counts the fetches that did not. The writers take a Connection so the caller records holes
in the same transaction as the bars of the chunk. A user can accept a span as empty (`accept_hole`: a
trading suspension): an accepted hole is not open, is never retried, and coverage counts its bars as
expected-empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.schema import fetch_holes


@dataclass(frozen=True)
class Hole:
    """One open hole of a partition."""

    id: int
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    reason: str
    attempts: int


def open_holes(engine: sa.Engine, timeframe: str, symbol: str | None = None) -> list[Hole]:
    """Open holes of `timeframe` (one symbol, or all), by symbol and start; one query."""
    stmt = sa.select(fetch_holes).where(
        fetch_holes.c.timeframe == timeframe,
        fetch_holes.c.resolved_at.is_(None),
        fetch_holes.c.accepted_at.is_(None),
    )
    if symbol is not None:
        stmt = stmt.where(fetch_holes.c.symbol == symbol)
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(fetch_holes.c.symbol, fetch_holes.c.start_ts)).mappings().all()
    return [
        Hole(
            r["id"],
            r["symbol"],
            r["timeframe"],
            pd.Timestamp(r["start_ts"]),
            pd.Timestamp(r["end_ts"]),
            r["reason"],
            r["attempts"],
        )
        for r in rows
    ]


def record_hole(
    conn: sa.Connection,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    reason: str,
    attempts: int = 1,
) -> None:
    """Record [start, end) as open; an open hole with exactly that span gets one more attempt instead."""
    same = (
        fetch_holes.c.symbol == symbol,
        fetch_holes.c.timeframe == timeframe,
        fetch_holes.c.start_ts == start,
        fetch_holes.c.end_ts == end,
        fetch_holes.c.resolved_at.is_(None),
        fetch_holes.c.accepted_at.is_(None),
    )
    bumped = conn.execute(
        sa.update(fetch_holes).where(*same).values(attempts=fetch_holes.c.attempts + 1, reason=reason)
    )
    if bumped.rowcount == 0:
        conn.execute(
            sa.insert(fetch_holes).values(
                symbol=symbol,
                timeframe=timeframe,
                start_ts=start,
                end_ts=end,
                reason=reason,
                attempts=attempts,
                found_at=pd.Timestamp.now(tz="UTC"),
            )
        )


def resolve_holes(
    conn: sa.Connection,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    keep: set[tuple[pd.Timestamp, pd.Timestamp]] = frozenset(),
) -> int:
    """Close the open holes of (symbol, timeframe) lying inside [start, end), which was just walked, except
    those whose (start, end) is in `keep` (recorded again by that walk); returns how many were closed."""
    inside = conn.execute(
        sa.select(fetch_holes.c.id, fetch_holes.c.start_ts, fetch_holes.c.end_ts).where(
            *_open_inside(symbol, timeframe, start, end)
        )
    ).all()
    ids = [row.id for row in inside if (row.start_ts, row.end_ts) not in keep]
    if ids:
        conn.execute(
            sa.update(fetch_holes)
            .where(fetch_holes.c.id.in_(ids))
            .values(resolved_at=pd.Timestamp.now(tz="UTC"))
        )
    return len(ids)


def accept_hole(
    engine: sa.Engine, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp, note: str
) -> int:
    """Accept [start, end) of (symbol, timeframe) as empty: the open holes inside it are marked accepted,
    and when none lies inside, the span itself is recorded as an accepted hole. Returns the holes accepted."""
    now = pd.Timestamp.now(tz="UTC")
    inside = _open_inside(symbol, timeframe, start, end)
    with engine.begin() as conn:
        accepted = conn.execute(sa.update(fetch_holes).where(*inside).values(accepted_at=now, note=note))
        if accepted.rowcount:
            return accepted.rowcount
        conn.execute(
            sa.insert(fetch_holes).values(
                symbol=symbol,
                timeframe=timeframe,
                start_ts=start,
                end_ts=end,
                reason="accepted by the user",
                attempts=0,
                found_at=now,
                accepted_at=now,
                note=note,
            )
        )
    return 1


def accepted_spans(engine: sa.Engine, timeframe: str, symbol: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) of the accepted holes of (symbol, timeframe), by start: bars expected there are not
    missing."""
    stmt = (
        sa.select(fetch_holes.c.start_ts, fetch_holes.c.end_ts)
        .where(
            fetch_holes.c.symbol == symbol,
            fetch_holes.c.timeframe == timeframe,
            fetch_holes.c.accepted_at.is_not(None),
        )
        .order_by(fetch_holes.c.start_ts)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in rows]


def parse_accepted(text: str) -> tuple[str, str, pd.Timestamp, pd.Timestamp, str]:
    """`SYMBOL:TIMEFRAME:FIRST..LAST[:NOTE]` (days, LAST included; LAST may be `MM-DD` of FIRST's year), e.g.
    `AAPL:15m:2026-04-06..04-20:suspended` -> (symbol, timeframe, start, end, note) with [start, end) in UTC.
    ValueError saying what is wrong."""
    from tt_resources.timeframes import TIMEFRAME_NAMES

    parts = text.split(":", 3)
    if len(parts) < 3 or ".." not in parts[2]:
        raise ValueError(
            f"{text!r}: need SYMBOL:TIMEFRAME:FIRST..LAST[:NOTE], e.g. AAPL:15m:2026-04-06..04-20:suspended"
        )
    symbol, timeframe, days = parts[0].strip(), parts[1].strip(), parts[2]
    if timeframe not in TIMEFRAME_NAMES:
        raise ValueError(f"{text!r}: timeframe {timeframe!r} is not one of {', '.join(TIMEFRAME_NAMES)}")
    first, last = (d.strip() for d in days.split("..", 1))
    try:
        start = pd.Timestamp(first, tz="UTC")
        end = pd.Timestamp(last if len(last) > 5 else f"{start.year}-{last}", tz="UTC") + pd.Timedelta(days=1)
    except ValueError:
        raise ValueError(f"{text!r}: {days!r} is not FIRST..LAST days like 2026-04-06..2026-04-20") from None
    if end <= start:
        raise ValueError(f"{text!r}: the last day is before the first")
    return symbol, timeframe, start, end, (parts[3].strip() if len(parts) > 3 else "") or "accepted"


def _open_inside(symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple:
    """The conditions of (symbol, timeframe)'s open holes (neither resolved nor accepted) inside [start, end)."""
    return (
        fetch_holes.c.symbol == symbol,
        fetch_holes.c.timeframe == timeframe,
        fetch_holes.c.resolved_at.is_(None),
        fetch_holes.c.accepted_at.is_(None),
        fetch_holes.c.start_ts >= start,
        fetch_holes.c.end_ts <= end,
    )
