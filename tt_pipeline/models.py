"""Training a model on a registered dataset and evaluating it on that same dataset's test period.

torch, Stable-Baselines3 and tensortrade are imported inside tt_rl's train/evaluate when these run.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tt_pipeline.datasets import DatasetError, load_dataset
from tt_rl.config import RLConfig


def train_model(
    engine: sa.Engine,
    dataset_version: str,
    config: RLConfig,
    *,
    run_id: str,
    model_dir: Path,
):
    """Train PPO on the training part (bars before split_ts) of the registered dataset and register the
    model in tt_model with that dataset_version; returns tt_rl.train.TrainedModel."""
    from tt_rl.train import train

    dataset = load_dataset(engine, dataset_version)
    train_panel, _ = dataset.panel.split(dataset.row["split_ts"])
    return train(
        train_panel,
        config,
        engine=engine,
        model_dir=model_dir,
        run_id=run_id,
        dataset_version=dataset_version,
    )


def evaluate_model(engine: sa.Engine, model_id: str, *, run_id: str):
    """Evaluate the registered model on its own dataset (the bars after its training span) with its own
    config, against the baselines; writes tt_eval and the test episodes. Returns tt_rl.evaluate.Evaluation.
    DatasetError when the model or its dataset is not registered."""
    from tt_resources.db import registry
    from tt_rl.evaluate import evaluate

    model = registry.model(engine, model_id)
    if model is None:
        raise DatasetError(f"model {model_id} is not registered in tt_model")
    dataset = load_dataset(engine, model["dataset_version"])
    config = RLConfig.from_dict(model["config"], source=f"model {model_id}")
    return evaluate(model["path"], dataset.panel, config, engine=engine, model_id=model_id, run_id=run_id)
