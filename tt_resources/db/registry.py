"""The dataset and model registry: tt_dataset, tt_model (walk-forward models and their folds' models) and the
stitched rows of tt_eval (SQLAlchemy Core).

Every caller resolves the exact row it uses by its id (dataset_version, model_id); nothing here guesses
"the latest" of a timeframe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.schema import datasets, evals, models


def record_dataset(engine: sa.Engine, row: dict[str, Any]) -> bool:
    """Insert a tt_dataset row unless its dataset_version is registered already; True when inserted."""
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(datasets.c.dataset_version).where(datasets.c.dataset_version == row["dataset_version"])
        ).first()
        if exists is None:
            conn.execute(sa.insert(datasets), [row])
    return exists is None


@contextmanager
def dataset_lock(engine: sa.Engine, dataset_version: str) -> Iterator[None]:
    """Hold the retraining lock of `dataset_version` (waiting for it): one process at a time decides whether
    to retrain on the dataset and trains, so a second one finds the first's model instead of training the same
    folds again. PostgreSQL: a session advisory lock (released when the holder's connection ends, a killed
    process included); SQLite: a file lock beside the database file (one machine, as the file itself)."""
    key = f"tt_dataset:{dataset_version}"
    if engine.url.get_backend_name() == "postgresql":
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": number})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": number})
                conn.commit()
        return
    if not engine.url.database or engine.url.database == ":memory:":  # no other process sees this database
        yield
        return
    from filelock import FileLock

    with FileLock(f"{Path(engine.url.database)}.{dataset_version}.lock"):
        yield


def discard_group(engine: sa.Engine, group_id: str) -> int:
    """Delete the folds' models registered under the walk-forward model `group_id` that has no row of its own
    (a group whose training failed half-way), in one transaction; their training episodes still running are
    marked incomplete. Returns the fold models deleted."""
    from tt_resources.db.rl_log import mark_stale_episodes

    with engine.begin() as conn:
        if conn.execute(sa.select(models.c.model_id).where(models.c.model_id == group_id)).first():
            return 0
        members = conn.execute(sa.select(models.c.model_id).where(models.c.group_id == group_id)).scalars()
        for member in list(members):
            mark_stale_episodes(conn, model_id=member)
        return conn.execute(sa.delete(models).where(models.c.group_id == group_id)).rowcount


def _one(engine: sa.Engine, query: sa.Select) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def dataset(engine: sa.Engine, dataset_version: str) -> dict[str, Any] | None:
    """The tt_dataset row of `dataset_version` (path, split_ts, symbols, ...), or None."""
    return _one(engine, sa.select(datasets).where(datasets.c.dataset_version == dataset_version))


def model(engine: sa.Engine, model_id: str) -> dict[str, Any] | None:
    """The tt_model row of `model_id` (path, dataset_version, code_version, config, ...), or None."""
    return _one(engine, sa.select(models).where(models.c.model_id == model_id))


def models_on_dataset(engine: sa.Engine, dataset_version: str) -> list[dict[str, Any]]:
    """Every walk-forward model (tt_model row without group_id) trained on `dataset_version`, oldest first."""
    query = (
        sa.select(models)
        .where(
            models.c.dataset_version == dataset_version,
            models.c.group_id.is_(None),
            models.c.production_of.is_(None),
        )
        .order_by(models.c.created_at, models.c.model_id)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def models_overlapping(engine: sa.Engine, model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every walk-forward model on the same timeframe and symbols as the tt_model row `model` whose span
    (train_start .. test_end) overlaps its span, `model` included, oldest first: the configurations tried
    on overlapping data (tt_pipeline.models counts them as the DSR's trials)."""
    query = (
        sa.select(models)
        .where(
            models.c.group_id.is_(None),
            models.c.production_of.is_(None),
            models.c.timeframe == model["timeframe"],
            models.c.train_start <= model["test_end"],
            models.c.test_end >= model["train_start"],
        )
        .order_by(models.c.created_at, models.c.model_id)
    )
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    return [row for row in rows if sorted(row["symbols"] or []) == sorted(model["symbols"] or [])]


def fold_models(engine: sa.Engine, group_id: str) -> list[dict[str, Any]]:
    """The tt_model rows of the walk-forward model `group_id`'s folds, by fold then seed (newest registration
    of a (fold, seed) only)."""
    query = (
        sa.select(models)
        .where(models.c.group_id == group_id)
        .order_by(models.c.fold, models.c.seed, models.c.created_at.desc())
    )
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    newest = {}
    for row in rows:
        newest.setdefault((row["fold"], row["seed"]), row)
    return list(newest.values())


def stitched_metrics(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    """The newest evaluation of the walk-forward model `model_id` over all its folds stitched, summarised over
    the seeds (fold -1, seed -1): one row per policy (empty frame when the model has not been evaluated)."""
    query = (
        sa.select(evals)
        .where(evals.c.model_id == model_id, evals.c.fold == -1, evals.c.seed == -1)
        .order_by(evals.c.created_at.desc(), evals.c.eval_id.desc())
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    return frame.drop_duplicates("policy").reset_index(drop=True) if len(frame) else frame
