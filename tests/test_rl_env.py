"""The TensorTrade environment: accounting vs TensorTrade's own OMS, no look-ahead, stopper, reward, baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tt_rl.baselines import BASELINES
from tt_rl.config import RLConfig
from tt_rl.env import build_env  # first: tensortrade through tt_rl.tensortrade_shell
from tt_rl.panel import Panel, panel_from_frames
from tt_rl.portfolio import Portfolio
from tt_rl.record import STEP_RECORD
from tt_rl.synthetic import synthetic_bars


@pytest.fixture(scope="module")
def panel() -> Panel:
    return panel_from_frames("1d", synthetic_bars(["A", "AA", "B", "C"], n_bars=160, seed=5))


def _config(**env) -> RLConfig:
    cfg = RLConfig()
    cfg.env = dataclasses.replace(cfg.env, **{"random_start": False, "max_episode_steps": None, **env})
    return cfg


def test_accounting_matches_tensortrade_oms():
    from tensortrade.feed.core import DataFeed, Stream
    from tensortrade.oms.exchanges import Exchange, ExchangeOptions
    from tensortrade.oms.instruments import Instrument
    from tensortrade.oms.orders import Broker, TradeSide
    from tensortrade.oms.orders.create import market_order
    from tensortrade.oms.services.execution.simulated import execute_order
    from tensortrade.oms.wallets import Portfolio as TTPortfolio
    from tensortrade.oms.wallets import Wallet

    symbols = ["A", "AA", "B"]  # "A" must never be priced as "AA"
    prices = np.array(
        [
            [10.00, 250.00, 40.00],
            [10.50, 240.00, 41.00],
            [9.80, 260.00, 39.50],
            [10.10, 255.00, 40.25],
            [11.00, 250.00, 42.0],
        ]
    )
    targets = [[0.3, 0.3, 0.3], [0.1, 0.5, 0.3], [0.0, 0.2, 0.6], [0.5, 0.0, 0.001]]
    commission = 0.002
    usd = Instrument("USD", 2, "dollar")
    assets = [Instrument(s, 8, s) for s in symbols]
    streams = [
        Stream.source(list(prices[:, j]), dtype="float").rename(f"USD-{s}") for j, s in enumerate(symbols)
    ]
    exchange = Exchange("sim", service=execute_order, options=ExchangeOptions(commission=commission))(
        *streams
    )
    cash_wallet = Wallet(exchange, 100_000 * usd)
    wallets = [Wallet(exchange, 0 * a) for a in assets]
    tt_book = TTPortfolio(usd, [cash_wallet, *wallets])
    feed = DataFeed(exchange.streams())
    feed.compile()
    feed.next()
    broker = Broker()

    ours = Portfolio(3, 100_000.0, cost_rate=commission)
    ours.reset(prices[0])
    for t, target in enumerate(np.array(targets)):
        delta, *_ = ours.rebalance(target)
        pair_of = {p.pair.quote.symbol: p for p in tt_book.exchange_pairs}
        pairs = [pair_of[s] for s in symbols]
        for side in (TradeSide.SELL, TradeSide.BUY):  # sells first free the cash the buys need
            for j, pair in enumerate(pairs):
                size = -delta[j] / prices[t, j] if side is TradeSide.SELL else delta[j]
                if size > 1e-6:
                    broker.submit(market_order(side, pair, pair.price, size, tt_book))
            broker.update()
            for order in broker.executed.values():  # a fill short by a rounding unit keeps its funds locked
                order.release("filled")
        ours.mark(prices[t + 1], prices[t + 1] / prices[t])
        feed.next()
        tt_worth = cash_wallet.total_balance.as_float() + sum(
            w.total_balance.as_float() * float(exchange.quote_price(p.pair))
            for w, p in zip(wallets, pairs, strict=True)
        )
        assert ours.net_worth == pytest.approx(tt_worth, rel=1e-6), f"step {t}"
        assert ours.quantities == pytest.approx(
            [w.total_balance.as_float() for w in wallets], rel=1e-6, abs=1e-3
        )


def test_no_look_ahead(panel):
    cut = 60
    later = np.arange(len(panel))[:, None] > cut
    changed = dataclasses.replace(
        panel,
        prices=np.where(later, panel.prices * 3.0, panel.prices),
        opens=np.where(later, panel.opens * 5.0, panel.opens),
        features=np.where(later[:, :, None], panel.features * -7.0, panel.features),
    )
    actions = np.random.default_rng(0).uniform(-1, 1, (80, len(panel.symbols))).astype(np.float32)
    results = []
    for p in (panel, changed):
        env = build_env(p, _config())
        obs, _ = env.reset(options={"start": 20})
        trace = [(obs, 0.0, 20)]
        for a in actions:
            obs, reward, *_, info = env.step(a)
            trace.append((obs, reward, info["bar"]))
        results.append(trace)
    compared = 0
    for (obs1, r1, bar), (obs2, r2, _) in zip(*results, strict=True):
        if bar > cut:
            break
        np.testing.assert_array_equal(obs1, obs2)
        assert r1 == r2
        compared += 1
    assert compared == cut - 20 + 1
    assert not np.array_equal(results[0][-1][0], results[1][-1][0])  # the probe can see a change


def test_stopper_terminated_vs_truncated(panel):
    env = build_env(panel, _config(max_episode_steps=5))
    env.reset(options={"start": 20})
    flags = [env.step(np.ones(4, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])

    env = build_env(panel, _config())
    env.reset(options={"start": 20, "end": 23})
    out = [env.step(np.ones(4, dtype=np.float32)) for _ in range(3)]
    assert [o[2] for o in out] == [False, False, True] and not out[-1][3]
    assert out[-1][4]["stop_reason"] == "end_of_data"

    crash = np.where(np.arange(len(panel))[:, None] >= 30, 0.5, 1.0)
    crashed = dataclasses.replace(panel, prices=panel.prices * crash, opens=panel.opens * crash)
    env = build_env(crashed, _config(max_drawdown=0.05, target_vol=0.6, max_weight=1.0))
    env.reset(options={"start": 25})
    for _ in range(10):
        _, _, terminated, truncated, info = env.step(np.ones(4, dtype=np.float32))
        if terminated:
            break
    assert terminated and not truncated and info["stop_reason"] == "drawdown" and info["bar"] == 30


def test_reward_finite_on_extreme_moves(panel):
    wild = np.ones_like(panel.prices)
    wild[40::2] = 1e-6  # -99.9999 % and back, every other bar
    wild_panel = dataclasses.replace(panel, prices=panel.prices * wild, opens=panel.opens * wild)
    env = build_env(wild_panel, _config(max_drawdown=float("inf"), max_weight=1.0, target_vol=5.0))
    env.reset(options={"start": 9})
    rewards = [env.step(np.ones(4, dtype=np.float32))[1] for _ in range(100)]
    assert np.isfinite(rewards).all()
    assert abs(rewards[0]) < 10.0  # first step: no division blow-up


def test_reward_is_differential_sharpe_less_penalties(panel):
    """The compiled step's reward and its record against the formula written out in Python from the info."""
    cfg = _config(max_drawdown=float("inf"))
    cfg.reward = dataclasses.replace(
        cfg.reward, drawdown_penalty=0.7, drawdown_tolerance=0.0, turnover_penalty=0.3, clip=2.0
    )
    env = build_env(panel, cfg)
    state = env.unwrapped.state
    env.reset(options={"start": 12})
    eta, floor = cfg.reward.eta, cfg.reward.vol_floor**2 / 252
    mean, second, drawdown = 0.0, cfg.env.target_vol**2 / 252, 0.0
    penalised = set()
    for action in np.random.default_rng(2).uniform(-1, 1, (60, 4)).astype(np.float32):
        _, reward, *_, info = env.step(action)
        r = info["period_return"]
        sigma = max(second - mean**2, floor) ** 0.5
        dsr = (second * (r - mean) - 0.5 * max(mean, 0.0) * (r * r - second)) / sigma**3
        sharpe = min(max(dsr, -2.0), 2.0)
        mean, second = mean + eta * (r - mean), second + eta * (r * r - second)
        new_drawdown = max(info["drawdown"] - drawdown, 0.0)
        drawdown = info["drawdown"]
        terms = (sharpe, min(0.7 * new_drawdown / sigma, 2.0), min(0.3 * info["turnover"] / sigma, 2.0))
        assert reward == pytest.approx(terms[0] - terms[1] - terms[2], rel=1e-9, abs=1e-12)
        record = dict(zip(STEP_RECORD, state.record, strict=True))
        assert (record["sharpe_term"], record["drawdown_penalty"], record["turnover_penalty"]) == (
            pytest.approx(terms, rel=1e-9, abs=1e-12)
        )
        assert record["reward"] == reward
        penalised |= {
            name for name, term in zip(("drawdown", "turnover"), terms[1:], strict=True) if term > 0
        }
        shared = set(record) & set(
            info
        )  # bar, net worth, cash, return, drawdown, turnover, costs, rebalanced
        assert len(shared) == 8 and all(record[field] == info[field] for field in shared), shared
    assert penalised == {"drawdown", "turnover"}  # both penalties were exercised


def test_observation_and_info(panel):
    cfg = _config()
    env = build_env(panel, cfg)
    obs, info = env.reset(options={"start": 30})
    n, f = len(panel.symbols), len(panel.feature_names)
    assert obs.dtype == np.float32 and obs.shape == (cfg.env.window_size * n * f + n,)
    np.testing.assert_array_equal(obs[: n * f], panel.features[30 - cfg.env.window_size + 1].ravel())
    obs, _, _, _, info = env.step(np.full(n, 0.5, dtype=np.float32))
    np.testing.assert_allclose(obs[-n:], info["weights"], rtol=1e-6)
    assert {"net_worth", "cash", "weights", "turnover", "costs", "drawdown"} <= set(info)
    assert info["costs"] > 0 and info["net_worth"] == pytest.approx(info["cash"] + 0, abs=info["net_worth"])


def test_baselines_share_costs_and_timing(panel):
    env = build_env(panel, _config(no_trade_band=0.0), weights_action=True)
    state = env.unwrapped.state
    worth = {}
    for name, policy in BASELINES.items():
        env.reset(options={"start": 20, "end": 60})
        done, turnovers = False, []
        while not done:
            _, _, terminated, truncated, info = env.step(policy(state))
            turnovers.append(info["turnover"])
            done = terminated or truncated
        worth[name] = info["net_worth"]
        if name == "equal_weight":  # buy once at bar 21's open (the fill), then hold: only that step trades
            assert turnovers[0] > 0.99 and max(turnovers[1:]) < 1e-9
            expected = (1 - 0.0003) * 100_000 / 4 * (panel.prices[60] / panel.opens[21]).sum()
            assert info["net_worth"] == pytest.approx(expected, rel=1e-3)
    assert worth["cash"] == 100_000.0
    assert pd.Series(worth).nunique() == 3
