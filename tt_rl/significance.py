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
- Sampling interval of a Sharpe ratio over time (Lo 2002, "The Statistics of Sharpe Ratios", iid case, with
  Mertens 2002's correction for non-normal returns; the PSR's own standard error):
  SE(SR) = sqrt((1 - skew SR + (kurt - 1) / 4 SR^2) / (n - 1)), interval SR +- Phi^-1((1 + level) / 2) SE.
  It is the uncertainty of the market path (the test period is one draw of it), unlike a spread across seeds.
- Excess returns over the best baseline (`excess_returns`): r - (sd(r) / sd(b)) b, the strategy's returns
  less the baseline's levered to the same volatility (Modigliani & Modigliani 1997's M2 construction; cash,
  of zero volatility, is subtracted as it is). Their mean is sd(r) (SR_r - SR_b) and their variance
  2 sd(r)^2 (1 - rho), so their t-statistic is the Jobson-Korkie (1981) test of SR_r > SR_b without Memmel's
  (2003) estimation term (of order SR^2 per period, negligible at daily Sharpe ratios): skill is a higher
  Sharpe ratio than the baseline's, not a higher mean return bought with more risk (and a safer strategy of
  a higher Sharpe ratio is not failed for earning less than a fully invested baseline).
- Verdict (`assess`): skill beyond the best baseline when the DSR of the excess returns over the best baseline
  reaches SIGNIFICANT, else "beats cash" when the DSR against cash does, else nothing significant; the
  probabilities are compared unrounded and shown truncated (never rounded up across the threshold).

Undefined values (constant returns, fewer than two observations) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
SIGNIFICANT = 0.95  # a DSR from which a Sharpe ratio counts as significant
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
    return psr_from_moments(sharpe, len(r), *_moments(r), benchmark)


def excess_returns(returns: np.ndarray, best_returns: np.ndarray) -> np.ndarray:
    """Per-step `returns` (n,) less the baseline's `best_returns` (n,, the same steps) levered to the volatility
    of `returns` (see module doc); a baseline of zero volatility (cash) is subtracted as it is."""
    r = np.asarray(returns, dtype=np.float64)
    b = np.asarray(best_returns, dtype=np.float64)
    if r.shape != b.shape:
        raise ValueError(f"returns {r.shape} and best baseline's returns {b.shape} cover different steps")
    scale = float(np.std(b, ddof=1)) if len(b) > 1 else 0.0
    return r - (float(np.std(r, ddof=1)) / scale) * b if scale > 0 else r - b


def _moments(r: np.ndarray) -> tuple[float, float]:
    """(skewness, Pearson kurtosis) of `r`, biased sample estimators (scipy.stats' bias=True)."""
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    return float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2


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


def sharpe_interval(returns: np.ndarray, level: float = 0.95, periods: int = 1) -> tuple[float, float]:
    """(low, high): two-sided sampling interval at `level` of the Sharpe ratio of per-step `returns` over time
    (Lo 2002 / Mertens 2002 standard error, see module doc), annualised by sqrt(`periods`) bars per year;
    NaN when the Sharpe ratio is undefined."""
    r = np.asarray(returns, dtype=np.float64)
    sharpe = sharpe_per_period(r)
    if not math.isfinite(sharpe):
        return float("nan"), float("nan")
    skew, kurtosis = _moments(r)
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:
        return float("nan"), float("nan")
    half = _NORMAL.inv_cdf((1.0 + level) / 2.0) * math.sqrt(variance / (len(r) - 1))
    scale = math.sqrt(periods)
    return (sharpe - half) * scale, (sharpe + half) * scale


@dataclass(frozen=True)
class Assessment:
    """The significance of one traded return series: PSR and DSR against cash, and of its excess returns over
    the best baseline (per-period Sharpe ratio `sharpe_vs_best`, PSR and DSR against 0); `n_trials` the DSRs'
    N."""

    psr: float
    dsr: float
    sharpe_vs_best: float
    psr_vs_best: float
    dsr_vs_best: float
    n_trials: int

    def verdict(self, best: str, periods: int = 1) -> str:
        """One line starting "Verdict:", naming the best baseline `best` (a label) and the numbers behind it;
        the excess Sharpe ratio annualised by sqrt(`periods`) bars per year."""
        vs_cash = f"DSR vs cash {_shown(self.dsr)}"
        vs_best = f"DSR vs {best} {_shown(self.dsr_vs_best)}"
        trials = f"{self.n_trials} configuration(s) tried"
        if self.dsr_vs_best >= SIGNIFICANT:
            return (
                f"Verdict: skill beyond the best baseline ({best}): {vs_best} >= {SIGNIFICANT} "
                f"(excess Sharpe {self.sharpe_vs_best * math.sqrt(periods):.2f} ann., {trials}); {vs_cash}."
            )
        if self.dsr >= SIGNIFICANT:
            return (
                f"Verdict: beats cash but not the best baseline ({best}): {vs_cash} >= {SIGNIFICANT}, "
                f"{vs_best} < {SIGNIFICANT} ({trials})."
            )
        if best.casefold() == "cash":  # the excess over cash is the return itself: one comparison, said once
            return f"Verdict: nothing significant: {vs_cash} < {SIGNIFICANT}, cash being the best baseline ({trials})."
        return f"Verdict: nothing significant: {vs_cash} and {vs_best}, both below {SIGNIFICANT} ({trials})."


def assess(
    returns: np.ndarray,
    best_returns: np.ndarray,
    *,
    n_trials: int = 1,
    trial_sharpes: Sequence[float] = (),
    trial_excess_sharpes: Sequence[float] = (),
) -> Assessment:
    """Significance of per-step `returns` against cash and against `best_returns` (the best baseline's returns
    on the same steps, levered to the volatility of `returns`: `excess_returns`). The DSRs count `n_trials` configurations whose per-period Sharpe ratios (other
    configurations') are `trial_sharpes` and of excess returns `trial_excess_sharpes`; this series' own
    values join them for the variance V[SR_n]."""
    r = np.asarray(returns, dtype=np.float64)
    excess = excess_returns(r, best_returns)
    sharpe, excess_sharpe = sharpe_per_period(r), sharpe_per_period(excess)
    return Assessment(
        psr=probabilistic_sharpe(r),
        dsr=deflated_sharpe(r, [*trial_sharpes, sharpe], n_trials),
        sharpe_vs_best=excess_sharpe,
        psr_vs_best=probabilistic_sharpe(excess),
        dsr_vs_best=deflated_sharpe(excess, [*trial_excess_sharpes, excess_sharpe], n_trials),
        n_trials=n_trials,
    )


def _shown(probability: float) -> str:
    """`probability` truncated to 3 decimals, so that the text never crosses SIGNIFICANT the other way;
    "undefined" for NaN (constant returns)."""
    if not math.isfinite(probability):
        return "undefined"
    return f"{math.floor(probability * 1000) / 1000:.3f}"
