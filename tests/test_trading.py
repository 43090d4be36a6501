"""The trading loop's own logic: order sizing, pre-trade limits, the live target against the backtest's,
promotion rules, the kill switch and the dry run (no broker). The loop against the stand-in gateway is in
tests/test_trading_gateway.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.trading_world import SYMBOLS, WALK_FORWARD_ID, production_model, store_bars
from tt_pipeline.trading import promotion
from tt_pipeline.trading.orders import Limits, PlannedOrder, check_limits, plan_orders, target_shares
from tt_pipeline.trading.target import NoTarget, compute_target, policy_of
from tt_resources.calendar import session_open
from tt_resources.db import registry
from tt_resources.db import trading as db
from tt_resources.db.rl_log import write_eval

LAST = dt.date(2026, 11, 18)
LIMITS = Limits(
    max_gross=1.0,
    max_weight=0.25,
    max_sector_weight=0.5,
    max_order_notional=50_000.0,
    max_turnover=2.0,
    price_collar=0.1,
)


# --- sizing and limits (pure) ---------------------------------------------------------------------------


def test_target_shares_round_toward_zero_so_the_book_never_exceeds_its_target():
    assert target_shares(0.1, 100_000.0, 33.0) == 303  # 303.03
    assert target_shares(-0.1, 100_000.0, 33.0) == -303
    assert target_shares(0.3, 1_000.0, 100.0) == 3  # 0.3 * 1000 / 100 = 2.9999999999999996 in floats
    with pytest.raises(ValueError, match="price nan"):
        target_shares(0.1, 1.0, float("nan"))


def test_orders_are_the_difference_to_the_held_shares_a_partial_fill_carries_over():
    weights, closes = {"A": 0.2, "B": 0.1, "C": 0.0}, {"A": 50.0, "B": 20.0, "C": 10.0}
    # yesterday's order for 400 A filled 150 only; B is on target; C is sold out; D is not the model's
    held = {"A": 150.0, "B": 500.0, "C": 30.0, "D": 7.0}
    orders, skipped = plan_orders(weights, closes, held, 100_000.0, min_notional=100.0)
    assert [(o.symbol, o.quantity, o.target) for o in orders] == [("A", 250, 400), ("C", -30, 0)]
    assert skipped == []
    orders, skipped = plan_orders(weights, closes, held, 100_000.0, min_notional=400.0)
    assert [o.symbol for o in orders] == ["A"]
    assert skipped == ["skipped sell 30 C @ ~10.00: 300 below the minimum 400"]


def test_every_limit_is_one_line_naming_the_order():
    held, prices, nlv = {"A": 100.0}, {"A": 100.0, "B": 50.0, "C": 10.0}, 100_000.0
    sectors = {"A": "Tech", "B": "Tech", "C": "Energy"}
    fine = [PlannedOrder("B", 200, 50.0, 0.0, 200)]  # 10 % B; Tech 20 %
    assert check_limits(fine, held, prices, nlv, sectors, {"B": 50.0}, LIMITS) == []

    big = [PlannedOrder("B", 600, 50.0, 0.0, 600)]  # 30 % of the book in B
    breaches = check_limits(big, held, prices, nlv, sectors, {"B": 50.0}, LIMITS)
    assert [b.line for b in breaches] == [
        "limit symbol_weight: buy 600 B @ ~50.00 makes B 30.0% of the book > TT_TRADING_MAX_WEIGHT 25.0%"
    ]
    sector = [PlannedOrder("A", 2300, 100.0, 100.0, 2400), PlannedOrder("B", 400, 50.0, 0.0, 400)]
    lines = [
        b.line for b in check_limits(sector, held, prices, nlv, sectors, {"A": 100.0, "B": 50.0}, LIMITS)
    ]
    assert lines == [
        "limit order_notional: buy 2300 A @ ~100.00 is worth 230,000 > TT_TRADING_MAX_ORDER_NOTIONAL 50,000",
        "limit symbol_weight: buy 2300 A @ ~100.00 makes A 240.0% of the book > TT_TRADING_MAX_WEIGHT 25.0%",
        "limit sector_weight: buy 2300 A @ ~100.00 (and 1 more) makes Tech 260.0% of the book > "
        "TT_TRADING_MAX_SECTOR_WEIGHT 50.0%",
        "limit gross_exposure: the orders (2, largest buy 2300 A @ ~100.00) make the book 260.0% gross > "
        "TT_TRADING_MAX_GROSS 100.0%",
        "limit turnover: the session's 2 orders (largest buy 2300 A @ ~100.00) trade 250.0% of net "
        "liquidation > TT_TRADING_MAX_TURNOVER 200.0%",
    ]
    stale = [PlannedOrder("C", 100, 10.0, 0.0, 100)]
    (collar,) = check_limits(stale, held, prices, nlv, sectors, {"C": 12.0}, LIMITS)
    assert collar.line == (
        "limit price_collar: buy 100 C @ ~10.00 is sized at 10.00, the last stored close 12.00 "
        "(TT_TRADING_PRICE_COLLAR 10%)"
    )
    # selling down an over-weight sector is never blocked by the sector limit
    sell = [PlannedOrder("A", -100, 100.0, 800.0, 700)]
    assert check_limits(sell, {"A": 800.0}, prices, nlv, sectors, {"A": 100.0}, LIMITS) == []


# --- the world: stored bars and a production model ------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A migrated SQLite database with the stand-in's bars through LAST and a tiny production model."""
    from tt_resources.db.engine import create_engine
    from tt_resources.db.migrate import upgrade

    path = tmp_path_factory.mktemp("trading") / "tt.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    store_bars(engine, SYMBOLS, LAST)
    model_id = production_model(engine, path.parent / "models", SYMBOLS, LAST)
    yield engine, model_id
    engine.dispose()


@pytest.mark.slow  # the world trains a model
def test_the_live_target_is_the_weights_the_backtest_env_trades_to(world):
    """Step the backtest env over the stored bars with the production model; at each of the last bars the
    live target (built from the database, with the env's current weights as the book) equals the weights the
    env's step traded to, and the policy saw the same observation."""
    from tt_rl.env import build_env
    from tt_rl.evaluate import evaluation_config
    from tt_rl.panel import build_panel

    engine, model_id = world
    policy = policy_of(registry.model(engine, model_id))
    panel = build_panel(engine, "1d", SYMBOLS)
    env = build_env(panel, evaluation_config(policy.config))
    state = env.unwrapped.state
    symbols = list(panel.symbols)
    assert symbols == list(policy.symbols) == sorted(SYMBOLS)
    last = len(panel) - 1
    obs, _ = env.reset(options={"start": last - 8, "end": last})
    compared = 0
    while state.t < last:
        t = state.t
        held = dict(zip(symbols, state.portfolio.weights, strict=True))
        action = policy.act(obs)
        obs, *_ = env.step(action)
        growth = state.market[0, t]
        at_fill = state.portfolio.values / growth  # costs are off: cash + at_fill is the worth at the fill
        traded = at_fill / (state.portfolio.cash + at_fill.sum())
        live = compute_target(engine, policy, panel.index[t].date(), held)
        assert np.allclose([live.weights[s] for s in symbols], traded, rtol=0, atol=1e-9)
        assert np.allclose(live.actions, action, rtol=0, atol=1e-6)
        assert live.closes == dict(zip(symbols, panel.prices[t], strict=True))
        compared += 1
    assert compared == 8 and any(w > 0 for w in live.weights.values())


@pytest.mark.slow  # the world trains a model
def test_no_target_when_a_bar_is_missing_or_quarantined_and_none_on_a_holiday(world, tmp_path):
    from tt_resources.db.engine import create_engine
    from tt_resources.db.migrate import upgrade
    from tt_resources.db.prices import replace_quarantine

    engine, model_id = world
    policy = policy_of(registry.model(engine, model_id))
    after = dt.date(2026, 11, 19)
    with pytest.raises(NoTarget, match=f"^no target for {after}: the 1d bar of AAPL is not stored$"):
        compute_target(engine, policy, after, None)
    with pytest.raises(NoTarget, match=r"^2026-11-26 is not an NYSE session$"):
        compute_target(engine, policy, dt.date(2026, 11, 26), None)
    other = create_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    upgrade(other)
    store_bars(other, SYMBOLS, LAST)
    bad = pd.DataFrame(
        {
            "ts": [session_open(LAST)],
            "open": [1.0],
            "high": [0.5],
            "low": [1.0],
            "close": [1.0],
            "volume": [1.0],
            "wap": [1.0],
            "bar_count": [1],
        }
    )
    with other.begin() as conn:
        from tt_resources.db.schema import prices

        conn.execute(prices.delete().where(prices.c.symbol == "XOM", prices.c.ts == session_open(LAST)))
        start = bad["ts"].iloc[0]
        reason = bad.assign(reason="high < low")
        replace_quarantine(conn, "XOM", "1d", start, start + pd.Timedelta(hours=1), reason, source="ibkr")
    with pytest.raises(NoTarget, match=r"the 1d bar of XOM is quarantined \(high < low\)$"):
        compute_target(other, policy, LAST, None)
    other.dispose()


@pytest.mark.slow  # the world trains a model
def test_the_production_model_is_trained_once_on_the_whole_history(world, tmp_path):
    from tt_pipeline.models import train_production

    engine, model_id = world
    model, source = registry.model(engine, model_id), registry.model(engine, WALK_FORWARD_ID)
    dataset = registry.dataset(engine, source["dataset_version"])
    assert model["production_of"] == WALK_FORWARD_ID and model["config"] == source["config"]
    assert (model["train_start"], model["train_end"]) == (dataset["start_ts"], dataset["end_ts"])
    assert model["dataset_version"] == source["dataset_version"]
    again = train_production(engine, WALK_FORWARD_ID, run_id="again", model_dir=tmp_path)
    assert again.model_id == model_id and not any(tmp_path.iterdir())
    assert [m["model_id"] for m in registry.models_on_dataset(engine, source["dataset_version"])] == [
        WALK_FORWARD_ID
    ]


@pytest.mark.slow  # the world trains a model
def test_only_a_verdict_of_skill_promotes_and_force_needs_a_reason(world):
    engine, model_id = world
    with pytest.raises(promotion.PromotionRefused, match="is not a production model"):
        promotion.promote(engine, WALK_FORWARD_ID)
    with pytest.raises(
        promotion.PromotionRefused, match="does not show skill beyond the best baseline \\(it was"
    ):
        promotion.promote(engine, model_id)
    verdict = "Verdict: beats cash but not the best baseline (equal weight): ..."
    _evaluate(engine, dsr_vs_best=0.5, verdict=verdict)
    with pytest.raises(promotion.PromotionRefused, match=r"beats cash but not the best baseline"):
        promotion.promote(engine, model_id)
    with pytest.raises(promotion.PromotionRefused, match="--force needs --reason"):
        promotion.promote(engine, model_id, force=True)
    forced = promotion.promote(engine, model_id, force=True, reason="paper trial")
    assert (forced["forced"], forced["reason"], forced["previous_model_id"]) == (True, "paper trial", None)
    assert db.champion(engine, "1d") == model_id
    demoted = promotion.demote(engine, "1d", reason="tracking error")
    assert (demoted["action"], demoted["previous_model_id"], db.champion(engine, "1d")) == (
        "demote",
        model_id,
        None,
    )
    _evaluate(engine, dsr_vs_best=0.97, verdict="Verdict: skill beyond the best baseline (cash): ...")
    earned = promotion.promote(engine, model_id, reason="verdict")
    assert (earned["forced"], earned["verdict"]) == (
        False,
        "Verdict: skill beyond the best baseline (cash): ...",
    )
    record = db.promotion_record(engine, "1d")
    assert [(r["action"], r["model_id"], r["forced"]) for r in record] == [
        ("promote", model_id, False),
        ("demote", None, False),
        ("promote", model_id, True),
    ]


@pytest.mark.slow  # the world trains a model
def test_the_demo_prints_the_champions_dry_run(world, tmp_path):
    from tt_cli.trade import demo_dry_run

    engine, model_id = world  # the champion since the promotion test
    lines: list[str] = []
    now = (session_open(LAST) + pd.Timedelta(hours=8)).to_pydatetime()
    demo_dry_run(engine, WALK_FORWARD_ID, run_id="demo", model_dir=tmp_path, echo=lines.append, now=now)
    assert lines[0] == f"not promoted: model {model_id} is the 1d champion already"
    assert lines[1] == f"session {LAST}: orders for the open of 2026-11-19; model {model_id}"
    assert lines[-1] == "dry run: nothing sent" and max(len(line) for line in lines) <= 80


def _evaluate(engine, *, dsr_vs_best: float, verdict: str) -> None:
    now = pd.Timestamp.now(tz="UTC")
    write_eval(
        engine,
        pd.DataFrame(
            [
                {
                    "model_id": WALK_FORWARD_ID,
                    "timeframe": "1d",
                    "policy": "ppo",
                    "fold": -1,
                    "seed": -1,
                    "test_start": now,
                    "test_end": now,
                    "dsr_vs_best": dsr_vs_best,
                    "verdict": verdict,
                    "created_at": now,
                }
            ]
        ),
    )


@pytest.mark.slow  # the world trains a model
def test_dry_run_prints_target_and_orders_at_80_columns_without_a_broker(world, monkeypatch):
    from tt_cli.trade import print_dry_run

    engine, model_id = world
    lines: list[str] = []
    now = session_open(LAST) + pd.Timedelta(hours=8)
    print_dry_run(engine, model_id=model_id, echo=lines.append, now=now.to_pydatetime())
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, text
    assert lines[0] == f"session {LAST}: orders for the open of 2026-11-19; model {model_id}"
    assert "dry run without a broker: the book is 0 position(s), net liquidation 100,000" in text
    assert lines[-1] == "dry run: nothing sent" and db.orders_of(engine) == []
    assert db.read_targets(engine, model_id, LAST)


def test_the_loop_imports_neither_dagster_nor_tensorflow_nor_torch_until_a_policy_is_loaded():
    import subprocess
    import sys

    code = (
        "import sys; import tt_pipeline.trading.session, tt_pipeline.trading.promotion, tt_cli.trade; "
        "print(sorted(m for m in ('dagster', 'tensorflow', 'tensortrade', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow  # the world trains a model
def test_halt_and_trade_commands(world, monkeypatch, tmp_path):
    from tt_cli.main import cli

    engine, _ = world
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    halted = runner.invoke(cli, ["halt", "--reason", "test"])
    assert (
        halted.exit_code == 0
        and halted.output == "trading halted: no order is submitted until `tt halt --off`\n"
    )
    assert db.halt_state(engine)["reason"] == "test"
    resumed = runner.invoke(cli, ["halt", "--off"])
    assert resumed.output == "trading resumed\n" and db.halt_state(engine) is None
    refused = runner.invoke(cli, ["promote", WALK_FORWARD_ID])
    assert refused.exit_code == 2 and "is not a production model" in refused.output


@pytest.mark.slow  # the world trains a model
def test_the_environment_caps_each_sector_as_the_live_limit_does(world):
    """env.max_sector_weight scales down a sector whose gross weight exceeds it (symbols without a sector are
    never grouped), in the backtest's step and in the live target alike."""
    from tt_rl.kernels import cap_sectors
    from tt_rl.panel import build_panel
    from tt_rl.state import TradingState, sector_ids

    weights = np.array([0.3, 0.2, 0.4, 0.1])
    capped = cap_sectors(weights, np.array([0, 0, -1, 1]), 0.25)
    assert np.allclose(capped, [0.15, 0.1, 0.4, 0.1])
    assert np.allclose(cap_sectors(weights, np.array([-1, -1, -1, -1]), 0.01), weights)

    engine, model_id = world
    policy = policy_of(registry.model(engine, model_id))
    panel = build_panel(engine, "1d", SYMBOLS)
    # sectors by name: Consumer Staples (PG), Energy (XOM), Financials (JPM), Information Technology (AAPL)
    assert list(sector_ids(panel.symbols)) == [3, 2, 0, 1]
    config = policy.config.env
    free = TradingState(panel, config, 252, policy.config.reward)
    config = dataclasses.replace(config, max_sector_weight=0.02)
    capped = TradingState(panel, config, 252, policy.config.reward)
    action, t = np.ones(len(SYMBOLS)), len(panel) - 1
    uncapped = free.target_at(action, t)
    assert uncapped.max() > 0.02
    assert np.allclose(capped.target_at(action, t), np.minimum(uncapped, 0.02))
    capped.reset(t - 1, t)
    capped.act(action)
    assert capped.portfolio.values.max() / capped.portfolio.net_worth < 0.021  # traded under the cap
