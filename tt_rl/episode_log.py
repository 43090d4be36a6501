"""EpisodeLogger: a gymnasium wrapper that writes each episode and its steps to the database in bulk.

Per step it appends the state's step record (a tuple of a dozen scalars), copies the (N,) action into a
preallocated buffer and keeps references to the step's position values and trades; every `flush_every` steps and at the episode's end
the buffers go, as numpy arrays in one job, to the writer process of `tt_rl.log_writer`, which stores them
in one transaction (the first job of an episode also inserts its `running` row, the last one also closes
it). Flushes and episode ends return at once (at most a few jobs in flight); `flush()` and `close()` wait
until everything is stored. A reset or close before the episode ended marks it `incomplete`; a hard kill
loses at most the unflushed buffer and leaves the row `running` or absent (never `finished`: the closing
update is in the same transaction as the episode's last steps).
"""

from __future__ import annotations

import atexit
import uuid
from typing import Any

import gymnasium
import numpy as np
import sqlalchemy as sa

from tt_rl.log_writer import LogWriter, step_arrays
from tt_rl.record import COLUMN


class EpisodeLogger(gymnasium.Wrapper):
    """Log the wrapped project env's episodes (split train|test, policy ppo|baseline) to tt_episode & co.

    `engine` is an Engine or a database URL (only its URL is used: the writer process connects). `holdings`
    adds one tt_holdings row per step and symbol with a position or a trade. Episodes that start before the
    env has taken `log_from_step` steps are not logged (training logs only its last episodes). A write's
    error is raised by a later step, reset, flush or close."""

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
        log_from_step: int = 0,
    ) -> None:
        super().__init__(env)
        self.meta = {
            "split": split,
            "policy": policy,
            "run_id": run_id,
            "model_id": model_id,
            "window": window,
        }
        self.flush_every = int(flush_every)
        self.log_from_step = int(log_from_step)
        self._env_steps = 0  # steps taken by the wrapped env, logged or not
        self.holdings = holdings
        self.config = config
        self.state = env.unwrapped.state
        n, k = self.state.n_assets, self.flush_every
        self._records: list[tuple] = []  # the state's step records: appending beats writing a numpy row
        self._actions = np.zeros((k, n), dtype=np.float32)  # copied: callers may reuse their action array
        self._values: list[np.ndarray] = []  # references: the portfolio never mutates a published array
        self._trades: list[np.ndarray] = []
        self.episode_id: str | None = None
        self.last_episode_id: str | None = None
        self._pending = 0
        self._pending_start: dict | None = None  # the open episode's row, until its first write
        url = engine if isinstance(engine, str) else engine.url.render_as_string(hide_password=False)
        self._key = uuid.uuid4().hex
        self._writer: LogWriter | None = LogWriter.attach(
            self._key, url
        )  # before our atexit hook: runs after it
        atexit.register(self.close)

    def reset(self, **kwargs: Any):
        self.close_episode("incomplete")
        obs, info = self.env.reset(**kwargs)
        if self._env_steps < self.log_from_step:
            return obs, info
        state = self.state
        self.episode_id = uuid.uuid4().hex
        self._pending_start = {  # stored with the first flush, in the same transaction
            **self.meta,
            "episode_id": self.episode_id,
            "timeframe": state.panel.timeframe,
            "start_ts": state.panel.index[state.t].to_pydatetime(),
            "initial_net_worth": state.portfolio.net_worth,
            "symbols": list(state.panel.symbols),
            "config": self.config,
        }
        self._flushed = 0
        self._pending = 0
        self._total_reward = 0.0
        self._max_drawdown = 0.0
        self._start_prices = state.portfolio.prices
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._env_steps += 1
        if self.episode_id is None:  # an episode started before log_from_step
            return obs, reward, terminated, truncated, info
        book, i = self.state.portfolio, self._pending
        self._records.append(self.state.record)
        self._actions[i] = action
        self._values.append(book.values)
        if self.holdings:
            self._trades.append(book.trades)
        self._pending = i = i + 1
        if i == self.flush_every:
            self._flush_async()
        if terminated or truncated:
            self.close_episode("finished", terminated=bool(terminated), truncated=bool(truncated))
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        """Write the buffered steps and wait until everything submitted is stored."""
        self._flush_async()
        if self._writer is not None:
            self._writer.wait(self._key)

    def _flush_async(self, closing: dict | None = None) -> None:
        """Hand the writer, as one job (one transaction): the episode's row if not yet written, a copy of
        the buffered steps, and the episode's closing update when `closing`; empty the buffer."""
        k, start, self._pending_start = self._pending, self._pending_start, None
        if self.episode_id is None or (k == 0 and start is None and closing is None):
            return
        steps = None
        if k:
            scalars = np.array(self._records, dtype=np.float64)
            self._records.clear()
            self._total_reward += float(scalars[:, COLUMN["reward"]].sum())
            self._max_drawdown = max(self._max_drawdown, float(scalars[:, COLUMN["drawdown"]].max()))
            buffers = {
                "scalars": scalars,
                "actions": self._actions[:k].copy(),
                "values": _rows(self._values),
            }
            if self.holdings:
                buffers["trades"] = _rows(self._trades)
            steps = step_arrays(self.state, self.episode_id, self._flushed, self._start_prices, **buffers)
            self._start_prices = self.state.prices[int(scalars[-1, COLUMN["bar"]])]
            self._flushed += k
            self._pending = 0
        if closing is not None:
            closing = {
                **closing,
                "episode_id": self.episode_id,
                "steps": self._flushed,
                "total_reward": self._total_reward,
                "max_drawdown": self._max_drawdown,
            }
        self._writer.submit(self._key, (start, steps, closing))

    def close_episode(self, status: str, **fields: Any) -> None:
        """Queue the open episode's (if any) remaining steps and its closing as `finished` or `incomplete`.

        Does not wait (training goes on while the writer stores them, in order: the closing update always
        follows the episode's last steps); `flush()` and `close()` wait."""
        if self.episode_id is None:
            return
        state = self.state
        self._flush_async(
            closing={
                "status": status,
                "end_ts": state.panel.index[state.t].to_pydatetime(),
                "final_net_worth": state.portfolio.net_worth,
                **fields,
            }
        )
        self.last_episode_id, self.episode_id = self.episode_id, None

    def close(self) -> None:
        """Close the open episode as incomplete, wait until everything is stored, release the writer."""
        atexit.unregister(self.close)
        if self._writer is not None:
            try:
                self.close_episode("incomplete")
                self._writer.wait(self._key)
            finally:
                writer, self._writer = self._writer, None
                writer.detach(self._key)
        super().close()


def _rows(arrays: list[np.ndarray]) -> np.ndarray:
    """The (N,) arrays of `arrays` as a (K, N) matrix (concatenate: faster than stack); empties the list."""
    matrix = np.concatenate(arrays).reshape(len(arrays), -1)
    arrays.clear()
    return matrix
