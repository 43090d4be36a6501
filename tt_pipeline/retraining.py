"""When to retrain a timeframe's model: the one decision behind the retraining sensor and `tt demo`.

Two rules, each firing once per cause:
- new dataset: no model has been trained on the current dataset version yet;
- Sharpe: the newest model on the current dataset scores a stitched out-of-sample Sharpe below the
  threshold, and no model exists yet for (dataset version, code version, config). A retrain with all three
  unchanged would reproduce the same model (same seed, same data), so it never fires twice for them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tt_resources.terms import AGENT

# settings that change how training is shown, not what it learns
PRESENTATION = {
    "ppo": ("progress_bar",),
    "logging": ("log_training", "training_episodes", "flush_every", "holdings_in_training"),
}


@dataclass(frozen=True)
class RetrainRequest:
    """A reason to retrain `timeframe` and the run key that makes the request unique for its cause."""

    timeframe: str
    reason: str
    run_key: str


def config_key(config: dict[str, Any]) -> str:
    """Hash (hex, 12 chars) of an RLConfig dict, presentation settings left out."""
    learned = {
        section: {k: v for k, v in values.items() if k not in PRESENTATION.get(section, ())}
        for section, values in config.items()
    }
    return hashlib.sha256(json.dumps(learned, sort_keys=True).encode()).hexdigest()[:12]


def retrain_request(
    engine: sa.Engine,
    timeframe: str,
    dataset_version: str,
    *,
    min_sharpe: float,
    config: dict[str, Any],
) -> RetrainRequest | None:
    """The request to retrain on `dataset_version` with `config` (RLConfig dict), or None (see module doc)."""
    from tt_resources.db import registry
    from tt_rl.train import code_version

    trained = registry.models_on_dataset(engine, dataset_version)
    if not trained:
        return RetrainRequest(timeframe, "new dataset", f"{timeframe}:dataset:{dataset_version}")
    metrics = registry.stitched_metrics(engine, trained[-1]["model_id"])
    ppo = metrics.loc[metrics["policy"] == AGENT, "sharpe"] if len(metrics) else []
    sharpe = float(ppo.iloc[0]) if len(ppo) else math.nan
    if not sharpe < min_sharpe:  # not evaluated yet, NaN, or good enough
        return None
    code, settings = code_version(), config_key(config)
    if any(m["code_version"] == code and config_key(m["config"]) == settings for m in trained):
        return None
    return RetrainRequest(
        timeframe,
        f"Sharpe {sharpe:.2f} < {min_sharpe:g}",
        f"{timeframe}:sharpe:{dataset_version}:{code}:{settings}",
    )
