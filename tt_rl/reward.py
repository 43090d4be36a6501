"""The risk-aware reward's arithmetic, compiled (called by the environment's compiled step, `tt_rl.state`).

reward = D - drawdown_penalty * drawdown - turnover_penalty * turnover, where D is Moody & Saffell's (1998)
differential Sharpe ratio of the step return R, O(1) per step: with moving moments A (mean) and B (second
moment) of R and rate eta, D = (B dA - A dB / 2) / max(B - A^2, v0)^(3/2), dA = R - A, dB = R^2 - B, clipped
to +-clip. The variance floor v0 = target_vol^2 / bars_per_year (the per-bar variance of a portfolio on target)
also seeds B, so the first steps are finite and of order R / sigma; a non-finite R counts as -100 %.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from tt_rl.config import RewardConfig


class RewardParams(NamedTuple):
    """Coefficients of `risk_aware_reward` (passed to compiled code as a plain tuple)."""

    eta: float  # adaptation rate of the moving moments
    clip: float  # cap on |D|
    var_floor: float  # v0, per-bar variance
    drawdown_penalty: float
    turnover_penalty: float

    @classmethod
    def of(cls, config: RewardConfig, target_vol: float, bars_per_year: float) -> RewardParams:
        return cls(
            float(config.eta),
            float(config.clip),
            float(target_vol**2 / bars_per_year),
            float(config.drawdown_penalty),
            float(config.turnover_penalty),
        )

    def initial_moments(self) -> np.ndarray:
        """(A, B) before the first step: (0, v0)."""
        return np.array([0.0, self.var_floor])


@njit(cache=True)
def risk_aware_reward(
    moments: np.ndarray, r: float, drawdown: float, turnover: float, p: RewardParams
) -> tuple[float, float, float, float]:
    """(reward, D, drawdown term, turnover term) of a step with return `r`, drawdown and turnover (fractions);
    updates `moments` (A, B) in place."""
    if not math.isfinite(r):
        r = -1.0
    mean, second = moments[0], moments[1]
    d_mean, d_second = r - mean, r * r - second
    variance = max(second - mean * mean, p.var_floor)
    dsr = (second * d_mean - 0.5 * mean * d_second) / variance**1.5
    sharpe = min(max(dsr, -p.clip), p.clip)
    moments[0] = mean + p.eta * d_mean
    moments[1] = second + p.eta * d_second
    drawdown_term = p.drawdown_penalty * drawdown
    turnover_term = p.turnover_penalty * turnover
    return sharpe - drawdown_term - turnover_term, sharpe, drawdown_term, turnover_term
