"""EpisodeLogger: a gymnasium wrapper that writes each episode and its steps to the database in bulk.

Per step it copies a handful of scalars and three (N,) rows into preallocated numpy buffers; every
`flush_every` steps and at the episode's end the buffers become frames written through
`tt_resources.db.rl_log` in one transaction (the first one also inserts the episode's `running` row, the
last one also closes it). Frames are built and written on a background writer thread (sqlite3 and psycopg
release the GIL while the database works), in order, with at most `WRITER_DEPTH` writes queued; flushes
and episode ends return at once, `flush()` and `close()` wait until everything is stored. A reset or close
before the episode ended marks it `incomplete`; a hard kill loses at most the unflushed buffer and the
queued writes and leaves the row `running` or absent (never `finished`: the closing update is in the same
transaction as the episode's last steps).
"""

from __future__ import annotations

import atexit
import queue
import threading
import uuid
from collections.abc import Callable
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


WRITER_DEPTH = 2  # writes queued before the stepping thread waits


class _Writer:
    """A daemon thread running submitted jobs in order. The first failure is re-raised (once) by the next
    `submit` or `wait`; jobs after it are dropped, since they may depend on the failed one."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=WRITER_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="episode-logger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    job()
            except BaseException as exc:  # handed to the stepping thread
                self._error = exc
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` (blocks while WRITER_DEPTH jobs are pending)."""
        self._raise()
        self._jobs.put(job)

    def wait(self) -> None:
        """Return when every submitted job has run."""
        self._jobs.join()
        self._raise()

    def stop(self) -> None:
        """Finish the queued jobs and end the thread."""
        self._jobs.put(None)
        self._thread.join()
        self._raise()


class EpisodeLogger(gymnasium.Wrapper):
    """Log the wrapped project env's episodes (split train|test, policy ppo|baseline) to tt_episode & co.

    `engine` may be a database URL (built lazily, e.g. inside a SubprocVecEnv worker). `holdings` adds one
    tt_holdings row per step and symbol with a position or a trade. All database work runs on the writer
    thread; a write's error is raised by a later step, reset, flush or close."""

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
        self._pending_start: dict | None = None  # the open episode's row, until its first write
        self._writer: _Writer | None = None
        atexit.register(self._close_at_exit)

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
        self.episode_id = uuid.uuid4().hex
        fields = {
            **self.meta,
            "episode_id": self.episode_id,
            "timeframe": state.panel.timeframe,
            "start_ts": state.panel.index[state.t].to_pydatetime(),
            "initial_net_worth": state.portfolio.net_worth,
            "symbols": list(state.panel.symbols),
            "config": self.config,
        }
        self._pending_start = fields  # stored with the first flush, in the same transaction
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
        if self.holdings:
            self._trades[i] = state.trades
        self._pending = i + 1
        self._step += 1
        self._total_reward += reward
        self._max_drawdown = max(self._max_drawdown, book.drawdown)
        if self._pending == self.flush_every:
            self._flush_async()
        if terminated or truncated:
            self.close_episode("finished", terminated=bool(terminated), truncated=bool(truncated))
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        """Write the buffered steps and wait until everything submitted is stored."""
        self._flush_async()
        if self._writer is not None:
            self._writer.wait()

    def _flush_async(self, finish: dict | None = None) -> None:
        """Hand the writer, as one transaction: the episode's row if not yet written, a copy of the buffered
        steps, and (when closing) the episode's closing update; empty the buffer."""
        k, start, self._pending_start = self._pending, self._pending_start, None
        if self.episode_id is None or (k == 0 and start is None and finish is None):
            return
        episode_id, steps = self.episode_id, None
        if k:
            buffers = (self._scalars[:k].copy(), self._actions[:k].copy(), self._values[:k].copy())
            steps = (
                episode_id,
                np.arange(self._step - k, self._step),
                self._start_prices,
                *buffers,
                self._trades[:k].copy(),
            )
            self._start_prices = self.state.prices[int(buffers[0][-1, 0])]
            self._pending = 0
        self._submit(lambda: self._store(episode_id, start, steps, finish))

    def _store(self, episode_id: str, start: dict | None, steps: tuple | None, finish: dict | None) -> None:
        """Write an episode's start row, step frames and closing update (each optional) in one transaction."""
        with self.engine.begin() as conn:
            if start is not None:
                rl_log.start_episode(conn, **start)
            if steps is not None:
                rl_log.write_steps(conn, *self._frames(*steps))
            if finish is not None:
                rl_log.finish_episode(conn, episode_id, **finish)

    def _frames(
        self,
        episode_id: str,
        steps: np.ndarray,
        start_prices: np.ndarray,
        scalars: np.ndarray,
        actions: np.ndarray,
        values: np.ndarray,
        trades: np.ndarray,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The step frames (actions, rewards, portfolio, holdings) of `steps` (K,) from the buffer copies
        (K, ...); runs on the writer thread."""
        index = self.state.panel.index
        s = pd.DataFrame(scalars, columns=SCALARS)
        bars = s["bar"].to_numpy(dtype=np.int64)
        net_worth = s["net_worth"].to_numpy()
        base = {"episode_id": episode_id, "step": steps}
        action_frame = pd.DataFrame(
            {
                **base,
                "ts": index[bars - 1],
                "action": actions.tolist(),
                "rebalanced": s["rebalanced"].to_numpy(dtype=bool),
            }
        )
        rewards = pd.DataFrame(
            {**base, **{c: s[c] for c in ("reward", "sharpe_term", "drawdown_penalty", "turnover_penalty")}}
        )
        portfolio = pd.DataFrame(
            {
                **base,
                "ts": index[bars],
                "gross_exposure": np.abs(values).sum(axis=1) / net_worth,
                **{c: s[c] for c in ("net_worth", "cash", "period_return", "drawdown", "turnover", "costs")},
            }
        )
        holdings = (
            self._holdings_frame(episode_id, steps, bars, start_prices, values, trades, net_worth)
            if self.holdings
            else _EMPTY
        )
        return action_frame, rewards, portfolio, holdings

    def _holdings_frame(
        self,
        episode_id: str,
        steps: np.ndarray,
        bars: np.ndarray,
        start_prices: np.ndarray,
        values: np.ndarray,
        trades: np.ndarray,
        net_worth: np.ndarray,
    ) -> pd.DataFrame:
        """Rows (step x symbol) with a position or a trade; P&L = shares x price move over the step."""
        state = self.state
        prices = state.prices[bars]
        before = np.vstack([start_prices[None, :], prices[:-1]])
        quantities = values / prices
        rows, cols = np.nonzero((values != 0.0) | (trades != 0.0))
        return pd.DataFrame(
            {
                "episode_id": episode_id,
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
        """Queue the open episode's (if any) remaining steps and its closing as `finished` or `incomplete`.

        Does not wait (training goes on while the writer stores them, in order: the closing update always
        follows the episode's last steps); `flush()` and `close()` wait."""
        if self.episode_id is None:
            return
        state = self.state
        summary = {
            "status": status,
            "steps": self._step,
            "end_ts": state.panel.index[state.t].to_pydatetime(),
            "final_net_worth": state.portfolio.net_worth,
            "total_reward": self._total_reward,
            "max_drawdown": self._max_drawdown,
            **fields,
        }
        self._flush_async(finish=summary)
        self.last_episode_id, self.episode_id = self.episode_id, None

    def _close_at_exit(self) -> None:
        """At interpreter exit: close the open episode as incomplete and wait for the writer."""
        self.close_episode("incomplete")
        if self._writer is not None:
            self._writer.wait()

    def _submit(self, job: Callable[[], None]) -> None:
        if self._writer is None:
            self._writer = _Writer()
        self._writer.submit(job)

    def close(self) -> None:
        try:
            self.close_episode("incomplete")
        finally:
            atexit.unregister(self._close_at_exit)
            if self._writer is not None:
                writer, self._writer = self._writer, None
                writer.stop()
        super().close()


_EMPTY = pd.DataFrame()
