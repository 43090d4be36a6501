"""Baseline policies: target weights (N,) from the environment's TradingState at the decision bar.

They run through the same environment (TargetWeightsAction), so costs, no-trade band and timing match PPO's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tt_resources.terms import CASH, EQUAL_WEIGHT, EQUAL_WEIGHT_VOL
from tt_rl.kernels import cap_weights, forecast_variance, scale_to_vol
from tt_rl.state import TradingState

WeightPolicy = Callable[[TradingState], np.ndarray]
NO_RETURNS = np.zeros((0, 1))  # forecast_variance's sample window, unused: the baselines use the model only


def equal_weight(state: TradingState) -> np.ndarray:
    """Buy 1/N of each asset at the episode's first bar, then hold (weights drift with prices)."""
    if state.t == state.start:
        return np.full(state.n_assets, 1.0 / state.n_assets)
    return state.held_weights()


def equal_weight_vol(state: TradingState) -> np.ndarray:
    """Equal weights scaled every bar to the target volatility (same covariance model as the agent),
    capped at max_leverage gross."""
    cfg = state.config
    raw = np.full(state.n_assets, 1.0 / state.n_assets)
    variance = forecast_variance(raw, state.vols[state.t], cfg.correlation, 1.0, NO_RETURNS, 1.0)
    return cap_weights(scale_to_vol(raw, variance, cfg.target_vol), np.inf, cfg.max_leverage)


def cash(state: TradingState) -> np.ndarray:
    """Stay in cash."""
    return np.zeros(state.n_assets)


BASELINES: dict[str, WeightPolicy] = {
    EQUAL_WEIGHT: equal_weight,
    EQUAL_WEIGHT_VOL: equal_weight_vol,
    CASH: cash,
}
