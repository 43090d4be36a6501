"""Walk-forward training and evaluation of a configuration on a registered dataset.

A walk-forward model is one configuration on one dataset: `eval.n_folds` folds (tt_rl.walk_forward) over the
dataset's test period, `eval.seeds` PPO models per fold, each trained on its fold's training bars. The work
is split into pure jobs so that folds x seeds can run as separate steps: `plan_walk_forward` (the model's id
and its (fold, seed) jobs), `train_fold` (one job's model), the gather step `register_walk_forward`;
`score_fold_model` (a fold's model on its test window), `score_fold_policies` (baselines and oracle on one
fold) and the gather step `gather_evaluation` (stitch, significance, tt_eval). Dagster's ppo_model runs each
training job as its own step (tt_assets.models); `train_walk_forward` and `evaluate_model` run the jobs one
after the other.

tt_model holds the walk-forward model (no group_id: what tt_eval, retraining and the dashboard name) and one
row per (fold, seed) model naming it in group_id, with its training and test spans.
torch, Stable-Baselines3 and tensortrade are imported inside tt_rl's train/evaluate when these run.
"""

from __future__ import annotations

import contextlib
import copy
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tt_pipeline.datasets import Dataset, DatasetError, load_dataset
from tt_rl.config import RLConfig
from tt_rl.walk_forward import Fold, plan_folds


@dataclass(frozen=True)
class FoldJob:
    """One (fold, seed) training job of a walk-forward plan; `number` counts the plan's jobs from 1."""

    fold: int
    seed: int
    number: int

    @property
    def key(self) -> str:
        """The job's name, e.g. "fold0_seed1" (a Dagster mapping key)."""
        return f"fold{self.fold}_seed{self.seed}"


@dataclass(frozen=True)
class WalkForwardPlan:
    """What a walk-forward model trains: its id `group_id`, the registered dataset, the configuration and
    the (fold, seed) jobs, by fold then seed."""

    group_id: str
    dataset_version: str
    config: RLConfig
    jobs: list[FoldJob]


@dataclass(frozen=True)
class WalkForwardModel:
    """A trained walk-forward model: its id, its folds' models (tt_rl.train.TrainedModel, by fold then
    seed), timesteps over all of them and training seconds summed over them."""

    model_id: str
    members: list
    total_timesteps: int
    seconds: float


def folds(dataset: Dataset, config: RLConfig) -> list[Fold]:
    """The walk-forward folds of `dataset` (its test period starts at split_ts) under `config`'s eval
    settings; DatasetError when the dataset is too short for them."""
    panel = dataset.panel
    first_test = int(panel.index.searchsorted(dataset.row["split_ts"], side="left"))
    try:
        return plan_folds(
            len(panel),
            max(first_test, config.env.window_size - 1),
            config.eval.n_folds,
            embargo=config.embargo,
            min_train=config.env.window_size + 2,
            scheme=config.eval.scheme,
        )
    except ValueError as exc:
        raise DatasetError(f"dataset {dataset.version}: {exc}") from None


def seeds(config: RLConfig) -> list[int]:
    """The PPO seeds of each fold: ppo.seed, ppo.seed + 1, ... (eval.seeds of them)."""
    return [config.ppo.seed + i for i in range(config.eval.seeds)]


def plan_walk_forward(engine: sa.Engine, dataset_version: str, config: RLConfig) -> WalkForwardPlan:
    """Plan the walk-forward model of `config` on the registered dataset under a new id: one job per fold
    and seed. RLConfigError for an invalid config, DatasetError when the dataset is too short for the folds."""
    config.check()
    spans = folds(load_dataset(engine, dataset_version), config)
    pairs = [(span.index, seed) for span in spans for seed in seeds(config)]
    jobs = [FoldJob(fold, seed, number) for number, (fold, seed) in enumerate(pairs, start=1)]
    return WalkForwardPlan(uuid.uuid4().hex[:16], dataset_version, copy.deepcopy(config), jobs)


def train_fold(
    engine: sa.Engine,
    plan: WalkForwardPlan,
    job: FoldJob,
    *,
    run_id: str,
    model_dir: Path,
    callbacks: list | None = None,
):
    """One (fold, seed) job: train PPO with the job's seed on its fold's training bars of the plan's dataset
    and register it in tt_model under the walk-forward model plan.group_id with its training and test
    spans. A job already registered under the plan (a re-run after a crash) is returned as registered, not
    trained again. Returns tt_rl.train.TrainedModel."""
    from tt_rl.train import train

    done = _registered_fold(engine, plan.group_id, job)
    if done is not None:
        return done
    dataset = load_dataset(engine, plan.dataset_version)
    span = folds(dataset, plan.config)[job.fold]
    seeded = copy.deepcopy(plan.config)
    seeded.ppo.seed = job.seed
    index = dataset.panel.index
    return train(
        dataset.panel.slice(span.train_start, span.train_stop),
        seeded,
        engine=engine,
        model_dir=model_dir,
        run_id=run_id,
        dataset_version=plan.dataset_version,
        callbacks=callbacks,
        registry_fields={
            "group_id": plan.group_id,
            "fold": job.fold,
            "seed": job.seed,
            "test_start": index[span.test_start].to_pydatetime(),
            "test_end": index[span.test_end].to_pydatetime(),
        },
    )


def _registered_fold(engine: sa.Engine, group_id: str, job: FoldJob):
    """The tt_rl.train.TrainedModel of `job` already registered under `group_id`, or None."""
    from tt_resources.db import registry

    for row in registry.fold_models(engine, group_id):
        if (row["fold"], row["seed"]) == (job.fold, job.seed):
            return _trained(row)
    return None


def _trained(row: dict):
    """The tt_rl.train.TrainedModel of a registered tt_model row (training seconds from its train metrics)."""
    from tt_rl.train import TrainedModel

    metrics = row["train_metrics"] or {}
    return TrainedModel(
        row["model_id"], Path(row["path"]), metrics, row["total_timesteps"], metrics.get("seconds", 0.0)
    )


def register_walk_forward(
    engine: sa.Engine, plan: WalkForwardPlan, members: list, *, run_id: str, model_dir: Path
) -> WalkForwardModel:
    """Register the walk-forward model plan.group_id (tt_model row without group_id) once its jobs' models
    `members` (TrainedModel, by fold then seed) are trained: training span of the first to the last fold,
    test period. Registering it again (a re-run after a crash) leaves the existing row as it is."""
    from tt_resources.db import registry, rl_log
    from tt_rl.train import code_version

    timesteps = sum(m.total_timesteps for m in members)
    trained = WalkForwardModel(plan.group_id, members, timesteps, sum(m.seconds for m in members))
    if registry.model(engine, plan.group_id) is not None:
        return trained
    dataset = load_dataset(engine, plan.dataset_version)
    spans = folds(dataset, plan.config)
    index = dataset.panel.index
    rl_log.register_model(
        engine,
        model_id=plan.group_id,
        timeframe=dataset.panel.timeframe,
        path=str(model_dir),
        dataset_version=plan.dataset_version,
        code_version=code_version(),
        symbols=list(dataset.panel.symbols),
        config=plan.config.to_dict(),
        train_metrics={
            "folds": len(spans),
            "seeds": plan.config.eval.seeds,
            "members": [m.model_id for m in members],
            "timesteps": timesteps,
            "seconds": round(trained.seconds, 3),
        },
        total_timesteps=timesteps,
        train_start=index[spans[0].train_start].to_pydatetime(),
        train_end=index[spans[-1].train_stop - 1].to_pydatetime(),
        test_start=index[spans[0].test_start].to_pydatetime(),
        test_end=index[spans[-1].test_end].to_pydatetime(),
        run_id=run_id,
    )
    return trained


def train_walk_forward(
    engine: sa.Engine,
    dataset_version: str,
    config: RLConfig,
    *,
    run_id: str,
    model_dir: Path,
    progress: Callable[[FoldJob, int], None] | None = None,
) -> WalkForwardModel:
    """Plan the walk-forward model of `config` on the registered dataset, train its (fold, seed) jobs one
    after the other and register it (the in-process path; Dagster's ppo_model runs the jobs as steps). A
    failure leaves no fold model of the unregistered group behind (registry.discard_group). `progress(job,
    timesteps)` is called as each job trains (tt_rl.train.progress_callback)."""
    from tt_resources.db import registry
    from tt_rl.train import progress_callback

    def callbacks(job: FoldJob) -> list | None:
        return [progress_callback(lambda steps: progress(job, steps))] if progress else None

    plan = plan_walk_forward(engine, dataset_version, config)
    try:
        members = [
            train_fold(engine, plan, job, run_id=run_id, model_dir=model_dir, callbacks=callbacks(job))
            for job in plan.jobs
        ]
        return register_walk_forward(engine, plan, members, run_id=run_id, model_dir=model_dir)
    except BaseException:
        with contextlib.suppress(sa.exc.SQLAlchemyError):  # the training's error is the one to tell
            registry.discard_group(engine, plan.group_id)
        raise


def _walk_forward(engine: sa.Engine, model_id: str) -> tuple[dict, Dataset, RLConfig, list[Fold]]:
    """(tt_model row, dataset, config, folds) of the walk-forward model `model_id`; DatasetError when it is
    not registered or has no folds' models."""
    from tt_resources.db import registry

    model = registry.model(engine, model_id)
    if model is None:
        raise DatasetError(f"model {model_id} is not registered in tt_model")
    if model["group_id"] is not None:
        raise DatasetError(
            f"model {model_id} is fold {model['fold']} of walk-forward model {model['group_id']}"
        )
    dataset = load_dataset(engine, model["dataset_version"])
    config = RLConfig.from_dict(model["config"], source=f"model {model_id}")
    return model, dataset, config, folds(dataset, config)


def score_fold_model(engine: sa.Engine, fold_model_id: str, *, run_id: str):
    """One (fold, seed) job: the fold's model on its test window (tt_rl.evaluate.PolicyRun); logs the test
    episode."""
    from tt_resources.db import registry
    from tt_rl.evaluate import score_model

    member = registry.model(engine, fold_model_id)
    if member is None or member["group_id"] is None:
        raise DatasetError(f"model {fold_model_id} is not a walk-forward fold's model in tt_model")
    _, dataset, config, spans = _walk_forward(engine, member["group_id"])
    return score_model(
        member["path"],
        dataset.panel,
        config,
        spans[member["fold"]],
        seed=member["seed"],
        engine=engine,
        model_id=fold_model_id,
        run_id=run_id,
    )


def score_fold_policies(engine: sa.Engine, model_id: str, fold: int, *, run_id: str) -> list:
    """One fold's job for the policies without a model: the baselines and, when eval.oracle names one, the
    planted market's oracle (policy "oracle") on the fold's test window (their episodes logged), and the
    baselines on its training span (not logged: they choose the fold's best baseline)."""
    from tt_rl.baselines import BASELINES
    from tt_rl.evaluate import TRAIN, score_policies

    _, dataset, config, spans = _walk_forward(engine, model_id)
    panel = dataset.panel
    runs = score_policies(
        panel, config, spans[fold], policies(config), engine=engine, model_id=model_id, run_id=run_id
    )
    return runs + score_policies(panel, config, spans[fold], BASELINES, span=TRAIN)


def policies(config: RLConfig) -> dict:
    """The weight policies scored beside the agent: the baselines, then the oracle when eval.oracle names
    one."""
    from tt_resources.terms import ORACLE
    from tt_rl.baselines import BASELINES

    chosen = dict(BASELINES)
    if config.eval.oracle is not None:
        from tt_rl.planted import ORACLES

        chosen[ORACLE] = ORACLES[config.eval.oracle]
    return chosen


def gather_evaluation(engine: sa.Engine, model_id: str, runs: list, *, run_id: str):
    """The gather step: tt_eval rows of the walk-forward model `model_id` from all its jobs' runs
    (tt_rl.evaluate.gather), with the DSR over the configurations tried on its dataset; writes tt_eval and
    the evaluation's tear sheet (tt_pipeline.tearsheet_report.report_path). Returns
    tt_rl.evaluate.Evaluation."""
    from tt_pipeline.tearsheet_report import write_report
    from tt_resources.db import rl_log
    from tt_rl.evaluate import STITCHED, gather

    model, dataset, config, spans = _walk_forward(engine, model_id)
    n_trials, trial_sharpes, trial_excess_sharpes = _trials(engine, model)
    result = gather(
        runs,
        dataset.panel,
        initial_cash=config.env.initial_cash,
        n_trials=n_trials,
        trial_sharpes=trial_sharpes,
        trial_excess_sharpes=trial_excess_sharpes,
    )
    metrics = result.metrics
    index = dataset.panel.index
    span = {s.index: (index[s.train_start], index[s.train_stop - 1]) for s in spans}
    span[STITCHED] = (index[spans[0].train_start], index[spans[-1].train_stop - 1])
    metrics.insert(0, "model_id", model_id)
    metrics["train_start"] = [span[f][0] for f in metrics["fold"]]
    metrics["train_end"] = [span[f][1] for f in metrics["fold"]]
    metrics["run_id"] = run_id
    rl_log.write_eval(engine, metrics)
    write_report(engine, model_id, run_id)
    return result


def evaluate_model(engine: sa.Engine, model_id: str, *, run_id: str):
    """Score the walk-forward model `model_id` on every fold (its folds' models, the baselines, the oracle)
    and gather: writes tt_eval and the test episodes. Returns tt_rl.evaluate.Evaluation. DatasetError when
    the model or its dataset is not registered, or the model has no folds' models."""
    from tt_resources.db import registry

    _, _, _, spans = _walk_forward(engine, model_id)
    members = registry.fold_models(engine, model_id)
    if not members:
        raise DatasetError(f"model {model_id} has no walk-forward folds' models in tt_model: retrain it")
    runs = [score_fold_model(engine, m["model_id"], run_id=run_id) for m in members]
    for span in spans:
        runs += score_fold_policies(engine, model_id, span.index, run_id=run_id)
    return gather_evaluation(engine, model_id, runs, run_id=run_id)


def _trials(engine: sa.Engine, model: dict) -> tuple[int, list[float], list[float]]:
    """(N, per-period Sharpe ratios of the other configurations' returns, and of their excess returns over
    the best baseline) for the deflated Sharpe ratios: N counts the distinct configurations (config_key, seed included) of
    the walk-forward models on the same timeframe and symbols whose spans overlap the model's
    (registry.models_overlapping), this one included; each other configuration contributes its newest
    evaluated summary row."""
    import pandas as pd

    from tt_pipeline.retraining import config_key
    from tt_resources.db import registry
    from tt_resources.terms import AGENT
    from tt_resources.timeframes import get_timeframe

    # a configuration's identity as a trial is its config_key, the PPO seed included: the seeds of one
    # walk-forward model are not trials (their ensemble is the one strategy scored), but another base seed is
    # another ensemble, and choosing among them would be a search
    own = config_key(model["config"])
    scale = math.sqrt(get_timeframe(model["timeframe"]).bars_per_year)
    keys, newest = {own}, {}
    for other in reversed(registry.models_overlapping(engine, model)):
        key = config_key(other["config"])
        keys.add(key)
        if key != own and key not in newest:
            metrics = registry.stitched_metrics(engine, other["model_id"])
            if len(metrics) and (metrics["policy"] == AGENT).any():
                newest[key] = metrics.loc[metrics["policy"] == AGENT].iloc[0]
    sharpes, excess = [], []
    for row in newest.values():
        for column, name in ((sharpes, "sharpe"), (excess, "sharpe_vs_best")):
            value = pd.to_numeric(row.get(name), errors="coerce")
            if pd.notna(value) and math.isfinite(value):
                column.append(float(value) / scale)
    return len(keys), sharpes, excess


def train_production(engine: sa.Engine, model_id: str, *, run_id: str, model_dir: Path, callbacks=None):
    """The deployable model of the walk-forward model `model_id`: its configuration (base seed ppo.seed)
    trained on the dataset's whole history, registered in tt_model with production_of = `model_id` (the
    evaluation that justifies it). Its walk-forward verdict scored the seed ensemble; the production model
    is the base seed's (docs/trading.md). A production model already registered for `model_id` is returned,
    not trained again. Returns tt_rl.train.TrainedModel; DatasetError when `model_id` is not a walk-forward
    model."""
    from tt_rl.train import train

    model, dataset, config, _ = _walk_forward(engine, model_id)
    if model["production_of"] is not None:
        raise DatasetError(f"model {model_id} is a production model (of {model['production_of']})")
    done = _production_of(engine, model_id)
    if done is not None:
        return _trained(done)
    return train(
        dataset.panel,
        config,
        engine=engine,
        model_dir=model_dir,
        run_id=run_id,
        dataset_version=model["dataset_version"],
        callbacks=callbacks,
        registry_fields={"production_of": model_id},
    )


def _production_of(engine: sa.Engine, model_id: str) -> dict | None:
    """The newest production model of the walk-forward model `model_id`, or None."""
    from tt_resources.db.schema import models

    query = (
        sa.select(models)
        .where(models.c.production_of == model_id)
        .order_by(models.c.created_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None
