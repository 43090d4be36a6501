"""The trading tables (migration 0008): the champion and its promotion record, the kill switch, targets,
orders, fills and reconciled positions (SQLAlchemy Core, bound parameters only).

Sessions are exchange dates (datetime.date); instants tz-aware UTC; money in the account's currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from tt_resources.db.schema import fills, orders, positions, promotions, targets, trading_halts

CASH = "$CASH"  # tt_position row of the account's cash (value = cash)
NET_LIQUIDATION = "$NETLIQ"  # tt_position row of the account's net liquidation value
ACCOUNT_ROWS = (CASH, NET_LIQUIDATION)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- champion -------------------------------------------------------------------------------------------


def champion(conn: sa.Engine | sa.Connection, timeframe: str) -> str | None:
    """The model id of `timeframe`'s champion (the newest tt_promotion row's model), or None."""
    row = _newest_promotion(conn, timeframe)
    return row["model_id"] if row else None


def _newest_promotion(conn: sa.Engine | sa.Connection, timeframe: str) -> dict[str, Any] | None:
    query = (
        sa.select(promotions)
        .where(promotions.c.timeframe == timeframe)
        .order_by(promotions.c.at.desc(), promotions.c.id.desc())
        .limit(1)
    )
    with _connection(conn) as c:
        row = c.execute(query).mappings().first()
    return dict(row) if row else None


def record_promotion(
    engine: sa.Engine,
    *,
    timeframe: str,
    model_id: str | None,
    who: str,
    reason: str | None,
    verdict: str | None = None,
    forced: bool = False,
) -> dict[str, Any]:
    """Append a promotion (model_id given) or a demotion (None: no champion) of `timeframe`'s champion,
    naming the previous one; returns the row written."""
    with engine.begin() as conn:
        previous = _newest_promotion(conn, timeframe)
        row = {
            "timeframe": timeframe,
            "action": "promote" if model_id is not None else "demote",
            "model_id": model_id,
            "previous_model_id": previous["model_id"] if previous else None,
            "verdict": verdict,
            "forced": forced,
            "reason": reason,
            "who": who,
            "at": _now(),
        }
        conn.execute(sa.insert(promotions), [row])
    return row


def promotion_record(engine: sa.Engine, timeframe: str | None = None) -> list[dict[str, Any]]:
    """Every tt_promotion row (of `timeframe`), newest first."""
    query = sa.select(promotions).order_by(promotions.c.at.desc(), promotions.c.id.desc())
    if timeframe is not None:
        query = query.where(promotions.c.timeframe == timeframe)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --- kill switch ----------------------------------------------------------------------------------------


def set_halt(engine: sa.Engine, halted: bool, *, who: str, reason: str | None) -> None:
    """Switch the kill switch on (`halted`) or off; the newest tt_trading_halt row decides."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(trading_halts), [{"halted": halted, "reason": reason, "who": who, "at": _now()}]
        )


def halt_state(conn: sa.Engine | sa.Connection) -> dict[str, Any] | None:
    """The newest tt_trading_halt row when it halts trading (who, reason, at), else None."""
    query = sa.select(trading_halts).order_by(trading_halts.c.at.desc(), trading_halts.c.id.desc()).limit(1)
    with _connection(conn) as c:
        row = c.execute(query).mappings().first()
    return dict(row) if row is not None and row["halted"] else None


# --- targets --------------------------------------------------------------------------------------------


def write_targets(
    engine: sa.Engine,
    model_id: str,
    session: dt.date,
    decision_ts: dt.datetime,
    weights: Mapping[str, float],
    closes: Mapping[str, float],
) -> None:
    """Store `model_id`'s target weights decided on the bar `decision_ts` (session `session`), replacing any
    stored for the same bar (a recomputation from the same bars gives the same weights)."""
    created = _now()
    rows = [
        {
            "model_id": model_id,
            "decision_ts": decision_ts,
            "symbol": symbol,
            "session": session,
            "weight": float(weight),
            "close": float(closes[symbol]),
            "created_at": created,
        }
        for symbol, weight in weights.items()
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.delete(targets).where(targets.c.model_id == model_id, targets.c.decision_ts == decision_ts)
        )
        conn.execute(sa.insert(targets), rows)


def read_targets(engine: sa.Engine, model_id: str, session: dt.date) -> dict[str, tuple[float, float]]:
    """{symbol: (weight, close)} of `model_id`'s target decided on `session` (empty when none)."""
    query = sa.select(targets.c.symbol, targets.c.weight, targets.c.close).where(
        targets.c.model_id == model_id, targets.c.session == session
    )
    with engine.connect() as conn:
        return {r.symbol: (r.weight, r.close) for r in conn.execute(query)}


# --- orders, fills, positions ----------------------------------------------------------------------------


def upsert_orders(engine: sa.Engine, rows: Iterable[dict[str, Any]]) -> None:
    """Insert or update tt_order rows by order_ref (every column given is written; updated_at set now)."""
    now = _now()
    with engine.begin() as conn:
        for row in rows:
            row = {**row, "updated_at": now}
            known = conn.execute(
                sa.select(orders.c.order_ref).where(orders.c.order_ref == row["order_ref"])
            ).first()
            if known is None:
                conn.execute(
                    sa.insert(orders),
                    [{"created_at": now, "filled": 0.0, "messages": [], "limit_checks": {}, **row}],
                )
            else:
                changes = {k: v for k, v in row.items() if k != "order_ref"}
                conn.execute(
                    sa.update(orders).where(orders.c.order_ref == row["order_ref"]).values(**changes)
                )


def orders_of(
    engine: sa.Engine, *, session: dt.date | None = None, model_id: str | None = None
) -> list[dict]:
    """tt_order rows (of the session they execute at, of a model), by order_ref."""
    query = sa.select(orders).order_by(orders.c.order_ref)
    if session is not None:
        query = query.where(orders.c.session == session)
    if model_id is not None:
        query = query.where(orders.c.model_id == model_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def record_fills(engine: sa.Engine, rows: Iterable[dict[str, Any]]) -> int:
    """Store executions not stored yet (by exec_id) and fill in a commission reported later; returns the
    executions new to tt_fill."""
    now, new = _now(), 0
    with engine.begin() as conn:
        for row in rows:
            stored = conn.execute(
                sa.select(fills.c.commission).where(fills.c.exec_id == row["exec_id"])
            ).first()
            if stored is None:
                conn.execute(sa.insert(fills), [{**row, "recorded_at": now}])
                new += 1
            elif stored.commission is None and row.get("commission") is not None:
                conn.execute(
                    sa.update(fills)
                    .where(fills.c.exec_id == row["exec_id"])
                    .values(commission=row["commission"])
                )
    return new


def fills_of(engine: sa.Engine, order_refs: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """tt_fill rows (of these orders), by time."""
    query = sa.select(fills).order_by(fills.c.time, fills.c.exec_id)
    if order_refs is not None:
        query = query.where(fills.c.order_ref.in_(list(order_refs)))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def write_positions(engine: sa.Engine, account: str, session: dt.date, rows: list[dict[str, Any]]) -> None:
    """Replace the account's reconciled positions of `session` (symbol, shares, price, value, as_of rows;
    cash and net liquidation under CASH and NET_LIQUIDATION)."""
    with engine.begin() as conn:
        conn.execute(
            sa.delete(positions).where(positions.c.account == account, positions.c.session == session)
        )
        conn.execute(sa.insert(positions), [{"account": account, "session": session, **r} for r in rows])


def positions_of(engine: sa.Engine, session: dt.date, account: str | None = None) -> list[dict[str, Any]]:
    """tt_position rows of `session` (of one account), by account and symbol."""
    query = sa.select(positions).where(positions.c.session == session)
    if account is not None:
        query = query.where(positions.c.account == account)
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(query.order_by(positions.c.account, positions.c.symbol)).mappings()
        ]


def latest_position_session(engine: sa.Engine) -> dt.date | None:
    """The newest session with reconciled positions, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(positions.c.session))).scalar()


class _connection:
    """`with _connection(engine_or_connection) as conn`: a connection, opened only for an engine."""

    def __init__(self, target: sa.Engine | sa.Connection) -> None:
        self.target, self.opened = target, None

    def __enter__(self) -> sa.Connection:
        if isinstance(self.target, sa.Connection):
            return self.target
        self.opened = self.target.connect()
        return self.opened

    def __exit__(self, *exc) -> None:
        if self.opened is not None:
            self.opened.close()
