"""The champion live against its own backtest (docs/trading.md, "Live against the backtest").

Session S's record (tt_live_performance, one row per model and session) compares the account over S (from
the previous session P's close to S's close: the market-on-open orders decided on P fill at S's open) with
the shadow: the backtest's step over the same session from the same book. The shadow starts from the live
book reconciled at P's close (tt_position of P), trades to the target decided on P (tt_target) at S's stored
1d open with the model's cost rate and no-trade band, and is marked at S's close: the accounting of the
environment's step (tt_rl.portfolio.Portfolio over tt_rl.kernels.trade_and_mark, env.fill = next_open).
Whole-share rounding, slippage against the open, commissions and missed fills are what separate the two.

The walk-forward evaluation predicts a range for the live results (`predicted_range`): the central
`RANGE_COVERAGE` of the compounded return over n consecutive sessions of the agent's out-of-sample test
episodes (every fold and seed of the evaluation the production model is justified by, tt_model.production_of),
n = the sessions recorded live. `live_causes` names why the champion should be retrained or demoted: live
results outside that range, or a session's tracking error above TT_TRADING_MAX_TRACKING_ERROR.

Never imports Dagster; tt_rl.portfolio (numba) is imported only by `shadow_step`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.calendar import nyse, session_open
from tt_resources.db import registry
from tt_resources.db import trading as db
from tt_resources.db.prices import read_bars
from tt_resources.db.schema import evals, live_performance
from tt_resources.terms import AGENT
from tt_rl.config import RLConfig

TIMEFRAME = "1d"
RANGE_COVERAGE = 0.98  # central share of the evaluation's n-session returns the live return should lie in
MIN_WINDOWS = 20  # fewer n-session windows in the evaluation: no range (too few to place 1 % quantiles)


class NoRecord(ValueError):
    """A session cannot be compared yet (a book or a bar missing): one line."""


@dataclass(frozen=True)
class Shadow:
    """The backtest's step over one session: its net return (after costs), costs (account currency), the
    value it traded and whether it rebalanced (outside the no-trade band)."""

    net_return: float
    costs: float
    traded: float
    rebalanced: bool


@dataclass(frozen=True)
class Range:
    """The central `coverage` of the evaluation's compounded returns over `sessions` consecutive sessions,
    from `windows` windows of `episodes` test episodes."""

    low: float
    high: float
    sessions: int
    windows: int
    episodes: int
    coverage: float = RANGE_COVERAGE


@dataclass(frozen=True)
class Cause:
    """A reason to retrain or demote the champion, fired once: `key` = model and kind (`tracking_error`,
    `below_range`, `above_range`); `line` says it with its figures."""

    model_id: str
    kind: str
    session: dt.date
    line: str

    @property
    def key(self) -> str:
        return f"{self.model_id}:{self.kind}"


def previous_session(session: dt.date) -> dt.date:
    """The exchange session before `session` (ValueError when `session` is not one)."""
    session_open(session)
    return nyse().previous_session(pd.Timestamp(session)).date()


def shadow_step(
    start_weights: np.ndarray,
    target: np.ndarray | None,
    gap: np.ndarray,
    intraday: np.ndarray,
    cost_rate: float,
    band: float,
) -> Shadow:
    """One next-open step of the environment's book, per unit of net worth: hold `start_weights` (N,) at the
    previous close, carry them over the `gap` (open / previous close, (N,)), trade to `target` (N,; None:
    hold) unless inside the no-trade `band`, paying `cost_rate` per unit traded, and mark them to the close
    (`intraday` = close / open, (N,)). The arithmetic is tt_rl.portfolio.Portfolio's (the env's step)."""
    from tt_rl.portfolio import Portfolio

    n = len(start_weights)
    book = Portfolio(n, 1.0, 0.0)  # the live book at the previous close: all cash, moved at no cost
    book.reset(np.ones(n))
    book.rebalance(np.asarray(start_weights, dtype=np.float64))
    book.cost_rate = float(cost_rate)
    book.mark(np.asarray(gap, dtype=np.float64), np.asarray(gap, dtype=np.float64))
    traded, costs, rebalanced = 0.0, 0.0, False
    if target is not None:
        _, traded, costs, rebalanced = book.rebalance(np.asarray(target, dtype=np.float64), band)
    book.mark(book.prices * intraday, np.asarray(intraday, dtype=np.float64))
    return Shadow(book.net_worth - 1.0, costs, traded, bool(rebalanced))


def record_session(engine: sa.Engine, model_id: str, session: dt.date) -> dict:
    """Compare `model_id` live over `session` with its shadow and store the tt_live_performance row (replacing
    one of the same model and session); returns it. NoRecord (one line) when the book of the previous
    session or of `session`, or a 1d bar of either, is not stored yet."""
    previous = previous_session(session)
    start, end = _book(engine, previous), _book(engine, session)
    model = registry.model(engine, model_id)
    if model is None:
        raise NoRecord(f"model {model_id} is not registered in tt_model")
    env = RLConfig.from_dict(model["config"], source=f"model {model_id}").env
    targets = db.read_targets(engine, model_id, previous)
    held = start["shares"]
    symbols = sorted(set(targets) | set(held))
    bars = _bars(engine, symbols, previous, session)
    worth = start["net_liquidation"]
    weights = np.array([held.get(s, 0.0) * bars.at[s, "previous_close"] for s in symbols]) / worth
    # symbols the model does not trade are never touched (tt_pipeline.trading.orders): the shadow keeps them
    target = np.array([targets[s][0] if s in targets else w for s, w in zip(symbols, weights, strict=True)])
    shadow = shadow_step(
        weights,
        target if targets else None,
        (bars["open"] / bars["previous_close"]).reindex(symbols).to_numpy(),
        (bars["close"] / bars["open"]).reindex(symbols).to_numpy(),
        env.cost_rate,
        env.no_trade_band,
    )
    orders = [o for o in db.orders_of(engine, session=session, model_id=model_id) if o["state"] != "blocked"]
    fills = db.fills_of(engine, [o["order_ref"] for o in orders]) if orders else []
    filled: dict[str, float] = {}
    for fill in fills:
        filled[fill["order_ref"]] = filled.get(fill["order_ref"], 0.0) + abs(fill["shares"])
    missed = sum(1 for o in orders if filled.get(o["order_ref"], 0.0) < abs(o["quantity"]))
    live_return = end["net_liquidation"] / worth - 1.0
    before = _previous_record(engine, model_id, session)
    shadow_base = before["shadow_equity"] if before is not None else worth
    row = {
        "model_id": model_id,
        "session": session,
        "live_return": live_return,
        "shadow_return": shadow.net_return,
        "slippage_bps": slippage_bps(fills, bars["open"].to_dict()),
        "costs": sum(f["commission"] or 0.0 for f in fills),
        "shadow_costs": shadow.costs * worth,
        "missed_fills": missed,
        "tracking_error": abs(live_return - shadow.net_return),
        "live_equity": end["net_liquidation"],
        "shadow_equity": shadow_base * (1.0 + shadow.net_return),
        "details": {
            "previous_session": previous.isoformat(),
            "account": end["account"],
            "orders": len(orders),
            "fills": len(fills),
            "commissions_pending": sum(1 for f in fills if f["commission"] is None),
            "shadow_traded": shadow.traded * worth,
            "shadow_rebalanced": shadow.rebalanced,
            "target": bool(targets),
        },
        "created_at": dt.datetime.now(dt.UTC),
    }
    with engine.begin() as conn:
        conn.execute(
            sa.delete(live_performance).where(
                live_performance.c.model_id == model_id, live_performance.c.session == session
            )
        )
        conn.execute(sa.insert(live_performance), [row])
    return row


def record_live(engine: sa.Engine, session: dt.date) -> dict:
    """`record_session` of the model whose orders executed in `session` (else the 1d champion): what a run
    records once `session`'s book is reconciled at its close (`tt trade` of that session, the Dagster
    live_performance asset). NoRecord (one line) as record_session, or when there is no such model."""
    orders = db.orders_of(engine, session=session)
    model_id = orders[0]["model_id"] if orders else db.champion(engine, TIMEFRAME)
    if model_id is None:
        raise NoRecord(f"no live record for {session}: no {TIMEFRAME} champion and no orders")
    return record_session(engine, model_id, session)


def record_line(engine: sa.Engine, session: dt.date) -> str:
    """`record_live` of `session` as the one line `tt trade` prints: the record's figures, or why none."""
    try:
        row = record_live(engine, session)
    except NoRecord as exc:
        return str(exc)
    slippage = "n/a" if row["slippage_bps"] is None else f"{row['slippage_bps']:.1f} bps"
    return (
        f"live {session}: {row['live_return']:+.2%} vs shadow {row['shadow_return']:+.2%}, tracking error "
        f"{row['tracking_error']:.2%}, slippage {slippage}, {row['missed_fills']} missed fill(s)"
    )


def slippage_bps(fills: list[dict], opens: dict[str, float]) -> float | None:
    """Notional-weighted fill price against the session's open, in basis points, adverse > 0 (a buy above
    the open, a sell below it): sum |q| open * sign(q) (price / open - 1) / sum |q| open * 1e4. None without
    fills."""
    weight = sum(abs(f["shares"]) * opens[f["symbol"]] for f in fills)
    if not weight:
        return None
    adverse = sum(
        abs(f["shares"]) * math.copysign(1.0, f["shares"]) * (f["price"] - opens[f["symbol"]]) for f in fills
    )
    return adverse / weight * 1e4


def predicted_range(engine: sa.Engine, model_id: str, sessions: int) -> Range | None:
    """The range the walk-forward evaluation behind `model_id` (its tt_model.production_of, or itself)
    predicts for the compounded net return over `sessions` consecutive sessions: the quantiles
    (1 - RANGE_COVERAGE) / 2 and (1 + RANGE_COVERAGE) / 2 of that return over every window of `sessions`
    consecutive steps of the agent's out-of-sample test episodes (tt_eval rows of each fold and seed,
    their tt_portfolio period returns). `sessions` is capped where the episodes still hold MIN_WINDOWS
    windows (the caller compares its last `Range.sessions` sessions). None when there is no evaluation or
    fewer than MIN_WINDOWS one-session windows."""
    from tt_resources.db.reports import portfolio_series

    model = registry.model(engine, model_id)
    if model is None or sessions < 1:
        return None
    source = model.get("production_of") or model_id
    query = sa.select(evals.c.episode_id).where(
        evals.c.model_id == source,
        evals.c.policy == AGENT,
        evals.c.fold >= 0,
        evals.c.episode_id.is_not(None),
    )
    with engine.connect() as conn:
        episodes = sorted({r.episode_id for r in conn.execute(query)})
    if not episodes:
        return None
    steps = portfolio_series(engine, episodes)
    returns = [g["period_return"].dropna().to_numpy() for _, g in steps.groupby("episode_id")]
    returns = [r for r in returns if len(r)]
    if not returns:
        return None
    lengths = np.array([len(r) for r in returns])
    n = min(sessions, int(lengths.max()))
    while n > 1 and np.maximum(lengths - n + 1, 0).sum() < MIN_WINDOWS:
        n -= 1
    windows = np.concatenate([_compounded(r, n) for r in returns if len(r) >= n])
    if len(windows) < MIN_WINDOWS:
        return None
    tail = (1.0 - RANGE_COVERAGE) / 2
    low, high = np.quantile(windows, [tail, 1.0 - tail])
    return Range(float(low), float(high), n, len(windows), len(returns))


def _compounded(returns: np.ndarray, n: int) -> np.ndarray:
    """Compounded return of every window of `n` consecutive returns: exp(sum log(1 + r)) - 1."""
    logs = np.concatenate([[0.0], np.cumsum(np.log1p(returns))])
    return np.expm1(logs[n:] - logs[:-n])


def live_records(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    """tt_live_performance rows of `model_id`, oldest session first."""
    query = (
        sa.select(live_performance)
        .where(live_performance.c.model_id == model_id)
        .order_by(live_performance.c.session)
    )
    with engine.connect() as conn:
        return pd.DataFrame(
            [dict(r) for r in conn.execute(query).mappings()], columns=live_performance.c.keys()
        )


def live_causes(engine: sa.Engine, model_id: str, max_tracking_error: float) -> list[Cause]:
    """Why `model_id` should be retrained or demoted now: the first session whose tracking error exceeds
    `max_tracking_error`, and the live compounded return over its recorded sessions outside the evaluation's
    `predicted_range` for as many sessions (below or above). Empty when neither holds."""
    records = live_records(engine, model_id)
    causes = []
    if records.empty:
        return causes
    over = records.loc[records["tracking_error"] > max_tracking_error]
    if len(over):
        first = over.iloc[0]
        causes.append(
            Cause(
                model_id,
                "tracking_error",
                first["session"],
                f"tracking error {first['tracking_error']:.2%} on {first['session']} above the limit "
                f"{max_tracking_error:.2%} (TT_TRADING_MAX_TRACKING_ERROR)",
            )
        )
    returns = records["live_return"].dropna().to_numpy(dtype=float)
    expected = predicted_range(engine, model_id, len(returns)) if len(returns) else None
    if expected is not None:
        live = float(np.expm1(np.log1p(returns[-expected.sessions :]).sum()))
        last = records["session"].iloc[-1]
        for kind, out in (("below_range", live < expected.low), ("above_range", live > expected.high)):
            if out:
                causes.append(
                    Cause(
                        model_id,
                        kind,
                        last,
                        f"live return {live:+.2%} over the last {expected.sessions} session(s) to {last} is "
                        f"outside the walk-forward range [{expected.low:+.2%}, {expected.high:+.2%}] "
                        f"({expected.coverage:.0%} of {expected.windows} windows)",
                    )
                )
    return causes


def _book(engine: sa.Engine, session: dt.date) -> dict:
    """The reconciled book of `session`: account, shares per symbol, net liquidation. NoRecord if none."""
    rows = db.positions_of(engine, session)
    nlv = [r for r in rows if r["symbol"] == db.NET_LIQUIDATION]
    if not nlv:
        raise NoRecord(f"no live record for {session}: no reconciled book (tt_position) of {session}")
    account = nlv[0]["account"]
    shares = {
        r["symbol"]: r["shares"]
        for r in rows
        if r["account"] == account and r["symbol"] not in db.ACCOUNT_ROWS and r["shares"]
    }
    return {"account": account, "shares": shares, "net_liquidation": float(nlv[0]["value"])}


def _bars(engine: sa.Engine, symbols: list[str], previous: dt.date, session: dt.date) -> pd.DataFrame:
    """Per symbol: previous_close (P's close), open and close of S (stored 1d bars). NoRecord if any is
    missing."""
    first, last = session_open(previous), session_open(session)
    frame = read_bars(engine, symbols, TIMEFRAME, start=first, end=last + pd.Timedelta(hours=1))
    out = pd.DataFrame(index=pd.Index(symbols, name="symbol"), columns=["previous_close", "open", "close"])
    for ts, column, fields in (
        (first, "previous_close", "close"),
        (last, "open", "open"),
        (last, "close", "close"),
    ):
        at = frame.loc[frame["ts"] == ts].set_index("symbol")[fields]
        out[column] = at.reindex(symbols)
    missing = out.index[out.isna().any(axis=1)]
    if len(missing):
        raise NoRecord(f"no live record for {session}: the {TIMEFRAME} bar of {missing[0]} is not stored")
    return out.astype(float)


def _previous_record(engine: sa.Engine, model_id: str, session: dt.date) -> dict | None:
    query = (
        sa.select(live_performance)
        .where(live_performance.c.model_id == model_id, live_performance.c.session < session)
        .order_by(live_performance.c.session.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None
