"""Seeded rows of a champion trading live (no PPO, no gateway), shared by tests/test_trading_dagster.py and
tests/test_dashboard_live.py: a walk-forward model with an evaluation (per-fold test episodes of known daily
returns), its production model promoted, stored 1d bars of two symbols, and sessions of the loop's rows
(tt_target, tt_order, tt_fill, tt_position) whose live results are known by hand.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.calendar import session_open
from tt_resources.db import trading as db
from tt_resources.db.prices import upsert_price_bars
from tt_resources.db.schema import episodes, evals, models, portfolio
from tt_rl.config import RLConfig

WALK_FORWARD = "wf0000000000live"
PRODUCTION = "pm0000000000live"
ACCOUNT = "DU1234567"
NLV = 100_000.0
# four consecutive NYSE sessions (Thanksgiving 2026-11-26 is a holiday, 11-27 an early close)
SESSIONS = [dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 27), dt.date(2026, 11, 30)]
HOLIDAY = dt.date(2026, 11, 26)
EVAL_DAILY_MEAN, EVAL_DAILY_STD = 0.0005, 0.01  # the evaluation's test-episode daily returns
COMMISSION = 1.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def seed_models(engine: sa.Engine, episode_steps: int = 120, seed: int = 3) -> None:
    """The walk-forward model with two folds' PPO test episodes (normal daily returns, EVAL_DAILY_*) and the
    production model of it (no costs, no band: the shadow of a whole-share book at the open is exact)."""
    config = RLConfig()
    config.env.commission_bps = 0.0
    config.env.slippage_bps = 0.0
    config.env.no_trade_band = 0.0
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        for model_id, of in ((WALK_FORWARD, None), (PRODUCTION, WALK_FORWARD)):
            conn.execute(
                sa.insert(models),
                [
                    {
                        "model_id": model_id,
                        "timeframe": "1d",
                        "path": "/nowhere",
                        "symbols": ["AAA", "BBB"],
                        "config": config.to_dict(),
                        "production_of": of,
                        "created_at": _now(),
                    }
                ],
            )
        for fold in (0, 1):
            episode = f"ep{fold:014d}"
            conn.execute(
                sa.insert(episodes),
                [
                    {
                        "episode_id": episode,
                        "model_id": WALK_FORWARD,
                        "timeframe": "1d",
                        "split": "test",
                        "policy": "ppo",
                        "window": fold,
                        "status": "finished",
                        "started_at": _now(),
                        "steps": episode_steps,
                    }
                ],
            )
            returns = rng.normal(EVAL_DAILY_MEAN, EVAL_DAILY_STD, episode_steps)
            worth = NLV * np.cumprod(1 + returns)
            conn.execute(
                sa.insert(portfolio),
                [
                    {
                        "episode_id": episode,
                        "step": i,
                        "net_worth": float(worth[i]),
                        "cash": 0.0,
                        "period_return": float(returns[i]),
                    }
                    for i in range(episode_steps)
                ],
            )
            conn.execute(
                sa.insert(evals),
                [
                    {
                        "model_id": WALK_FORWARD,
                        "timeframe": "1d",
                        "policy": "ppo",
                        "fold": fold,
                        "seed": 0,
                        "episode_id": episode,
                        "test_start": _now(),
                        "test_end": _now(),
                        "sharpe": 1.0,
                        "created_at": _now(),
                    }
                ],
            )
    db.record_promotion(
        engine,
        timeframe="1d",
        model_id=PRODUCTION,
        who="tester",
        reason="seeded",
        verdict="Verdict: skill beyond the best baseline",
    )


def seed_bars(engine: sa.Engine, bars: dict[str, list[tuple[float, float]]]) -> None:
    """1d bars of each symbol: (open, close) per session of SESSIONS."""
    for symbol, prices in bars.items():
        frame = pd.DataFrame(
            {
                "ts": [session_open(s) for s in SESSIONS[: len(prices)]],
                "open": [o for o, _ in prices],
                "high": [max(o, c) for o, c in prices],
                "low": [min(o, c) for o, c in prices],
                "close": [c for _, c in prices],
                "volume": 1_000_000.0,
            }
        ).assign(symbol=symbol, timeframe="1d")
        upsert_price_bars(engine, frame, source="synthetic")


def book(
    engine: sa.Engine, session: dt.date, shares: dict[str, float], closes: dict[str, float], cash: float
) -> float:
    """tt_position of `session`: `shares` marked at `closes`, and `cash`; returns the net liquidation."""
    values = {s: q * closes[s] for s, q in shares.items()}
    nlv = cash + sum(values.values())
    rows = [
        {"symbol": s, "shares": q, "price": closes[s], "value": values[s], "as_of": _now()}
        for s, q in shares.items()
    ]
    rows += [
        {"symbol": db.CASH, "shares": 0.0, "price": None, "value": cash, "as_of": _now()},
        {"symbol": db.NET_LIQUIDATION, "shares": 0.0, "price": None, "value": nlv, "as_of": _now()},
    ]
    db.write_positions(engine, ACCOUNT, session, rows)
    return nlv


def trade(
    engine: sa.Engine,
    decided: dt.date,
    executed: dt.date,
    orders: dict[str, tuple[int, float, float]],
    state: str = "filled",
) -> None:
    """Orders decided on `decided` for `executed`: symbol -> (quantity, reference price, fill price), each
    filled at its fill price (none when the fill price is NaN) with COMMISSION."""
    from tt_resources.broker import order_ref

    rows, fills = [], []
    for symbol, (quantity, reference, price) in orders.items():
        ref = order_ref(executed, PRODUCTION, symbol)
        filled = not np.isnan(price)
        rows.append(
            {
                "order_ref": ref,
                "session": executed,
                "decided_session": decided,
                "model_id": PRODUCTION,
                "account": ACCOUNT,
                "symbol": symbol,
                "quantity": quantity,
                "reference_price": reference,
                "notional": abs(quantity) * reference,
                "state": state if filled else "cancelled",
                "filled": float(abs(quantity)) if filled else 0.0,
                "avg_fill_price": price if filled else None,
                "limit_checks": {"all": "ok"},
            }
        )
        if filled:
            fills.append(
                {
                    "exec_id": f"x-{ref}",
                    "order_ref": ref,
                    "session": executed,
                    "symbol": symbol,
                    "shares": float(quantity),
                    "price": price,
                    "commission": COMMISSION,
                    "time": session_open(executed).to_pydatetime(),
                }
            )
    db.upsert_orders(engine, rows)
    db.record_fills(engine, fills)


def seed_live(engine: sa.Engine) -> None:
    """Models, bars and two live sessions: on SESSIONS[0] the all-cash book decides 50 % AAA (close 100);
    SESSIONS[1] opens at 100, buys 500 AAA at 100.05 (5 bps slippage), closes at 110; its decision keeps
    the book; SESSIONS[2] opens at 110 and closes at 99 with no order (a 10 % loss)."""
    seed_models(engine)
    seed_bars(engine, {"AAA": [(98.0, 100.0), (100.0, 110.0), (110.0, 99.0)], "BBB": [(50.0, 50.0)] * 3})
    s0, s1, s2 = SESSIONS[:3]
    book(engine, s0, {}, {}, NLV)
    db.write_targets(
        engine,
        PRODUCTION,
        s0,
        session_open(s0).to_pydatetime(),
        {"AAA": 0.5, "BBB": 0.0},
        {"AAA": 100.0, "BBB": 50.0},
    )
    trade(engine, s0, s1, {"AAA": (500, 100.0, 100.05)})
    book(engine, s1, {"AAA": 500.0}, {"AAA": 110.0}, NLV - 500 * 100.05 - COMMISSION)
    held = 500 * 110.0 / (NLV - 500 * 100.05 - COMMISSION + 500 * 110.0)
    db.write_targets(
        engine,
        PRODUCTION,
        s1,
        session_open(s1).to_pydatetime(),
        {"AAA": held, "BBB": 0.0},
        {"AAA": 110.0, "BBB": 50.0},
    )
    book(engine, s2, {"AAA": 500.0}, {"AAA": 99.0}, NLV - 500 * 100.05 - COMMISSION)
