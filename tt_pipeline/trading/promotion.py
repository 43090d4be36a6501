"""Promotion of a production model to champion of its timeframe, and demotion.

Only a production model (tt_model.production_of set: trained on the whole history with the configuration of
a walk-forward model) can be promoted, and only when that walk-forward model's newest evaluation says "skill
beyond the best baseline" (tt_eval's agent summary row: DSR of the excess returns over the best baseline >=
tt_rl.significance.SIGNIFICANT). `force` promotes without that verdict and requires a reason; both are
recorded. Challengers (production models of a retrained configuration) are promoted by hand: docs/trading.md.
"""

from __future__ import annotations

import getpass
import math

import sqlalchemy as sa

from tt_resources.db import registry
from tt_resources.db import trading as db
from tt_resources.terms import AGENT
from tt_rl.significance import SIGNIFICANT


class PromotionRefused(ValueError):
    """The model cannot be promoted: one line saying why and what would allow it."""


def who() -> str:
    """The OS user recorded with a promotion, a halt."""
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return "unknown"


def verdict_of(engine: sa.Engine, walk_forward_id: str) -> tuple[str | None, bool]:
    """(verdict line, whether it shows skill beyond the best baseline) of the walk-forward model's newest
    evaluation; (None, False) when it was never evaluated."""
    metrics = registry.stitched_metrics(engine, walk_forward_id)
    if not len(metrics) or not (metrics["policy"] == AGENT).any():
        return None, False
    row = metrics.loc[metrics["policy"] == AGENT].iloc[0]
    dsr = row.get("dsr_vs_best")
    skill = dsr is not None and math.isfinite(float(dsr)) and float(dsr) >= SIGNIFICANT
    return row.get("verdict"), skill


def promote(engine: sa.Engine, model_id: str, *, reason: str | None = None, force: bool = False) -> dict:
    """Make the production model `model_id` the champion of its timeframe (a tt_promotion row; returned).
    PromotionRefused when it is not a production model, its evaluation shows no skill beyond the best
    baseline (unless `force`, which needs a `reason`), or it is the champion already."""
    model = registry.model(engine, model_id)
    if model is None:
        raise PromotionRefused(f"model {model_id} is not registered in tt_model")
    source = model["production_of"]
    if source is None:
        raise PromotionRefused(
            f"model {model_id} is not a production model: train one from its walk-forward evaluation "
            "(tt_pipeline.models.train_production) and promote that"
        )
    if force and not (reason or "").strip():
        raise PromotionRefused("--force needs --reason: why this model trades without the verdict")
    verdict, skill = verdict_of(engine, source)
    if not skill and not force:
        shown = (verdict or "it was never evaluated").rstrip(".")
        raise PromotionRefused(
            f"model {model_id} cannot be promoted: the evaluation of {source} does not show skill beyond the "
            f"best baseline ({shown}); --force --reason TEXT overrides, recorded"
        )
    if db.champion(engine, model["timeframe"]) == model_id:
        raise PromotionRefused(f"model {model_id} is the {model['timeframe']} champion already")
    return db.record_promotion(
        engine,
        timeframe=model["timeframe"],
        model_id=model_id,
        who=who(),
        reason=reason,
        verdict=verdict,
        forced=force and not skill,
    )


def demote(engine: sa.Engine, timeframe: str, *, reason: str, who_: str | None = None) -> dict:
    """Leave `timeframe` without a champion (a tt_promotion row naming the one demoted); PromotionRefused
    when there is none."""
    if db.champion(engine, timeframe) is None:
        raise PromotionRefused(f"the {timeframe} timeframe has no champion to demote")
    return db.record_promotion(engine, timeframe=timeframe, model_id=None, who=who_ or who(), reason=reason)
