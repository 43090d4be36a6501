"""Small queries the assets and sensors need about what is already stored (SQLAlchemy Core).

Imported inside asset and sensor bodies only, keeping SQLAlchemy and pandas out of code-location loading.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.schema import datasets, evals, features, models


def last_feature_ts(engine: sa.Engine, symbol: str, timeframe: str) -> pd.Timestamp | None:
    """Start of the latest stored feature row of one partition, or None."""
    query = sa.select(sa.func.max(features.c.ts)).where(
        features.c.symbol == symbol, features.c.timeframe == timeframe
    )
    with engine.connect() as conn:
        value = conn.execute(query).scalar()
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")


def _latest(engine: sa.Engine, table: sa.Table, timeframe: str) -> dict[str, Any] | None:
    query = (
        sa.select(table).where(table.c.timeframe == timeframe).order_by(table.c.created_at.desc()).limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def latest_dataset(engine: sa.Engine, timeframe: str) -> dict[str, Any] | None:
    """The newest tt_dataset row of a timeframe (dataset_version, path, split_ts, ...), or None."""
    return _latest(engine, datasets, timeframe)


def latest_model(engine: sa.Engine, timeframe: str) -> dict[str, Any] | None:
    """The newest tt_model row of a timeframe (model_id, path, dataset_version, ...), or None."""
    return _latest(engine, models, timeframe)


def latest_ppo_sharpe(engine: sa.Engine, timeframe: str) -> tuple[str, float] | None:
    """(model_id, Sharpe) of the newest model's stitched out-of-sample PPO evaluation, or None."""
    model = latest_model(engine, timeframe)
    if model is None:
        return None
    query = (
        sa.select(evals.c.sharpe)
        .where(evals.c.model_id == model["model_id"], evals.c.policy == "ppo", evals.c.window == -1)
        .order_by(evals.c.created_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        sharpe = conn.execute(query).scalar()
    return None if sharpe is None else (model["model_id"], float(sharpe))


def record_dataset(engine: sa.Engine, row: dict[str, Any]) -> None:
    """Insert a tt_dataset row unless that dataset_version is already registered."""
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(datasets.c.dataset_version).where(datasets.c.dataset_version == row["dataset_version"])
        ).first()
        if exists is None:
            conn.execute(sa.insert(datasets), [row])


def latest_evaluation(engine: sa.Engine, timeframe: str) -> pd.DataFrame:
    """Stitched (window -1) metrics of the newest model of a timeframe, one row per policy (empty if none)."""
    model = latest_model(engine, timeframe)
    if model is None:
        return pd.DataFrame()
    query = (
        sa.select(evals)
        .where(evals.c.model_id == model["model_id"], evals.c.window == -1)
        .order_by(evals.c.created_at.desc())
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    return frame.drop_duplicates("policy") if len(frame) else frame
