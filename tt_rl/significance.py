"""Significance of a strategy's Sharpe ratio: probabilistic and deflated Sharpe ratios, and the spread across
seeds.

Sharpe ratios here are per period (mean / std of per-step returns, ddof 1; not annualised), as in the papers.
Skewness and kurtosis are the sample's own moments (biased estimators; kurtosis is Pearson's, 3 for a normal).

- Probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012, "The Sharpe Ratio Efficient Frontier", eq. 11):
  PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)),
  the probability that the true Sharpe ratio exceeds SR* given n observations of the returns.
- Deflated Sharpe ratio (Bailey & Lopez de Prado 2014, "The Deflated Sharpe Ratio", eq. 2-3): the PSR with
  SR* the expected maximum Sharpe ratio of N independent trials of zero true Sharpe,
  SR*_0 = sqrt(V[SR_n]) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma = Euler-Mascheroni,
  V[SR_n] the variance of the trials' (per-period) Sharpe ratios. With N <= 1 or fewer than two trial Sharpe
  ratios there is nothing to deflate for: SR*_0 = 0 and the DSR equals the PSR against 0.
- Across seeds: the mean with a two-sided Student-t confidence interval (mean +- t_{(1+level)/2, k-1} s / sqrt(k),
  s the sample std of the k seeds' values); a bootstrap is meaningless for the handful of seeds trained here.

Undefined values (constant returns, fewer than two observations) are NaN.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def sharpe_per_period(returns: np.ndarray) -> float:
    """mean / std (ddof 1) of per-step `returns`; NaN with fewer than two returns or zero volatility."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return float("nan")
    std = float(np.std(r, ddof=1))
    return float(r.mean() / std) if std > 0 else float("nan")


def psr_from_moments(sharpe: float, n: int, skew: float, kurtosis: float, benchmark: float = 0.0) -> float:
    """PSR of a per-period Sharpe ratio `sharpe` estimated from `n` returns with sample `skew` and Pearson
    `kurtosis`, against the per-period Sharpe ratio `benchmark`; in [0, 1], NaN when undefined."""
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n < 2 or not math.isfinite(sharpe) or not variance > 0:
        return float("nan")
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def probabilistic_sharpe(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """Probability that the true per-period Sharpe ratio of `returns` (per-step simple returns) exceeds
    `benchmark` (a per-period Sharpe ratio; 0 = cash); NaN when the returns are constant or too few."""
    r = np.asarray(returns, dtype=np.float64)
    sharpe = sharpe_per_period(r)
    if not math.isfinite(sharpe):
        return float("nan")
    skew = float(stats.skew(r, bias=True))
    kurtosis = float(stats.kurtosis(r, fisher=False, bias=True))
    return psr_from_moments(sharpe, len(r), skew, kurtosis, benchmark)


def expected_max_sharpe(n_trials: int, trial_variance: float) -> float:
    """SR*_0: expected maximum per-period Sharpe ratio of `n_trials` independent trials of zero true Sharpe
    whose Sharpe ratios have variance `trial_variance`; 0 for a single trial or an unknown variance."""
    if n_trials <= 1 or not trial_variance > 0:
        return 0.0
    quantile = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(trial_variance) * quantile


def deflated_sharpe(returns: np.ndarray, trial_sharpes: np.ndarray, n_trials: int | None = None) -> float:
    """DSR of `returns`: PSR against SR*_0 for `n_trials` trials (default: len(trial_sharpes)) whose per-period
    Sharpe ratios `trial_sharpes` give the variance V[SR_n] (NaNs ignored)."""
    sharpes = np.asarray(trial_sharpes, dtype=np.float64)
    sharpes = sharpes[np.isfinite(sharpes)]
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
    n = len(sharpes) if n_trials is None else n_trials
    return probabilistic_sharpe(returns, expected_max_sharpe(n, variance))


def mean_confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of `values` (one per seed; NaNs ignored) with a two-sided Student-t interval at
    `level`; low and high are NaN with fewer than two finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1.0 + level) / 2.0, len(v) - 1) * np.std(v, ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half
