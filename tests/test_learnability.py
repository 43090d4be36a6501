"""The learnability suite: its planted markets and their oracles as pure functions (the signal lives where a
next-open fill can reach it, the oracle reaches its Sharpe through the agent's own sizing and costs, the null
kinds predict nothing). Whether PPO learns them (and claims nothing on noise and beta) is a learning run:
bench/learnability.py, with its targets, not the test suite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tt_resources.terms import ORACLE
from tt_rl.config import RLConfig
from tt_rl.learnability import weight_policy_returns
from tt_rl.metrics import performance
from tt_rl.planted import (
    DRIFT_BARS,
    GAP_KINDS,
    MOMENTUM_BARS,
    NULL_KINDS,
    PLANTED_KINDS,
    STRENGTH,
    centred_rank,
    planted_bars,
    planted_panel,
)
from tt_rl.walk_forward import Fold

NEW_KINDS = ("lead_lag", "volume", "momentum_rank")
ORACLE_KINDS = (*NEW_KINDS, "drift")  # kinds whose oracle was written in issue 26


def _predictor(kind: str, bars) -> np.ndarray:
    """(T - 1, N): what each kind's oracle knows at bar t's close about bar t + 1, per asset."""
    r = bars.returns
    if kind == "lead_lag":
        edge = np.zeros_like(r)
        edge[:, 1::2] = r[:, 0 : 2 * (r.shape[1] // 2) : 2]
        return edge[:-1]
    if kind == "volume":
        return (bars.volume > 3 * np.median(bars.volume)).astype(float)[:-1]
    growth = np.cumprod(1.0 + r, axis=0)
    momentum = np.ones_like(r)
    momentum[MOMENTUM_BARS:] = growth[MOMENTUM_BARS:] / growth[:-MOMENTUM_BARS]
    ranks = np.apply_along_axis(centred_rank, 1, momentum)
    ranks[: MOMENTUM_BARS - 1] = 0.0
    return ranks[:-1]


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(OLS slope of y on x, its standard error), pooled over every bar and asset where x varies."""
    x, y = x.ravel(), y.ravel()
    x = x - x.mean()
    slope = float(x @ (y - y.mean()) / (x @ x))
    residual = y - y.mean() - slope * x
    return slope, float(np.sqrt(residual.var() / (x @ x)))


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_the_signal_lives_only_in_the_next_session(kind):
    """What the oracle knows at t's close predicts t + 1's session (open -> close: what a next-open fill
    trades) by many standard errors, and t + 1's overnight gap (close -> open: before the fill) not at all."""
    bars = planted_bars(kind, 3000, 6 if kind != "momentum_rank" else 15, seed=3)
    x = _predictor(kind, bars)
    in_session, se_session = _slope(x, bars.session[1:])
    in_gap, se_gap = _slope(x, bars.gap[1:])
    assert kind in GAP_KINDS and bars.gap.std() > 0
    assert in_session > 5 * se_session, (in_session, se_session)
    assert abs(in_gap) < 3 * se_gap, (in_gap, se_gap)


def test_the_beta_market_drifts_and_predicts_nothing():
    """beta: every asset drifts by its strength (an equal-weight Sharpe near 1) and no bar's returns, own or
    another asset's, predict the next bar's (a null market)."""
    bars = planted_bars("beta", 5000, 5, seed=4)
    r = bars.returns
    assert np.allclose(r.mean(axis=0), STRENGTH["beta"], atol=4 * r.std() / math.sqrt(len(r)))
    market = r.mean(axis=1)
    assert 0.7 < market.mean() / market.std() * math.sqrt(252) < 1.3
    for lead in range(r.shape[1]):
        for follower in range(r.shape[1]):
            slope, se = _slope(r[:-1, lead], r[1:, follower])
            assert abs(slope) < 4 * se, (lead, follower, slope, se)


def test_the_older_kinds_keep_their_markets():
    """The kinds from before the gap kinds have no overnight gap and draw the noise they drew then (drift
    plants another drift in it since issue 26, below): the reversal market's recursion, rebuilt from its own
    noise, gives its returns."""
    for kind in set(PLANTED_KINDS) - set(GAP_KINDS):
        assert not planted_bars(kind, 50, 5, seed=2).gap.any()
    bars, noise = planted_bars("reversal", 200, 5, seed=2), planted_bars("noise", 200, 5, seed=2)
    rebuilt = noise.session.copy()
    for t in range(1, len(rebuilt)):
        rebuilt[t] -= STRENGTH["reversal"] * (rebuilt[t - 1] - rebuilt[t - 1].mean())
    np.testing.assert_allclose(bars.returns, rebuilt)


def test_one_asset_at_a_time_outperforms_in_the_drift_market():
    """drift: on the noise of the same seed, one asset drifts +strength and the others -strength / (N - 1) (the
    market does not drift), the drifter the same for DRIFT_BARS bars and then another asset; buying and
    holding a fixed asset cannot keep it."""
    n, k = 5, STRENGTH["drift"]
    planted = planted_bars("drift", 1000, n, seed=2).session - planted_bars("noise", 1000, n, seed=2).session
    np.testing.assert_allclose(planted.sum(axis=1), 0.0, atol=1e-15)
    drifter = planted.argmax(axis=1)
    np.testing.assert_allclose(planted[np.arange(1000), drifter], k)
    np.testing.assert_allclose(np.sort(planted, axis=1)[:, :-1], -k / (n - 1))
    stints = drifter.reshape(-1, DRIFT_BARS)
    assert (stints == stints[:, :1]).all() and (np.diff(stints[:, 0]) != 0).all()
    assert len(set(stints[:, 0])) > 1


@pytest.fixture(scope="module")
def oracle_sharpes() -> dict[str, dict[str, float]]:
    """Annualised test Sharpe (last 30 % of 1500 bars, after costs, next-open fills) of every kind's oracle and
    of the baselines, through the evaluation environment."""
    out = {}
    for kind in (*ORACLE_KINDS, *NULL_KINDS):
        # the drift oracle finds each new drifter 20 bars late: its Sharpe (~2) shows over a longer test
        panel = planted_panel(kind, 6000 if kind == "drift" else 1500, seed=1)
        split = int(len(panel) * 0.7)
        runs = weight_policy_returns(kind, panel, RLConfig(), Fold(0, 0, split, split, len(panel) - 1))
        out[kind] = {name: float(np.nan_to_num(performance(r, 252)["sharpe"])) for name, r in runs.items()}
    return out


@pytest.mark.parametrize("kind", ORACLE_KINDS)
def test_each_new_oracle_reaches_its_sharpe_after_costs(kind, oracle_sharpes):
    """Trading through the agent's sizing, costs and next-open fills, the oracle of each new kind earns an
    out-of-sample Sharpe above 1 and above every baseline's."""
    sharpe = oracle_sharpes[kind]
    assert sharpe[ORACLE] > 1.0, sharpe
    assert sharpe[ORACLE] > max(v for k, v in sharpe.items() if k != ORACLE) + 0.5, sharpe


def test_the_null_oracles_know_no_more_than_a_baseline(oracle_sharpes):
    """On noise the oracle is cash; on beta it holds the market and earns what vol-targeted equal weight
    earns (within 0.1 Sharpe): nothing beyond a baseline is there to be known."""
    assert oracle_sharpes["noise"][ORACLE] == 0.0
    beta = oracle_sharpes["beta"]
    assert abs(beta[ORACLE] - beta["equal_weight_vol"]) < 0.1, beta


def test_the_policy_sees_other_assets_through_its_cross_asset_term():
    """Observation layout and wiring of tt_rl.policy's cross-asset term: with cross features (1, 2) and only the
    weight of asset 0's feature 2 at the last window bar set for asset 1 (the shared head silent), asset 1's
    action mean follows that feature and no other asset's action moves; a feature outside the term moves
    nothing."""
    import gymnasium
    import torch

    from tt_rl.policy import CrossSectionalPolicy

    n, window, n_features, k = 3, 2, 4, 2
    obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (window * n * n_features + n,), np.float32)
    act_space = gymnasium.spaces.Box(-1.0, 1.0, (n,), np.float32)
    policy = CrossSectionalPolicy(
        obs_space, act_space, lambda _: 1e-3, net_arch=[8], window=window, cross_features=(1, k)
    )
    assert policy.features_extractor.cross.shape == (n, n, window * 2)  # 2 features x 2 bars
    with torch.no_grad():
        policy.action_net.linear.weight.zero_()
        policy.action_net.linear.bias.zero_()
        policy.features_extractor.cross[1, 0, 3] = 2.0  # inputs (bar 1: f1, f2, bar 2: f1, f2): bar 2's f2

    def means(obs: np.ndarray) -> np.ndarray:
        flat = torch.as_tensor(np.concatenate([obs.ravel(), np.zeros(n, dtype=np.float32)]))[None]
        return policy.get_distribution(flat).distribution.mean.detach().numpy()[0]

    obs = np.zeros((window, n, n_features), dtype=np.float32)
    obs[1, 0, k] = 0.5
    np.testing.assert_allclose(means(obs), [0.0, 1.0, 0.0], atol=1e-6)
    outside = np.zeros((window, n, n_features), dtype=np.float32)
    outside[1, 0, 3] = 0.5  # feature 3 is not a cross feature
    np.testing.assert_allclose(means(outside), [0.0, 0.0, 0.0], atol=1e-6)
    # the saved form of models trained before cross_features: the term over every feature
    legacy = CrossSectionalPolicy(
        obs_space, act_space, lambda _: 1e-3, net_arch=[8], window=window, cross_asset=True
    )
    assert legacy.features_extractor.cross.shape == (n, n, window * n_features)
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        CrossSectionalPolicy(
            obs_space, act_space, lambda _: 1e-3, net_arch=[8], window=window, cross_features=(4,)
        )
