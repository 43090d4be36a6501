"""RL bookkeeping writes: episodes and their per-step logs, model registrations, evaluation rows.

Step logs go through `bulk.insert_table` (COPY on PostgreSQL) inside one transaction per flush, which also
advances the episode's `steps` so the row always describes exactly what is stored. Episode status moves
running -> finished | incomplete; a process that dies hard leaves `running`, never `finished`, and
`mark_stale_episodes` turns such rows into `incomplete`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from tt_resources.db.bulk import insert_frame, insert_table
from tt_resources.db.schema import actions, episodes, evals, holdings, models, portfolio, rewards

STATUSES = ("running", "finished", "incomplete")
STEP_TABLES = {table.name: table for table in (actions, rewards, portfolio, holdings)}


def _now() -> datetime:
    return datetime.now(UTC)


def _check_fields(table: sa.Table, fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")


def start_episode(engine: sa.Engine | sa.Connection, **fields: Any) -> str:
    """Insert a `running` tt_episode row (split and policy required) and return its episode_id."""
    row = {"episode_id": uuid.uuid4().hex, "status": "running", "started_at": _now(), "steps": 0, **fields}
    _check_fields(episodes, row)
    with _begin(engine) as conn:
        conn.execute(sa.insert(episodes).values(**row))
    return row["episode_id"]


def write_steps(engine: sa.Engine | sa.Connection, episode_id: str, tables: Mapping[str, pa.Table]) -> int:
    """Append one episode's step rows (Arrow tables by name: tt_action, tt_reward, tt_portfolio and
    optionally tt_holdings) in one transaction and set the episode's `steps` to its highest stored portfolio
    step + 1. Returns the number of portfolio rows."""
    unknown = sorted(set(tables) - set(STEP_TABLES))
    if unknown:
        raise ValueError(f"not a step log table: {', '.join(unknown)}")
    with _begin(engine) as conn:
        for name, data in tables.items():
            insert_table(conn, STEP_TABLES[name], data)
        stored = tables.get(portfolio.name)
        if stored is not None and stored.num_rows:
            last = pc.max(stored.column("step")).as_py()
            conn.execute(
                sa.update(episodes).where(episodes.c.episode_id == episode_id).values(steps=int(last) + 1)
            )
    return 0 if stored is None else stored.num_rows


def finish_episode(engine: sa.Engine | sa.Connection, episode_id: str, status: str, **fields: Any) -> None:
    """Close an episode as `finished` or `incomplete` with its summary fields (final_net_worth, ...)."""
    if status not in STATUSES[1:]:
        raise ValueError(f"episode status must be finished or incomplete, not {status!r}")
    values = {"status": status, "finished_at": _now(), **fields}
    _check_fields(episodes, values)
    with _begin(engine) as conn:
        conn.execute(sa.update(episodes).where(episodes.c.episode_id == episode_id).values(**values))


def mark_stale_episodes(
    engine: sa.Engine | sa.Connection, *, run_id: str | None = None, model_id: str | None = None
) -> int:
    """Turn `running` episodes (of `run_id` and/or `model_id`, or all) into `incomplete`; call only when no
    writer of them is alive (e.g. when resuming a crashed training run)."""
    stmt = sa.update(episodes).where(episodes.c.status == "running")
    if run_id is not None:
        stmt = stmt.where(episodes.c.run_id == run_id)
    if model_id is not None:
        stmt = stmt.where(episodes.c.model_id == model_id)
    with _begin(engine) as conn:
        return conn.execute(stmt.values(status="incomplete", finished_at=_now())).rowcount


def register_model(engine: sa.Engine | sa.Connection, **fields: Any) -> str:
    """Insert a tt_model row (timeframe, path, config required); returns model_id (generated when absent)."""
    row = {"model_id": uuid.uuid4().hex, "algo": "PPO", "created_at": _now(), **fields}
    _check_fields(models, row)
    with _begin(engine) as conn:
        conn.execute(sa.insert(models).values(**row))
    return row["model_id"]


def write_eval(engine: sa.Engine | sa.Connection, frame: pd.DataFrame) -> int:
    """Append evaluation rows (one per policy x window) to tt_eval; `created_at` defaults to now."""
    if "created_at" not in frame.columns:
        frame = frame.assign(created_at=_now())
    return insert_frame(engine, evals, frame)


@contextmanager
def _begin(target: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A transaction on an Engine, or the caller's Connection as is."""
    if isinstance(target, sa.Engine):
        with target.begin() as conn:
            yield conn
    else:
        yield target
