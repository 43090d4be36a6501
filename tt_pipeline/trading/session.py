"""One run of the trading loop for a session (after its close): reconcile, decide, check, submit.

1. The session must be an exchange session whose close (early closes included: tt_resources.calendar) has
   passed, so its 1d bars are final; otherwise no order, one line.
2. Reconcile first: the broker's executions of our orders (tt_fill), our open orders and their fills
   (tt_order) and the account's positions, cash and net liquidation (tt_position of the session).
3. The champion's target (tt_pipeline.trading.target, stored in tt_target) from the book it holds now.
4. Whole-share market-on-open orders for the next session (tt_pipeline.trading.orders), none inside the
   model's no-trade band, each with order_ref(next session, model, symbol).
5. The blocking pre-trade limits; then the gates: trading enabled (TT_TRADING_ENABLED), not halted (`tt halt`,
   TT_TRADING_HALT, checked again before every order), a paper account unless TT_TRADING_ALLOW_LIVE.
6. Submit exactly the orders the broker does not know yet: an order ref among its open orders or its
   executions, or rejected before, is never sent again, so a rerun after a crash (kill -9 mid-submission,
   a connection lost before an acknowledgement) sends only the missing ones. A rejection is one line and
   the others go on; at most TT_TRADING_ORDERS_PER_S orders a second.
A dry run does 1-4 (reading the broker when there is one) and sends nothing, records no order.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_pipeline.trading.orders import Breach, Limits, PlannedOrder, check_limits, plan_orders
from tt_pipeline.trading.target import TIMEFRAME, NoTarget, Target, compute_target, policy_of
from tt_resources.broker import (
    AccountState,
    Broker,
    BrokerError,
    OrderReport,
    OrderRequest,
    order_ref,
    parse_order_ref,
)
from tt_resources.calendar import nyse
from tt_resources.config import Settings, settings
from tt_resources.db import registry
from tt_resources.db import trading as db
from tt_resources.db.prices import read_bars
from tt_resources.watchlist import listings_of

PAPER_PREFIX = "DU"  # IBKR paper accounts
ENABLE_HINT = "trading is disabled: set TT_TRADING_ENABLED=true (docs/trading.md) to send orders"


class TradingRefused(RuntimeError):
    """The run cannot trade at all (no champion, a live account not allowed, ...): one line."""


@dataclass
class SessionRun:
    """What a run did: the session decided on and the one its orders execute at, the model, the account
    (None: none read), the target (None: `lines` say why), the orders planned, the refs sent now, the refs
    the broker knew already, breaches, and one line per event worth telling."""

    session: dt.date
    next_session: dt.date | None
    model_id: str | None
    account: AccountState | None = None
    target: Target | None = None
    orders: list[PlannedOrder] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # symbol -> order ref
    sent: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """No missing target, breach, rejection or broker failure (a non-session day, or a session not closed
        yet, is nothing to do: ok)."""
        failed = any(line.startswith("error") for line in self.lines)
        no_target = self.next_session is not None and self.target is None
        return not (self.breaches or self.rejected or failed or no_target)


def session_close(session: dt.date) -> pd.Timestamp | None:
    """The UTC close of `session` (early closes included), None when the exchange does not trade then."""
    schedule = nyse().schedule
    day = pd.Timestamp(session)
    return schedule.at[day, "close"] if day in schedule.index else None


def next_session(session: dt.date) -> dt.date:
    """The exchange session after `session`."""
    return nyse().next_session(pd.Timestamp(session)).date()


def last_final_session(now: dt.datetime) -> dt.date:
    """The newest session whose close is at or before `now`."""
    schedule = nyse().schedule
    closed = schedule.index[schedule["close"] <= pd.Timestamp(now)]
    return closed[-1].date()


def trade_session(
    engine: sa.Engine,
    session: dt.date,
    *,
    broker: Broker | None,
    model_id: str | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    env: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SessionRun:
    """Run the loop for `session` (see the module doc); `broker` None only for a dry run (then the book is
    the last reconciled one in tt_position, else the model's initial cash). TradingRefused for a run that
    cannot start; everything else is a line of the returned SessionRun."""
    env = env or settings()
    now = now or dt.datetime.now(dt.UTC)
    model_id = model_id or db.champion(engine, TIMEFRAME)
    if model_id is None:
        raise TradingRefused(
            f"no {TIMEFRAME} champion: promote a production model first (tt promote MODEL_ID)"
        )
    model = registry.model(engine, model_id)
    if model is None:
        raise TradingRefused(f"model {model_id} is not registered in tt_model")
    close = session_close(session)
    run = SessionRun(session, None, model_id, dry_run=dry_run)
    if close is None:
        run.lines.append(f"no orders: {session} is not an NYSE session")
        return run
    if close > pd.Timestamp(now):
        run.lines.append(
            f"no orders: the {session} session closes at {close:%H:%M} UTC; its bars are not final"
        )
        return run
    run.next_session = next_session(session)
    if broker is None and not dry_run:
        raise TradingRefused("no broker to trade with (a dry run needs none)")

    if broker is not None:
        run.account = broker.account()
        reconcile(engine, broker, run.account, session, since=close - pd.Timedelta(days=1))
        held = {s: q for s, q in run.account.positions.items() if q}
        net_liquidation = run.account.net_liquidation
    else:
        held, net_liquidation = _recorded_book(engine, model)
        run.lines.append(f"dry run without a broker: the book is {_book_line(held, net_liquidation)}")

    try:
        policy = policy_of(model)
    except NoTarget as exc:
        raise TradingRefused(str(exc)) from None
    closes = _last_closes(engine, list(policy.symbols), session)
    weights_now = {s: q * closes[s] / net_liquidation for s, q in held.items() if s in closes}
    try:
        run.target = compute_target(engine, policy, session, weights_now)
    except NoTarget as exc:
        run.lines.append(str(exc))
        return run
    db.write_targets(engine, model_id, session, run.target.decision_ts, run.target.weights, run.target.closes)
    band = policy.config.env.no_trade_band
    distance = sum(abs(w - weights_now.get(s, 0.0)) for s, w in run.target.weights.items())
    if distance < band:
        run.lines.append(f"no orders: the target is within the no-trade band ({distance:.3f} < {band})")
        return run
    run.orders, skipped = plan_orders(
        run.target.weights, run.target.closes, held, net_liquidation, env.tt_trading_min_notional
    )
    run.lines += skipped
    run.refs = {o.symbol: order_ref(run.next_session, model_id, o.symbol) for o in run.orders}
    prices = {**closes, **_last_closes(engine, sorted(set(held) - set(closes)), session)}
    sectors = {listing.symbol: listing.sector for listing in listings_of([*policy.symbols, *held])}
    run.breaches = check_limits(
        run.orders, held, prices, net_liquidation, sectors, closes, Limits.from_settings(env)
    )
    run.lines += [b.line for b in run.breaches]
    if dry_run or broker is None:
        return run
    refusal = _gate(engine, env, run.account)
    if refusal is not None:
        run.lines.append(refusal)
        return run
    if run.breaches:
        _record(engine, run, state="blocked")
        run.lines.append(f"blocked: {len(run.breaches)} limit breach(es); no order of {session} was sent")
        return run
    _submit(engine, broker, run, env, sleep)
    return run


def _gate(engine: sa.Engine, env: Settings, account: AccountState) -> str | None:
    """Why no order may be sent now (one line), or None."""
    if not env.tt_trading_enabled:
        return ENABLE_HINT
    halted = _halted(engine, env)
    if halted is not None:
        return halted
    if not account.account.startswith(PAPER_PREFIX) and not env.tt_trading_allow_live:
        return (
            f"refused: account {account.account} is not a paper account ({PAPER_PREFIX}...); "
            "TT_TRADING_ALLOW_LIVE=true allows a live one"
        )
    return None


def _halted(engine: sa.Engine, env: Settings) -> str | None:
    if env.tt_trading_halt:
        return "halted: TT_TRADING_HALT is set; no order is sent"
    halt = db.halt_state(engine)
    if halt is not None:
        why = f" ({halt['reason']})" if halt["reason"] else ""
        return f"halted by {halt['who']} at {halt['at']:%Y-%m-%d %H:%M} UTC{why}: `tt halt --off` resumes"
    return None


def _submit(engine: sa.Engine, broker: Broker, run: SessionRun, env: Settings, sleep) -> None:
    """Send the orders the broker does not know yet (see the module doc), recording each in tt_order."""
    known = {r.order_ref for r in broker.orders()}
    known |= {e.order_ref for e in broker.executions(_since(run.session))}
    final = {
        row["order_ref"]
        for row in db.orders_of(engine, session=run.next_session, model_id=run.model_id)
        if row["state"] in ("rejected", "cancelled", "filled")
    }
    missing = [o for o in run.orders if run.refs[o.symbol] not in known | final]
    run.known = sorted(run.refs[o.symbol] for o in run.orders if run.refs[o.symbol] in known | final)
    _record(engine, run, state="pending_submit", only=missing, keep_state=True)
    interval = 1.0 / env.tt_trading_orders_per_s
    last = 0.0
    for order in missing:
        halted = _halted(engine, env)
        if halted is not None:
            run.lines.append(f"{halted} ({len(missing) - len(run.sent)} order(s) not sent)")
            return
        wait = last + interval - time.monotonic()
        if wait > 0:
            sleep(wait)
        last = time.monotonic()
        ref = run.refs[order.symbol]
        request = OrderRequest(order.symbol, order.quantity, ref, run.next_session)
        try:
            report = broker.place(request)
        except BrokerError as exc:
            run.lines.append(f"error: {order.describe()} ({ref}): {exc}; the next run sends what is missing")
            return
        db.upsert_orders(engine, [_report_row(report, submitted=True)])
        run.sent.append(ref)
        if report.state == "rejected":
            run.rejected.append(ref)
            why = "; ".join(report.messages) or "no reason given"
            run.lines.append(f"rejected: {order.describe()} ({ref}): {why}")


def _record(engine: sa.Engine, run: SessionRun, *, state: str, only=None, keep_state: bool = False) -> None:
    """Write the run's orders (or `only` these) to tt_order in `state`, with their limit checks; an order
    already recorded keeps its broker state when `keep_state`."""
    by_symbol: dict[str, list[str]] = {}
    for breach in run.breaches:
        by_symbol.setdefault(breach.symbol or "*", []).append(breach.line)
    existing = {
        r["order_ref"]: r for r in db.orders_of(engine, session=run.next_session, model_id=run.model_id)
    }
    rows = []
    for order in run.orders if only is None else only:
        ref = run.refs[order.symbol]
        checks = (
            {"all": "ok"}
            if not run.breaches
            else {"breaches": by_symbol.get(order.symbol, []) + by_symbol.get("*", [])}
        )
        row = {
            "order_ref": ref,
            "session": run.next_session,
            "decided_session": run.session,
            "model_id": run.model_id,
            "account": run.account.account,
            "symbol": order.symbol,
            "quantity": order.quantity,
            "reference_price": order.price,
            "notional": order.notional,
            "limit_checks": checks,
        }
        if not (keep_state and ref in existing and existing[ref]["state"] != "blocked"):
            row["state"] = state
        rows.append(row)
    db.upsert_orders(engine, rows)


def _report_row(report: OrderReport, *, submitted: bool = False) -> dict:
    """The tt_order columns an OrderReport updates."""
    row = {
        "order_ref": report.order_ref,
        "state": report.state,
        "broker_order_id": report.broker_order_id,
        "perm_id": report.perm_id,
        "filled": float(report.filled),
        "avg_fill_price": report.avg_fill_price,
        "messages": list(report.messages),
    }
    if submitted:
        row["submitted_at"] = dt.datetime.now(dt.UTC)
    return row


def _since(session: dt.date) -> dt.datetime:
    """Executions that matter to a run for `session`: from the day before its open on."""
    return (pd.Timestamp(session).tz_localize("UTC") - pd.Timedelta(days=1)).to_pydatetime()


def reconcile(
    engine: sa.Engine, broker: Broker, account: AccountState, session: dt.date, *, since: dt.datetime
) -> None:
    """Bring tt_fill, tt_order and tt_position up to what the broker says: our executions since `since`
    (commissions included), our open orders' states, each recorded order's filled shares, and the account's
    positions, cash and net liquidation as the book of `session`."""
    executions = broker.executions(pd.Timestamp(since).to_pydatetime())
    ours = [e for e in executions if parse_order_ref(e.order_ref) is not None]
    db.record_fills(
        engine,
        [
            {
                "exec_id": e.exec_id,
                "order_ref": e.order_ref,
                "session": parse_order_ref(e.order_ref)[0],
                "symbol": e.symbol,
                "shares": float(e.shares),
                "price": float(e.price),
                "commission": e.commission,
                "time": e.time,
            }
            for e in ours
        ],
    )
    recorded = {r["order_ref"]: r for r in db.orders_of(engine)}
    reports = {
        r.order_ref: r
        for r in broker.orders()
        # IBKR reports an earlier connection's rejection as cancelled: the rejection we recorded stays
        if r.order_ref in recorded and recorded[r.order_ref]["state"] != "rejected"
    }
    updates = [_report_row(r) for r in reports.values()]
    filled: dict[str, list] = {}
    for fill in db.fills_of(engine, [*recorded]):
        filled.setdefault(fill["order_ref"], []).append(fill)
    for ref, rows in filled.items():
        if ref in reports:
            continue
        shares = sum(abs(f["shares"]) for f in rows)
        price = sum(abs(f["shares"]) * f["price"] for f in rows) / shares
        wanted = abs(recorded[ref]["quantity"])
        state = "filled" if shares >= wanted else "partially_filled"
        updates.append({"order_ref": ref, "state": state, "filled": shares, "avg_fill_price": price})
    db.upsert_orders(engine, updates)
    closes = _last_closes(engine, sorted(account.positions), session)
    rows = [
        {
            "symbol": symbol,
            "shares": float(shares),
            "price": closes.get(symbol),
            "value": float(shares) * closes[symbol] if symbol in closes else 0.0,
            "as_of": account.as_of,
        }
        for symbol, shares in sorted(account.positions.items())
        if shares
    ]
    rows += [
        {"symbol": db.CASH, "shares": 0.0, "price": None, "value": account.cash, "as_of": account.as_of},
        {
            "symbol": db.NET_LIQUIDATION,
            "shares": 0.0,
            "price": None,
            "value": account.net_liquidation,
            "as_of": account.as_of,
        },
    ]
    db.write_positions(engine, account.account, session, rows)


def _last_closes(engine: sa.Engine, symbols: list[str], session: dt.date) -> dict[str, float]:
    """Each symbol's newest stored 1d close at or before `session` (absent: none stored)."""
    if not symbols:
        return {}
    end = pd.Timestamp(session).tz_localize("UTC") + pd.Timedelta(days=1)
    bars = read_bars(engine, symbols, TIMEFRAME, start=end - pd.Timedelta(days=30), end=end)
    if bars.empty:
        return {}
    last = bars.sort_values("ts").groupby("symbol").tail(1)
    return {row.symbol: float(row.close) for row in last.itertuples()}


def _recorded_book(engine: sa.Engine, model: dict) -> tuple[dict[str, float], float]:
    """(shares held, net liquidation) of the newest reconciled book in tt_position, else all cash at the
    model's env.initial_cash."""
    latest = db.latest_position_session(engine)
    if latest is None:
        return {}, float(model["config"]["env"]["initial_cash"])
    rows = db.positions_of(engine, latest)
    held = {r["symbol"]: r["shares"] for r in rows if r["symbol"] not in db.ACCOUNT_ROWS and r["shares"]}
    nlv = next((r["value"] for r in rows if r["symbol"] == db.NET_LIQUIDATION), None)
    return held, float(nlv if nlv is not None else np.nan)


def _book_line(held: dict[str, float], net_liquidation: float) -> str:
    return f"{len(held)} position(s), net liquidation {net_liquidation:,.0f}"


def connect_broker(env: Settings | None = None, *, listings=None) -> Broker:
    """The IBKR account of the settings (IB_HOST, IB_PORT: 4002 = IB Gateway's paper port, IB_TIMEOUT_S,
    TT_IB_RECONNECT_S) as client IB_TRADING_CLIENT_ID only: the market-data ids (IB_CLIENT_ID onwards) rotate
    between processes, and an order placed under one id cannot be cancelled under another (IBKR 10147).
    BrokerError (one line) when the gateway cannot be reached or that id is in use (another trading run)."""
    from tt_resources.brokers.ibkr import IbkrBroker
    from tt_resources.sources.settings import MARKET_DATA_FIELDS, ibkr_settings

    env = env or settings()
    fields = {field: getattr(env, name) for field, name in MARKET_DATA_FIELDS.items()}
    trading = replace(ibkr_settings(fields), client_id=env.ib_trading_client_id, client_id_attempts=1)
    return IbkrBroker(trading, listings=listings)
