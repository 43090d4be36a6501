"""The champion live against its own backtest (tt_pipeline.trading.live) on seeded rows: the shadow step,
the per-session record, the walk-forward's predicted range and the causes to retrain."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.live_seed import COMMISSION, NLV, PRODUCTION, SESSIONS, seed_live, seed_models
from tt_pipeline.trading.live import (
    RANGE_COVERAGE,
    NoRecord,
    live_causes,
    predicted_range,
    previous_session,
    record_line,
    record_session,
    shadow_step,
    slippage_bps,
)
from tt_resources.config import PROJECT_ROOT
from tt_resources.db import reports


def test_shadow_step_is_the_envs_next_open_step_with_its_costs():
    # half in A; A gaps +2 % overnight, then +5 % open to close; target 30 % A at 10 bps
    shadow = shadow_step(np.array([0.5]), np.array([0.3]), np.array([1.02]), np.array([1.05]), 0.001, 0.0)
    worth_at_open = 0.5 * 1.02 + 0.5
    distance = abs(0.3 - 0.51 / worth_at_open)
    after_costs = worth_at_open * (1 - 0.001 * distance)
    a = 0.3 * after_costs  # a sale: the commission comes out of the proceeds
    cash = 0.5 + (0.51 - a) * (1 - 0.001)
    assert shadow.net_return == pytest.approx(a * 1.05 + cash - 1, abs=1e-12)
    assert shadow.costs == pytest.approx(0.001 * (0.51 - a), abs=1e-12)
    held = shadow_step(np.array([0.5]), None, np.array([1.02]), np.array([1.05]), 0.001, 0.0)
    assert (held.net_return, held.costs) == (pytest.approx(0.5 * 1.02 * 1.05 - 0.5), 0.0)
    banded = shadow_step(np.array([0.5]), np.array([0.52]), np.array([1.0]), np.array([1.0]), 0.001, 0.05)
    assert not banded.rebalanced and banded.costs == 0.0


def test_slippage_is_adverse_positive_and_notional_weighted():
    fills = [
        {"symbol": "A", "shares": 100.0, "price": 101.0},  # bought 1 % above the open: +100 bps
        {"symbol": "B", "shares": -100.0, "price": 49.0},  # sold 2 % below the open: +200 bps
    ]
    assert slippage_bps(fills, {"A": 100.0, "B": 50.0}) == pytest.approx((100 * 100 + 200 * 50) / 150)
    assert slippage_bps([], {}) is None


def test_a_session_live_equals_its_shadow_up_to_slippage_and_commission(engine):
    seed_live(engine)
    row = record_session(engine, PRODUCTION, SESSIONS[1])
    # the shadow buys 50 % at the open of 100 at no cost and gains 10 % on it
    assert row["shadow_return"] == pytest.approx(0.05, abs=1e-12)
    live = (NLV - 500 * 100.05 - COMMISSION + 500 * 110.0) / NLV - 1
    assert row["live_return"] == pytest.approx(live, abs=1e-12)
    # the gap is what the fill cost beyond the open: 500 x 0.05 slippage and the commission
    assert row["tracking_error"] * NLV == pytest.approx(500 * 0.05 + COMMISSION, abs=1e-6)
    assert row["slippage_bps"] == pytest.approx(5.0)
    assert (row["costs"], row["missed_fills"], row["shadow_costs"]) == (COMMISSION, 0, 0.0)
    assert row["live_equity"] == pytest.approx(NLV * (1 + live))
    assert row["shadow_equity"] == pytest.approx(NLV * 1.05)
    # the next session: no order, the shadow holds the same book; its equity compounds the shadow's returns
    second = record_session(engine, PRODUCTION, SESSIONS[2])  # after the Thanksgiving holiday
    assert second["details"]["previous_session"] == SESSIONS[1].isoformat()
    assert second["tracking_error"] == pytest.approx(0.0, abs=1e-12)
    assert second["shadow_equity"] == pytest.approx(NLV * 1.05 * (1 + second["shadow_return"]))
    again = record_session(engine, PRODUCTION, SESSIONS[2])  # a rerun replaces the row
    assert again["live_return"] == second["live_return"]
    assert len(reports.live_performance(engine, PRODUCTION)) == 2
    # the Live tab's reports read the same rows
    orders = reports.trading_orders(engine)
    assert list(orders["slippage_bps"]) == [pytest.approx(5.0)] and list(orders["commission"]) == [COMMISSION]
    book = reports.positions_and_targets(engine).set_index("symbol")
    assert book.loc["AAA", "target"] == pytest.approx(500 * 110.0 / row["live_equity"])
    assert reports.traded_symbols(engine, PRODUCTION) == ["AAA", "BBB"]
    assert reports.limits_hit(engine).empty
    assert list(reports.promotion_history(engine)["model_id"]) == [PRODUCTION]
    token = reports.trading_token(engine)
    record_session(engine, PRODUCTION, SESSIONS[2])
    assert reports.trading_token(engine) != token


def test_no_record_without_the_books(sqlite_engine):
    seed_live(sqlite_engine)
    with pytest.raises(
        NoRecord, match=r"^no live record for 2026-11-30: no reconciled book \(tt_position\) of 2026-11-30$"
    ):
        record_session(sqlite_engine, PRODUCTION, SESSIONS[3])
    with pytest.raises(ValueError, match="2026-11-26 is not an NYSE session"):
        previous_session(dt.date(2026, 11, 26))


def test_the_predicted_range_is_the_evaluations_central_quantiles_of_n_session_returns(sqlite_engine):
    seed_models(sqlite_engine, episode_steps=120)
    steps = reports.portfolio_series(sqlite_engine, ["ep00000000000000", "ep00000000000001"])
    windows = []
    for _, episode in steps.groupby("episode_id"):
        r = episode["period_return"].to_numpy()
        windows += [np.prod(1 + r[i : i + 5]) - 1 for i in range(len(r) - 4)]
    expected = np.quantile(windows, [(1 - RANGE_COVERAGE) / 2, (1 + RANGE_COVERAGE) / 2])
    got = predicted_range(sqlite_engine, PRODUCTION, 5)
    assert (got.low, got.high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert (got.sessions, got.windows, got.episodes) == (5, 2 * 116, 2)
    # capped where two 120-session episodes still hold 20 windows: 2 x (120 - 111 + 1)
    capped = predicted_range(sqlite_engine, PRODUCTION, 500)
    assert (capped.sessions, capped.windows) == (111, 20)
    assert predicted_range(sqlite_engine, PRODUCTION, 0) is None


def test_causes_name_the_tracking_error_and_a_return_out_of_range(sqlite_engine):
    seed_live(sqlite_engine)
    record_session(sqlite_engine, PRODUCTION, SESSIONS[1])
    record_session(sqlite_engine, PRODUCTION, SESSIONS[2])
    assert live_causes(sqlite_engine, PRODUCTION, 0.01) == []
    [cause] = live_causes(sqlite_engine, PRODUCTION, 0.0002)
    assert cause.key == f"{PRODUCTION}:tracking_error" and cause.session == SESSIONS[1]
    assert cause.line == (
        "tracking error 0.03% on 2026-11-25 above the limit 0.02% (TT_TRADING_MAX_TRACKING_ERROR)"
    )


def test_the_line_tt_trade_prints_after_reconciling_a_session(sqlite_engine):
    seed_live(sqlite_engine)
    assert record_line(sqlite_engine, SESSIONS[1]) == (
        "live 2026-11-25: +4.97% vs shadow +5.00%, tracking error 0.03%, slippage 5.0 bps, 0 missed fill(s)"
    )
    assert record_line(sqlite_engine, SESSIONS[3]) == (
        "no live record for 2026-11-30: no reconciled book (tt_position) of 2026-11-30"
    )


def test_the_sensors_imports_load_no_heavy_module():
    """What live_performance_sensor imports to evaluate (tt_pipeline.trading.live and the reports it reads)
    loads neither torch, SB3, TensorTrade nor numba (shadow_step imports tt_rl.portfolio on its own)."""
    probe = (
        "import json, sys; import tt_assets.trading, tt_pipeline.trading.live, tt_resources.db.reports; "
        "print(json.dumps([m for m in ('torch', 'stable_baselines3', 'tensortrade', 'numba') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
