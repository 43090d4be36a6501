"""The episode logger's writer process: turns buffered step arrays into rows and stores them.

Writing (frame building, Arrow conversion, SQL) runs in a child process (`python -m tt_rl.log_writer`), so
it uses the other core instead of holding the stepping process's GIL. One writer serves all the loggers of
a process that write to the same database. The parent sends jobs (pickled numpy arrays, framed by
`multiprocessing.connection`) over a pipe; the child runs them in order, each in one transaction, and
answers every job with None or the exception it raised. The database URL reaches the child through its
environment, never its command line. When the parent dies the child still stores every whole job in the
pipe, then sees end-of-file and exits: a hard kill of the parent loses only its unflushed buffer.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.db import rl_log
from tt_resources.db.engine import create_engine

URL_VARIABLE = "TT_LOG_WRITER_URL"
DEPTH_PER_LOGGER = 2  # jobs in flight per attached logger before a submit waits

# columns of the per-step scalar buffer (K, len(SCALARS))
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
_COLUMN = {name: j for j, name in enumerate(SCALARS)}


class LogWriter:
    """Parent end of one writer process; shared per (process, database URL) through `attach`/`detach`.

    Jobs are tagged with the submitting logger's key; a job's error is kept for that key and raised (once)
    by the key's next `submit` or `wait`."""

    _shared: ClassVar[dict[tuple[int, str], LogWriter]] = {}

    @classmethod
    def attach(cls, url: str) -> LogWriter:
        """The writer of this process for `url` (started on first use), with one more user."""
        key = (os.getpid(), url)
        writer = cls._shared.get(key)
        if writer is None:
            writer = cls._shared[key] = cls(url)
        writer._users += 1
        return writer

    def __init__(self, url: str) -> None:
        jobs_in, jobs_out = os.pipe()
        acks_in, acks_out = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tt_rl.log_writer", str(jobs_in), str(acks_out)],
            pass_fds=(jobs_in, acks_out),
            env={**os.environ, URL_VARIABLE: url},
        )
        os.close(jobs_in)
        os.close(acks_out)
        self._jobs = Connection(jobs_out, readable=False)
        self._acks = Connection(acks_in, writable=False)
        self._url = url
        self._users = 0
        self._in_flight = 0
        self._errors: dict[str, BaseException] = {}
        atexit.register(self.stop)

    def submit(self, key: str, job: tuple) -> None:
        """Queue `job` = (start fields | None, step arrays | None, finish fields | None) for logger `key`;
        waits while too many jobs are in flight. Raises `key`'s pending error, if any."""
        while self._acks.poll():
            self._receive()
        self._raise(key)
        while self._in_flight >= DEPTH_PER_LOGGER * max(self._users, 1):
            self._receive()
        try:
            self._jobs.send((key, job))
        except OSError:
            self._died()
        self._in_flight += 1

    def wait(self, key: str) -> None:
        """Return when every submitted job is stored; raises `key`'s pending error, if any."""
        while self._in_flight:
            self._receive()
        self._raise(key)

    def detach(self) -> None:
        """One user fewer; the last one stops the process."""
        self._users -= 1
        if self._users <= 0:
            self.stop()

    def stop(self) -> None:
        """Let the child finish the queued jobs and exit; wait for it."""
        if self._shared.get((os.getpid(), self._url)) is self:
            del self._shared[(os.getpid(), self._url)]
        atexit.unregister(self.stop)
        if not self._jobs.closed:
            while self._in_flight and self._process.poll() is None:
                self._receive()
            self._jobs.close()
            self._process.wait()
            self._acks.close()

    def _receive(self) -> None:
        try:
            key, error = self._acks.recv()
        except (EOFError, OSError):
            self._died()
        self._in_flight -= 1
        if error is not None:
            self._errors.setdefault(key, error)

    def _raise(self, key: str) -> None:
        error = self._errors.pop(key, None)
        if error is not None:
            raise error

    def _died(self) -> None:
        code = self._process.wait()
        self._in_flight = 0
        raise RuntimeError(f"episode log writer process exited with code {code}; unwritten steps are lost")


def step_arrays(state: Any, episode_id: str, first_step: int, start_prices: np.ndarray, **buffers) -> dict:
    """The payload for steps first_step.. of `episode_id`: the buffer copies (scalars (K, S), actions,
    values and optionally trades (K, N)) plus what row building needs from the env (timestamps, prices)."""
    scalars = buffers["scalars"]
    bars = scalars[:, _COLUMN["bar"]].astype(np.int64)
    index = state.panel.index
    payload = {
        "episode_id": episode_id,
        "first_step": first_step,
        "ts": index[bars],
        "decision_ts": index[bars - 1],
        **buffers,
    }
    if "trades" in buffers:
        payload.update(
            prices=state.prices[bars],
            start_prices=start_prices,
            symbols=np.asarray(state.panel.symbols, dtype=object),
            cost_rate=state.portfolio.cost_rate,
        )
    return payload


def step_frames(payload: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(actions, rewards, portfolio, holdings) rows of one payload; holdings is empty without trades."""
    scalars = payload["scalars"]
    k = len(scalars)
    column = {name: scalars[:, j] for name, j in _COLUMN.items()}
    values, net_worth = payload["values"], column["net_worth"]
    base = {"episode_id": payload["episode_id"], "step": np.arange(k) + payload["first_step"]}
    actions = pd.DataFrame(
        {
            **base,
            "ts": payload["decision_ts"],
            "action": list(payload["actions"]),  # rows: JSON-encoded in one pass
            "rebalanced": column["rebalanced"].astype(bool),
        }
    )
    rewards = pd.DataFrame(
        {**base, **{c: column[c] for c in ("reward", "sharpe_term", "drawdown_penalty", "turnover_penalty")}}
    )
    portfolio = pd.DataFrame(
        {
            **base,
            "ts": payload["ts"],
            "gross_exposure": np.abs(values).sum(axis=1) / net_worth,
            **{c: column[c] for c in ("net_worth", "cash", "period_return", "drawdown", "turnover", "costs")},
        }
    )
    holdings = _holdings(payload, base["step"], net_worth) if "trades" in payload else pd.DataFrame()
    return actions, rewards, portfolio, holdings


def _holdings(payload: dict, steps: np.ndarray, net_worth: np.ndarray) -> pd.DataFrame:
    """Rows (step x symbol) with a position or a trade; P&L = shares x price move over the step."""
    values, trades, prices = payload["values"], payload["trades"], payload["prices"]
    before = np.vstack([payload["start_prices"][None, :], prices[:-1]])
    quantities = values / prices
    rows, cols = np.nonzero((values != 0.0) | (trades != 0.0))
    return pd.DataFrame(
        {
            "episode_id": payload["episode_id"],
            "step": steps[rows],
            "symbol": payload["symbols"][cols],
            "weight": values[rows, cols] / net_worth[rows],
            "quantity": quantities[rows, cols],
            "price": prices[rows, cols],
            "value": values[rows, cols],
            "trade_value": trades[rows, cols],
            "cost": payload["cost_rate"] * np.abs(trades[rows, cols]),
            "pnl": quantities[rows, cols] * (prices[rows, cols] - before[rows, cols]),
        }
    )


def store(engine: sa.Engine, start: dict | None, steps: dict | None, finish: dict | None) -> None:
    """Write an episode's start row, step rows and closing update (each optional) in one transaction."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        if start is not None:
            rl_log.start_episode(conn, **start)
        if steps is not None:
            rl_log.write_steps(conn, *step_frames(steps))
        if finish is not None:
            rl_log.finish_episode(conn, finish.pop("episode_id"), **finish)


def _portable(error: BaseException) -> BaseException:
    """`error` if it survives pickling, else a RuntimeError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def main(jobs_fd: int, acks_fd: int) -> None:
    """Child: run jobs from `jobs_fd` until end-of-file, answering each on `acks_fd`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then closes us
    jobs, acks = Connection(jobs_fd, writable=False), Connection(acks_fd, readable=False)
    engine = create_engine(os.environ.pop(URL_VARIABLE))
    try:
        while True:
            try:
                key, job = jobs.recv()
            except EOFError:
                break
            try:
                store(engine, *job)
                error = None
            except Exception as exc:  # handed to the parent
                error = _portable(exc)
            acks.send((key, error))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
