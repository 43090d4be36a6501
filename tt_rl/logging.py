"""EpisodeLogger: a gymnasium wrapper that writes each episode and its steps to the database in bulk.

Per step it copies a handful of scalars and three (N,) rows into preallocated numpy buffers; every
`flush_every` steps, at the episode's end and on close the buffers become frames written by
`tt_resources.db.rl_log.write_steps` in one transaction. A reset or close before the episode ended marks it
`incomplete`; a hard kill loses at most the unflushed buffer and leaves the row `running` (never `finished`).
"""

from __future__ import annotations

import atexit
from typing import Any

import gymnasium
import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.db import rl_log

# columns of the per-step scalar buffer
SCALARS = (
    "bar",
    "reward",
    "sharpe_term",
    "drawdown_penalty",
    "turnover_penalty",
    "net_worth",
    "cash",
    "period_return",
    "drawdown",
    "turnover",
    "costs",
    "rebalanced",
)


class EpisodeLogger(gymnasium.Wrapper):
    """Log the wrapped project env's episodes (split train|test, policy ppo|baseline) to tt_episode & co.

    `engine` may be a database URL (built lazily, e.g. inside a SubprocVecEnv worker). `holdings` adds one
    tt_holdings row per step and symbol with a position or a trade."""

    def __init__(
        self,
        env: gymnasium.Env,
        engine: sa.Engine | str,
        *,
        split: str,
        policy: str,
        run_id: str | None = None,
        model_id: str | None = None,
        window: int | None = None,
        flush_every: int = 1024,
        holdings: bool = True,
        config: dict | None = None,
    ) -> None:
        super().__init__(env)
        self._engine = engine
        self.meta = {
            "split": split,
            "policy": policy,
            "run_id": run_id,
            "model_id": model_id,
            "window": window,
        }
        self.flush_every = int(flush_every)
        self.holdings = holdings
        self.config = config
        self.state = env.unwrapped.state
        self.rewarder = env.unwrapped.reward_scheme
        n, k = self.state.n_assets, self.flush_every
        self._scalars = np.zeros((k, len(SCALARS)))
        self._actions = np.zeros((k, n), dtype=np.float32)
        self._values = np.zeros((k, n))
        self._trades = np.zeros((k, n))
        self.episode_id: str | None = None
        self.last_episode_id: str | None = None
        self._pending = 0
        atexit.register(self.close_episode, "incomplete")

    @property
    def engine(self) -> sa.Engine:
        if isinstance(self._engine, str):
            from tt_resources.db.engine import create_engine

            self._engine = create_engine(self._engine)
        return self._engine

    def reset(self, **kwargs: Any):
        self.close_episode("incomplete")
        obs, info = self.env.reset(**kwargs)
        state = self.state
        self.episode_id = rl_log.start_episode(
            self.engine,
            **self.meta,
            timeframe=state.panel.timeframe,
            start_ts=state.panel.index[state.t].to_pydatetime(),
            initial_net_worth=state.portfolio.net_worth,
            symbols=list(state.panel.symbols),
            config=self.config,
        )
        self._step = 0
        self._pending = 0
        self._total_reward = 0.0
        self._max_drawdown = 0.0
        self._start_prices = state.portfolio.prices
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        state, book, rw, i = self.state, self.state.portfolio, self.rewarder, self._pending
        self._scalars[i] = (
            state.t,
            reward,
            rw.sharpe_term,
            rw.drawdown_penalty,
            rw.turnover_penalty,
            book.net_worth,
            book.cash,
            state.period_return,
            book.drawdown,
            state.turnover,
            state.costs,
            state.rebalanced,
        )
        self._actions[i] = action
        self._values[i] = book.values
        self._trades[i] = state.trades
        self._pending = i + 1
        self._step += 1
        self._total_reward += reward
        self._max_drawdown = max(self._max_drawdown, book.drawdown)
        if self._pending == self.flush_every:
            self.flush()
        if terminated or truncated:
            self.close_episode("finished", terminated=bool(terminated), truncated=bool(truncated))
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        """Write the buffered steps (one transaction) and empty the buffer."""
        k = self._pending
        if self.episode_id is None or k == 0:
            return
        state = self.state
        s = pd.DataFrame(self._scalars[:k], columns=SCALARS)
        bars = s["bar"].to_numpy(dtype=np.int64)
        steps = np.arange(self._step - k, self._step)
        ts = state.panel.index[bars]
        base = {"episode_id": self.episode_id, "step": steps}
        actions = pd.DataFrame(
            {
                **base,
                "ts": state.panel.index[bars - 1],
                "action": self._actions[:k].tolist(),
                "rebalanced": s["rebalanced"].to_numpy(dtype=bool),
            }
        )
        rewards = pd.DataFrame(
            {**base, **{c: s[c] for c in ("reward", "sharpe_term", "drawdown_penalty", "turnover_penalty")}}
        )
        values = self._values[:k]
        portfolio = pd.DataFrame(
            {
                **base,
                "ts": ts,
                "gross_exposure": np.abs(values).sum(axis=1) / s["net_worth"].to_numpy(),
                **{c: s[c] for c in ("net_worth", "cash", "period_return", "drawdown", "turnover", "costs")},
            }
        )
        holdings = (
            self._holdings_frame(steps, bars, values, s["net_worth"].to_numpy()) if self.holdings else _EMPTY
        )
        rl_log.write_steps(self.engine, actions, rewards, portfolio, holdings)
        self._start_prices = state.prices[bars[-1]]
        self._pending = 0

    def _holdings_frame(
        self, steps: np.ndarray, bars: np.ndarray, values: np.ndarray, net_worth: np.ndarray
    ) -> pd.DataFrame:
        """Rows (step x symbol) with a position or a trade; P&L = shares x price move over the step."""
        state = self.state
        prices = state.prices[bars]
        before = np.vstack([self._start_prices[None, :], prices[:-1]])
        quantities = values / prices
        trades = self._trades[: len(steps)]
        rows, cols = np.nonzero((values != 0.0) | (trades != 0.0))
        return pd.DataFrame(
            {
                "episode_id": self.episode_id,
                "step": steps[rows],
                "symbol": np.asarray(state.panel.symbols, dtype=object)[cols],
                "weight": values[rows, cols] / net_worth[rows],
                "quantity": quantities[rows, cols],
                "price": prices[rows, cols],
                "value": values[rows, cols],
                "trade_value": trades[rows, cols],
                "cost": state.portfolio.cost_rate * np.abs(trades[rows, cols]),
                "pnl": quantities[rows, cols] * (prices[rows, cols] - before[rows, cols]),
            }
        )

    def close_episode(self, status: str, **fields: Any) -> None:
        """Flush and close the open episode (if any) as `finished` or `incomplete`."""
        if self.episode_id is None:
            return
        self.flush()
        book = self.state.portfolio
        rl_log.finish_episode(
            self.engine,
            self.episode_id,
            status,
            steps=self._step,
            end_ts=self.state.panel.index[self.state.t].to_pydatetime(),
            final_net_worth=book.net_worth,
            total_reward=self._total_reward,
            max_drawdown=self._max_drawdown,
            **fields,
        )
        self.last_episode_id, self.episode_id = self.episode_id, None

    def close(self) -> None:
        self.close_episode("incomplete")
        atexit.unregister(self.close_episode)
        super().close()


_EMPTY = pd.DataFrame()
