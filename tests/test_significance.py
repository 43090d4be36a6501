"""tt_rl.significance against hand-computed values and the deflated Sharpe ratio paper's worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tt_rl.significance import (
    deflated_sharpe,
    expected_max_sharpe,
    mean_confidence_interval,
    probabilistic_sharpe,
    psr_from_moments,
    sharpe_per_period,
)


def test_psr_by_hand():
    # returns 1..4 %: mean 2.5 %, std (ddof 1) 1.290994 % -> SR 1.936492; deviations +-0.5, +-1.5 % give
    # skew 0 and kurtosis m4 / m2^2 = 2.5625 / 1.5625 = 1.64, so the variance term is 1 + 0.64 / 4 * SR^2 = 1.6
    # and z = SR sqrt(3) / sqrt(1.6) = 2.651650; Phi(z) = 0.995995
    returns = np.array([0.01, 0.02, 0.03, 0.04])
    assert sharpe_per_period(returns) == pytest.approx(1.936492, abs=1e-6)
    assert probabilistic_sharpe(returns) == pytest.approx(0.995995, abs=1e-6)
    # against its own Sharpe ratio the PSR is a coin flip
    assert probabilistic_sharpe(returns, benchmark=sharpe_per_period(returns)) == pytest.approx(0.5)


def test_dsr_paper_example():
    # Bailey & Lopez de Prado (2014), section 3: N = 100 trials, V[SR_n] = 1/2 annualised (daily: / 250) give
    # SR*_0 = 0.1132 per day; the best trial's SR 2.5 annualised over T = 1250 days with skew -3 and
    # kurtosis 10 has DSR 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=5e-5)


def test_deflation_grows_with_trials():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.001, 0.01, 500)
    trials = rng.normal(0.0, 0.05, 50)
    psr = probabilistic_sharpe(returns)
    # one trial (or an unknown variance) deflates nothing
    assert deflated_sharpe(returns, trials[:1]) == pytest.approx(psr)
    assert expected_max_sharpe(1, 0.01) == 0.0
    few, many = deflated_sharpe(returns, trials[:5]), deflated_sharpe(returns, trials)
    assert psr > few > many
    assert deflated_sharpe(returns, trials[:5], n_trials=50) < few


def test_undefined_is_nan():
    assert math.isnan(probabilistic_sharpe(np.zeros(10)))  # all cash: no volatility
    assert math.isnan(probabilistic_sharpe(np.array([0.01])))
    assert math.isnan(sharpe_per_period(np.array([])))


def test_noise_is_not_significant_and_signal_is():
    rng = np.random.default_rng(7)
    assert probabilistic_sharpe(rng.normal(0.0, 0.01, 2000)) < 0.95
    assert probabilistic_sharpe(rng.normal(0.002, 0.01, 2000)) > 0.99


def test_t_interval_by_hand():
    # mean 2, s 1, t_{0.975, 2} = 4.302653: half width 4.302653 / sqrt(3) = 2.484138
    mean, low, high = mean_confidence_interval(np.array([1.0, 2.0, 3.0]))
    assert (mean, low, high) == pytest.approx((2.0, -0.484138, 4.484138), abs=1e-6)
    mean, low, high = mean_confidence_interval(np.array([0.5, np.nan]))
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
