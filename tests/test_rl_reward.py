"""The reward a good policy can win, fills at the next open, ruin: RiskAwareReward and the step on planted
and hand-made markets (the observations of issue 15 turned into tests)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tt_rl.baselines import BASELINES
from tt_rl.config import RLConfig
from tt_rl.env import build_env  # first: tensortrade through tt_rl.tensortrade_shell
from tt_rl.evaluate import evaluation_config
from tt_rl.kernels import action_scores
from tt_rl.metrics import performance
from tt_rl.panel import Panel, panel_from_frames
from tt_rl.planted import ORACLES, PLANTED_KINDS, planted_panel, sign_persistence_oracle


def _panel(close: np.ndarray, open_: np.ndarray | None = None) -> Panel:
    """Daily panel of closes (T, N) (opens default to the previous close); features computed from them."""
    t, n = close.shape
    open_ = np.vstack([close[:1], close[:-1]]) if open_ is None else open_
    ts = pd.bdate_range("2021-01-04", periods=t, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    bars = pd.concat(
        [
            pd.DataFrame(
                {
                    "symbol": f"S{j}",
                    "ts": ts,
                    "open": open_[:, j],
                    "high": np.maximum(open_[:, j], close[:, j]) * 1.001,
                    "low": np.minimum(open_[:, j], close[:, j]) * 0.999,
                    "close": close[:, j],
                    "volume": 1e6 + 1e4 * np.arange(t) % 7,
                }
            )
            for j in range(n)
        ],
        ignore_index=True,
    )
    return panel_from_frames("1d", bars)


def _episode_rewards(panel: Panel, config: RLConfig, policy, *, episodes: int, seed: int = 0) -> float:
    """Mean reward per step of `policy(state, rng) -> target weights` over training-style episodes."""
    env = build_env(panel, config, weights_action=True)
    state, rng, total, steps = env.unwrapped.state, np.random.default_rng(seed), 0.0, 0
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(policy(state, rng))
            total, steps, done = total + reward, steps + 1, terminated or truncated
    return total / steps


@pytest.mark.parametrize("kind", PLANTED_KINDS)
def test_oracle_outscores_cash_and_random_under_the_default_reward(kind):
    """The reward ranks a known edge first: under the default RewardConfig a planted market's oracle earns a
    higher mean reward than cash (0) and random weights (penalties charging costs twice, or every bar of
    drawdown, would rank it below cash)."""
    panel = planted_panel(kind, 1500, 5, seed=1)
    config = RLConfig()
    oracle = _episode_rewards(panel, config, lambda state, rng: ORACLES[kind](state), episodes=20)
    cash = _episode_rewards(panel, config, lambda state, rng: BASELINES["cash"](state), episodes=5)
    random = _episode_rewards(
        panel, config, lambda state, rng: rng.dirichlet(np.ones(state.n_assets)) * rng.uniform(), episodes=20
    )
    assert cash == 0.0
    assert oracle > cash and oracle > random, (oracle, random)


def _holding_rewards(shock: float) -> tuple[float, float]:
    """(reward of an ordinary day, reward of a day losing `shock`) holding one slowly losing asset fully."""
    days = 200
    returns = np.full(days, -0.001)
    returns[::2] = -0.0005  # not constant, so the features have a volatility
    returns[150] = shock
    close = 100.0 * np.cumprod(1.0 + returns)[:, None]
    panel = _panel(close)
    config = evaluation_config(RLConfig())
    config.env = dataclasses.replace(config.env, max_weight=1.0, no_trade_band=0.0)
    env = build_env(panel, config, weights_action=True)
    env.reset(options={"start": 60})
    rewards = {}
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(np.ones(1))
        rewards[info["bar"]] = reward
        done = terminated or truncated
    shock_bar = int(np.argmin(panel.prices[1:, 0] / panel.prices[:-1, 0])) + 1
    return rewards[shock_bar - 1], rewards[shock_bar]


def test_a_large_loss_is_never_rewarded():
    """Holding a slowly losing asset, the reward falls with the loss: -59 % < -20 % < -1 % < an ordinary day,
    and a crash scores below zero (a reward that saturates or wraps at the extremes would pay for it)."""
    ordinary, small = _holding_rewards(-0.01)
    _, medium = _holding_rewards(-0.20)
    _, large = _holding_rewards(-0.59)
    assert large < medium < small < ordinary
    assert large < 0 and np.isfinite(large)


def test_action_scores_hold_an_asset_only_on_a_positive_action():
    """Long-only scores are max(a, 0): a policy that has learnt nothing about an asset (mean action 0 or
    below) keeps it out of the book, where (a + 1) / 2 held every such asset at half risk and diluted the
    assets with a signal (docs/rl.md, "Action mapping"); long/short scores are the clipped actions."""
    actions = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(action_scores(actions, True), [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(action_scores(actions, False), [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0])


def test_ruin_ends_the_episode():
    """Ruin (net worth <= 0 or a margin call) ends the episode there: long/short with the drawdown stop off, a
    +1900 % squeeze in a shorted symbol would otherwise leave a negative net worth that keeps trading."""
    days = 120
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0, 0.01, (days, 2))
    returns[90, 0] = 19.0  # +1900 %
    close = 50.0 * np.cumprod(1.0 + returns, axis=0)
    panel = _panel(close)
    config = evaluation_config(RLConfig())
    config.env = dataclasses.replace(config.env, long_only=False)
    env = build_env(panel, config)
    env.reset(options={"start": 40})
    bars = []
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))
        bars.append(info["bar"])
    squeeze = int(np.argmax(panel.prices[1:, 0] / panel.prices[:-1, 0])) + 1
    assert terminated and info["stop_reason"] == "ruin"
    assert bars[-1] == squeeze < len(panel) - 1  # ended at the squeeze, not at the data's end
    assert info["net_worth"] < 0 and np.isfinite(reward)


def test_ruin_by_margin_call_before_the_net_worth_is_gone():
    """A short that loses most of the equity but not all of it: the margin rule (net worth below
    maintenance_margin x gross positions) ends the episode although the net worth is still positive."""
    days = 120
    returns = np.random.default_rng(4).normal(0.0, 0.01, (days, 2))
    returns[90, 0] = 2.2  # +220 %: a 0.25 short loses 55 % of the equity; the short is then worth 0.8
    panel = _panel(50.0 * np.cumprod(1.0 + returns, axis=0))
    config = evaluation_config(RLConfig())
    config.env = dataclasses.replace(config.env, long_only=False, maintenance_margin=0.6)
    env = build_env(panel, config)
    env.reset(options={"start": 40})
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))
    assert info["stop_reason"] == "ruin" and 0 < info["net_worth"] < 0.6 * 100_000


def test_fill_at_the_next_open_loses_a_signal_that_lives_in_the_gap():
    """A market whose whole edge is the overnight gap after a close (open[t+1] / close[t] - 1 = +-0.4 % with
    the sign of bar t's open -> close move): the sign-persistence oracle earns it when filled at the observed close, and
    nothing when it must wait for the next open (the default), as a real order would."""
    days, n = 1200, 4
    rng = np.random.default_rng(5)
    close, open_ = np.empty((days, n)), np.empty((days, n))
    close[0] = open_[0] = 100.0
    last = np.zeros(n)
    for t in range(1, days):
        open_[t] = close[t - 1] * (1.0 + 0.004 * np.sign(last))
        close[t] = open_[t] * (1.0 + rng.normal(0.0, 0.01, n))
        last = close[t] / open_[t] - 1.0  # the gap follows the day's own move, independent of older bars
    panel = _panel(close, open_)
    sharpe = {}
    for fill in ("close", "next_open"):
        config = evaluation_config(RLConfig())
        config.env = dataclasses.replace(config.env, fill=fill)
        env = build_env(panel, config, weights_action=True)
        state = env.unwrapped.state
        env.reset(options={"start": 30})
        returns, done = [], False
        while not done:
            _, _, terminated, truncated, info = env.step(sign_persistence_oracle(state))
            returns.append(info["period_return"])
            done = terminated or truncated
        sharpe[fill] = performance(np.asarray(returns), 252)["sharpe"]
    assert sharpe["close"] > 3.0
    assert abs(sharpe["next_open"]) < 1.0, sharpe
