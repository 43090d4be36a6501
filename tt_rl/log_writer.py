"""The episode logger's writer process: turns buffered step arrays into rows and stores them.

Writing (building Arrow tables from the arrays, SQL) runs in a child process (`python -m tt_rl.log_writer`),
so it uses the other core instead of holding the stepping process's GIL. One writer serves every logger of
a process for the process's lifetime (an interpreter started per episode cost seconds each:
`eval_episode_s_*` in bench/results/env_speed.json). The parent sends jobs (pickled, their numpy arrays
out of band, framed by `multiprocessing.connection`) over a pipe; the child runs them in order, each in one
transaction, and answers every job with None or the exception it raised. A job names its database URL, so the URL never
appears on the child's command line or in its environment. When the parent dies the child still stores
every whole job in the pipe, then sees end-of-file and exits: a hard kill of the parent loses only its
unflushed buffer.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pickle
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from tt_resources.db import rl_log
from tt_resources.db.bulk import float_array, json_arrays
from tt_resources.db.engine import create_engine
from tt_rl.record import COLUMN

DEPTH_PER_LOGGER = 4  # jobs in flight per attached logger before a submit waits
PIPE_BYTES = 1 << 20  # the job pipe's buffer: Linux's default limit for unprivileged processes


class LogWriter:
    """Parent end of this process's writer process, shared by its loggers through `attach`/`detach`.

    Jobs are tagged with the submitting logger's key; a job's error is kept for that key and raised (once)
    by the key's next `submit` or `wait`. The process is stopped at interpreter exit."""

    _shared: ClassVar[dict[int, LogWriter]] = {}

    @classmethod
    def attach(cls, key: str, url: str) -> LogWriter:
        """The writer of this process (started on first use, or again after it died), storing logger
        `key`'s jobs in the database at `url`."""
        writer = cls._shared.get(os.getpid())
        if writer is None or writer._process.poll() is not None:
            writer = cls._shared[os.getpid()] = cls()
        writer._urls[key] = url
        return writer

    def __init__(self) -> None:
        jobs_in, jobs_out = os.pipe()
        _widen(jobs_out)
        acks_in, acks_out = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tt_rl.log_writer", str(jobs_in), str(acks_out)],
            pass_fds=(jobs_in, acks_out),
        )
        os.close(jobs_in)
        os.close(acks_out)
        self._jobs = Connection(jobs_out, readable=False)
        self._acks = Connection(acks_in, writable=False)
        self._urls: dict[str, str] = {}  # attached logger key -> its database URL
        self._in_flight = 0
        self._errors: dict[str, BaseException] = {}
        atexit.register(self.stop)

    def submit(self, key: str, job: tuple) -> None:
        """Queue `job` = (start fields | None, step arrays | None, finish fields | None) for logger `key`;
        waits while too many jobs are in flight. Raises `key`'s pending error, if any."""
        while self._acks.poll():
            self._receive()
        self._raise(key)
        while self._in_flight >= DEPTH_PER_LOGGER * max(len(self._urls), 1):
            self._receive()
        try:
            _send(self._jobs, (key, self._urls[key], job))
        except OSError:
            self._died()
        self._in_flight += 1

    def wait(self, key: str) -> None:
        """Return when every submitted job is stored; raises `key`'s pending error, if any."""
        while self._in_flight:
            self._receive()
        self._raise(key)

    def detach(self, key: str) -> None:
        """Logger `key` is done (its jobs were waited for); the process stays for the next logger."""
        self._urls.pop(key, None)
        self._errors.pop(key, None)

    def stop(self) -> None:
        """Let the child finish the queued jobs and exit; wait for it."""
        if self._shared.get(os.getpid()) is self:
            del self._shared[os.getpid()]
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


def _send(connection: Connection, message: Any) -> None:
    """Pickle `message` with its numpy arrays out of band: the head goes first, then each array's memory is
    written to the pipe as it is (an in-band pickle copies it three times)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    connection.send_bytes(len(buffers).to_bytes(4, "little") + head)
    for buffer in buffers:
        connection.send_bytes(buffer.raw())


def _receive(connection: Connection) -> Any:
    """The next message sent by `_send` (EOFError when the other end closed)."""
    frame = connection.recv_bytes()
    buffers = [connection.recv_bytes() for _ in range(int.from_bytes(frame[:4], "little"))]
    return pickle.loads(memoryview(frame)[4:], buffers=buffers)


def _widen(pipe_fd: int) -> None:
    """Grow a pipe's buffer to PIPE_BYTES where the OS allows (Linux), so sending a job (~200-400 KB)
    copies it into the pipe at once instead of waiting, 64 KB at a time, for the child to read."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size
        fcntl.fcntl(pipe_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def step_arrays(state: Any, episode_id: str, first_step: int, start_prices: np.ndarray, **buffers) -> dict:
    """The payload for steps first_step.. of `episode_id`: the buffer copies (scalars (K, S), actions,
    values and optionally trades (K, N)) plus what row building needs from the env (bar times as int64 ns
    since the epoch, UTC; prices). Only numpy arrays and plain values: they pickle at memcpy speed."""
    scalars = buffers["scalars"]
    bars = scalars[:, COLUMN["bar"]].astype(np.int64)
    stamps = state.panel.index.asi8
    payload = {
        "episode_id": episode_id,
        "first_step": first_step,
        "ts": stamps[bars],
        "decision_ts": stamps[bars - 1],
        **buffers,
    }
    if "trades" in buffers:
        payload.update(
            prices=state.prices[bars],
            start_prices=start_prices,
            symbols=list(state.panel.symbols),
            cost_rate=state.portfolio.cost_rate,
        )
    return payload


def step_tables(payload: dict) -> dict[str, pa.Table]:
    """Rows of one payload by table name (tt_action, tt_reward, tt_portfolio, and tt_holdings when it has
    trades), as Arrow tables built column by column from the arrays (no per-row Python work)."""
    scalars = payload["scalars"]
    k = len(scalars)
    column = {
        name: float_array(scalars[:, j]) for name, j in COLUMN.items() if name not in ("bar", "rebalanced")
    }
    values, net_worth = payload["values"], scalars[:, COLUMN["net_worth"]]
    base = {
        "episode_id": _repeated(payload["episode_id"], k),
        "step": pa.array(np.arange(k, dtype=np.int64) + payload["first_step"]),
    }
    tables = {
        "tt_action": pa.table(
            {
                **base,
                "ts": _timestamps(payload["decision_ts"]),
                "action": json_arrays(payload["actions"]),
                "rebalanced": pa.array(scalars[:, COLUMN["rebalanced"]] != 0.0),
            }
        ),
        "tt_reward": pa.table(
            {
                **base,
                **{c: column[c] for c in ("reward", "sharpe_term", "drawdown_penalty", "turnover_penalty")},
            }
        ),
        "tt_portfolio": pa.table(
            {
                **base,
                "ts": _timestamps(payload["ts"]),
                **{c: column[c] for c in ("net_worth", "cash")},
                "gross_exposure": float_array(np.abs(values).sum(axis=1) / net_worth),
                **{c: column[c] for c in ("period_return", "drawdown", "turnover", "costs")},
            }
        ),
    }
    if "trades" in payload:
        tables["tt_holdings"] = _holdings(payload, net_worth)
    return tables


def _holdings(payload: dict, net_worth: np.ndarray) -> pa.Table:
    """Rows (step x symbol) with a position or a trade; P&L = shares x price move over the step."""
    values, trades, prices = payload["values"], payload["trades"], payload["prices"]
    before = np.vstack([payload["start_prices"][None, :], prices[:-1]])
    quantities = values / prices
    rows, cols = np.nonzero((values != 0.0) | (trades != 0.0))
    return pa.table(
        {
            "episode_id": _repeated(payload["episode_id"], len(rows)),
            "step": pa.array(rows + payload["first_step"]),
            "symbol": pa.DictionaryArray.from_arrays(
                pa.array(cols.astype(np.int32)), pa.array(payload["symbols"], type=pa.string())
            ),
            "weight": float_array(values[rows, cols] / net_worth[rows]),
            "quantity": float_array(quantities[rows, cols]),
            "price": float_array(prices[rows, cols]),
            "value": float_array(values[rows, cols]),
            "trade_value": float_array(trades[rows, cols]),
            "cost": float_array(payload["cost_rate"] * np.abs(trades[rows, cols])),
            "pnl": float_array(quantities[rows, cols] * (prices[rows, cols] - before[rows, cols])),
        }
    )


def _timestamps(nanoseconds: np.ndarray) -> pa.Array:
    """int64 ns since the epoch as Arrow timestamp[us, UTC] (the database layer's unit)."""
    return pa.array(nanoseconds // 1000, type=pa.timestamp("us", tz="UTC"))


def _repeated(text: str, k: int) -> pa.DictionaryArray:
    """`text` k times, stored once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(k, dtype=np.int32)), pa.array([text]))


def store(engine: sa.Engine, start: dict | None, steps: dict | None, finish: dict | None) -> None:
    """Write an episode's start row, step rows and closing update (each optional) in one transaction."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        if start is not None:
            rl_log.start_episode(conn, **start)
        if steps is not None:
            rl_log.write_steps(conn, steps["episode_id"], step_tables(steps))
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
    """Child: run jobs from `jobs_fd` until end-of-file, answering each on `acks_fd`. Keeps an engine on
    the latest job's database only (a process's loggers write to one database, one after another in tests)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then closes us
    jobs, acks = Connection(jobs_fd, writable=False), Connection(acks_fd, readable=False)
    engine: sa.Engine | None = None
    url = None
    try:
        while True:
            try:
                key, job_url, job = _receive(jobs)
            except EOFError:
                break
            try:
                if job_url != url:
                    if engine is not None:
                        engine.dispose()
                    engine, url = create_engine(job_url), job_url
                store(engine, *job)
                error = None
            except Exception as exc:  # handed to the parent
                error = _portable(exc)
            acks.send((key, error))
    finally:
        if engine is not None:
            engine.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
