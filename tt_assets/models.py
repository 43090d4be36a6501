"""Training assets per timeframe: training_dataset -> ppo_model (walk-forward: a model per fold and seed) ->
evaluation (folds stitched, seeds summarised, significance) -> production_model (the deployable model: the
same configuration trained on the whole history).

Each body is a call into tt_pipeline. ppo_model is a graph of three ops: plan_jobs (the walk-forward model's
id and its (fold, seed) jobs, fanned out as dynamic outputs), train_fold (one job per step) and
register_model (the gather step); its run config is the RLConfig's sections (TrainingConfig). Each asset
resolves the exact upstream row it uses from the latest materialisation of its upstream asset in this
partition: ppo_model trains on the dataset_version that training_dataset materialised, evaluation scores the
model_id that ppo_model materialised, on that model's own dataset and split, production_model trains the
configuration of the model_id that evaluation scored. Nothing heavy is imported when the code location loads.
"""

import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import dagster as dg
import pydantic

from tt_assets.conventions import OWNERS
from tt_assets.partitions import SYMBOL_DIM, TIMEFRAMES, training_partitions
from tt_assets.reporting import (
    MISSING,
    dashboard_link,
    dashboard_view,
    equity_chart_md,
    equity_sketch_md,
    metrics_table,
    percent,
    rounded,
    summary_table,
    typed,
)
from tt_assets.resources import DatabaseResource, choices
from tt_resources import config as settings
from tt_resources.terms import AGENT, DEFAULT_SPAN_POLICY, SpanPolicy
from tt_rl.config import SECTIONS, EvalConfig, RLConfig

TRAINING_GROUP = "training"
TRAINING_DATASET = dg.AssetKey("training_dataset")
PPO_MODEL = dg.AssetKey("ppo_model")
EVALUATION = dg.AssetKey("evaluation")
RETRAIN_REASON_TAG = "tt/retrain_reason"
NO_SPAN_NOTE = "all symbols span the window"  # span_note when no symbol starts late or ends early


class DatasetConfig(dg.Config):
    """Which bars make the dataset: `symbols` (None = every registered symbol), bars in [start, end)
    (ISO-8601; None = all stored), the share held out as the out-of-sample test period and the span policy
    for uneven histories (tt_pipeline.datasets.uneven_spans)."""

    symbols: list[str] | None = None
    start: str | None = None
    end: str | None = None
    test_fraction: float = EvalConfig.test_fraction  # the same default as `tt train`
    # symbols whose history starts later or ends earlier than most (tt_resources.terms.SpanPolicy)
    span_policy: SpanPolicy = DEFAULT_SPAN_POLICY


def dagster_config(section: type) -> type[dg.Config]:
    """A dg.Config with the fields of an RLConfig section (pydantic dataclass): same types, bounds and
    defaults (a default factory's value written out, so that the Launchpad shows it)."""

    def field(name: str, info: pydantic.fields.FieldInfo) -> tuple[Any, Any]:
        annotation = dagster_type(f"{section.__name__}_{name}", info.annotation)
        annotation = Annotated[(annotation, *info.metadata)] if info.metadata else annotation
        return annotation, info.get_default(call_default_factory=True)

    return pydantic.create_model(
        section.__name__,
        __base__=dg.Config,
        __doc__=section.__doc__,
        **{name: field(name, info) for name, info in section.__pydantic_fields__.items()},
    )


def dagster_type(name: str, annotation: Any) -> Any:
    """`annotation` as Dagster config can declare it: Dagster takes a Literal but neither an optional one nor a
    list of one, so `Literal[...] | None` becomes an optional string enum of its values (`choices`) and
    `list[Literal[...]]` a list of strings (Dagster cannot store a default of enum members; RLConfig refuses
    a name outside the Literal when the run starts, `rl_config`); others pass unchanged."""
    members = get_args(annotation)
    if type(None) in members and len(members) == 2:
        (inner,) = (m for m in members if m is not type(None))
        if get_origin(inner) is Literal:
            return choices(name, inner) | None
    if get_origin(annotation) is list and len(members) == 1 and get_origin(members[0]) is Literal:
        return list[str]
    return annotation


SECTION_CONFIGS = {name: dagster_config(section) for name, section in SECTIONS.items()}
TrainingConfig = pydantic.create_model(
    "TrainingConfig",
    __base__=dg.Config,
    __doc__="ppo_model's run config: the RLConfig sections (tt_rl.config) with RLConfig's defaults.",
    **{name: (config, pydantic.Field(default_factory=config)) for name, config in SECTION_CONFIGS.items()},
)


def rl_config(values: dict) -> RLConfig:
    """The RLConfig a ppo_model run trains with, from its run config (TrainingConfig values; no progress bar:
    the run's log is the progress). RLConfigError (one line) for an invalid value or combination."""
    rl = RLConfig.from_dict(values, source="ppo_model config")
    rl.ppo.progress_bar = False
    return rl


def latest_value(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str, name: str) -> str | None:
    """Metadata `name` of the latest materialisation of `asset` in `partition`, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get(name)
    return getattr(value, "value", value)


@dg.asset(
    partitions_def=training_partitions,
    deps=[dg.AssetDep("features", partition_mapping=dg.AllPartitionMapping())],
    group_name=TRAINING_GROUP,
    owners=OWNERS,
    kinds={"numpy"},
    code_version="2",
    description="Aligned price/feature panel of the symbols whose bars pass the raw_bars checks, and its "
    "tt_dataset row (identity: content + split + feature set).",
)
def training_dataset(
    context: dg.AssetExecutionContext, config: DatasetConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    from tt_pipeline.datasets import DatasetError, build_dataset

    timeframe = context.partition_key
    if timeframe not in TIMEFRAMES:  # a partition added by hand in the UI
        raise dg.Failure(
            f"training partition {timeframe!r} is not a bar timeframe ({', '.join(TIMEFRAMES)}): delete it"
        )
    symbols = config.symbols or list(context.instance.get_dynamic_partitions(SYMBOL_DIM))
    try:
        dataset = build_dataset(
            database.get_engine(),
            timeframe,
            symbols,
            test_fraction=config.test_fraction,
            data_dir=settings.data_dir(),
            start=config.start,
            end=config.end,
            span_policy=config.span_policy,
        )
    except DatasetError as exc:
        raise dg.Failure(str(exc)) from None
    row = dataset.row
    return dg.MaterializeResult(
        metadata=typed(
            {
                "dataset_version": dataset.version,
                "content_version": row["content_version"],
                "symbols": len(row["symbols"]),
                "symbols_excluded": dataset.excluded,
                "span_policy": config.span_policy,
                "span_note": dataset.span_note or NO_SPAN_NOTE,
                "test_period_defects": dataset.test_defects,
                "bars": int(row["n_bars"]),
                "start_ts": row["start_ts"],
                "split_ts": row["split_ts"],
                "end_ts": row["end_ts"],
                "test_pct": percent(row["test_fraction"]),
                "path": dg.MetadataValue.path(row["path"]),
            }
        ),
        data_version=dg.DataVersion(dataset.version),
    )


def model_dir(timeframe: str) -> Path:
    """Where a timeframe's models are saved: <data dir>/models/<timeframe>."""
    return settings.data_dir() / "models" / timeframe


@dg.op(
    ins={"training_dataset": dg.In(dg.Nothing)},
    out={"plan": dg.Out(), "jobs": dg.DynamicOut()},
    description="Plans the walk-forward model on training_dataset's latest materialisation: its id, and one "
    "job per fold and seed (mapping key fold<i>_seed<s>).",
)
def plan_jobs(context: dg.OpExecutionContext, config: TrainingConfig, database: DatabaseResource):
    from tt_pipeline.datasets import DatasetError
    from tt_pipeline.models import plan_walk_forward

    timeframe = context.partition_key
    version = latest_value(context.instance, TRAINING_DATASET, timeframe, "dataset_version")
    if version is None:
        raise dg.Failure(f"no {timeframe} training_dataset yet: materialise training_dataset first")
    try:
        plan = plan_walk_forward(database.get_engine(), version, rl_config(config.model_dump()))
    except DatasetError as exc:
        raise dg.Failure(str(exc)) from None
    context.log.info(
        f"walk-forward model {plan.group_id}: {len(plan.jobs)} training jobs on dataset {version}"
    )
    yield dg.Output(plan, "plan")
    for job in plan.jobs:
        yield dg.DynamicOutput(job, mapping_key=job.key, output_name="jobs")


PROGRESS_EVERY = 0.1  # share of a job's timesteps between two progress lines in its step log
PROGRESS_LINE = re.compile(
    r"^job (?P<number>\d+)/(?P<jobs>\d+) \(fold (?P<fold>\d+), seed (?P<seed>\d+)\): "
    r"(?P<steps>[\d,]+)/(?P<total>[\d,]+) PPO steps"
)


def progress_line(job, jobs: int, steps: int, total: int, seconds: float, rate: float | None = None) -> str:
    """A training job's progress as its step log shows it (PROGRESS_LINE reads it back), e.g.
    "job 3/6 (fold 1, seed 0): 16,384/32,768 PPO steps (50%), 21 s elapsed, ~21 s left": `seconds` since
    the step started, time left at `rate` steps per second (none when None)."""
    left = f", ~{(total - steps) / rate:.0f} s left" if rate and steps < total else ""
    return (
        f"job {job.number}/{jobs} (fold {job.fold}, seed {job.seed}): {min(steps, total):,}/{total:,} PPO "
        f"steps ({min(steps / total, 1):.0%}), {seconds:.0f} s elapsed{left}"
    )


def parse_progress(line: str):
    """(tt_pipeline.models.FoldJob, timesteps) of a progress_line, None for any other line."""
    from tt_pipeline.models import FoldJob

    found = PROGRESS_LINE.match(line)
    if found is None:
        return None
    job = FoldJob(int(found["fold"]), int(found["seed"]), int(found["number"]))
    return job, int(found["steps"].replace(",", ""))


@dg.op(description="Trains one job's PPO model (a fold and a seed) and registers it in tt_model.")
def train_fold(context: dg.OpExecutionContext, plan, job, database: DatabaseResource):
    from tt_pipeline import models
    from tt_rl.train import progress_callback

    total, jobs, started = plan.config.ppo.total_timesteps, len(plan.jobs), time.monotonic()
    every = max(int(total * PROGRESS_EVERY), 1)
    logged = -1  # the last progress_line's multiple of `every`
    first: tuple[int, float] | None = None  # (timesteps, time) when training started: the rate's origin

    def report(steps: int) -> None:  # a line each PROGRESS_EVERY of the job's timesteps, and the last one
        nonlocal logged, first
        now = time.monotonic()
        first = first or (steps, now)
        rate = (steps - first[0]) / (now - first[1]) if steps > first[0] else None
        if min(steps, total) // every > logged:
            logged = min(steps, total) // every
            context.log.info(progress_line(job, jobs, steps, total, now - started, rate))

    return models.train_fold(
        database.get_engine(),
        plan,
        job,
        run_id=context.run_id,
        model_dir=model_dir(context.partition_key),
        callbacks=[progress_callback(report)],
    )


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Gathers the jobs' models and registers the walk-forward model in tt_model.",
)
def register_model(context: dg.OpExecutionContext, plan, members: list, database: DatabaseResource):
    from tt_pipeline.models import register_walk_forward
    from tt_rl.train import code_version

    trained = register_walk_forward(
        database.get_engine(),
        plan,
        members,
        run_id=context.run_id,
        model_dir=model_dir(context.partition_key),
    )
    rl = plan.config
    return dg.Output(
        None,
        metadata={
            "model_id": trained.model_id,
            "dashboard_view": dashboard_view(trained.model_id),
            "folds": rl.eval.n_folds,
            "seeds": rl.eval.seeds,
            "scheme": rl.eval.scheme,
            "embargo_bars": rl.embargo,
            "fold_models": [m.model_id for m in trained.members],
            "total_timesteps": trained.total_timesteps,
            "training_seconds": round(trained.seconds, 2),
            "dataset_version": plan.dataset_version,
            "code_version": code_version(),
            "retrain_reason": context.run.tags.get(RETRAIN_REASON_TAG, "requested"),
        },
        data_version=dg.DataVersion(trained.model_id),
    )


@dg.config_mapping(config_schema=TrainingConfig.to_config_schema())
def training_config(values: dict) -> dict:
    """ppo_model's run config (`{"config": TrainingConfig}`) is plan_jobs' config. It is checked as one
    RLConfig here, when a run is launched (Dagster's schema checks only types and keys), so a bad value or
    combination is refused before the run is created, with RLConfigError's one line as the cause."""
    rl_config(values)
    return {"plan_jobs": {"config": values}}


@dg.graph_asset(
    partitions_def=training_partitions,
    ins={"training_dataset": dg.AssetIn(TRAINING_DATASET, dagster_type=dg.Nothing)},
    config=training_config,
    group_name=TRAINING_GROUP,
    owners=OWNERS,
    metadata={"dashboard": dashboard_link()},
    kinds={"pytorch"},
    code_version="4",
    description="Walk-forward PPO model on training_dataset's latest materialisation: eval.seeds models per "
    "fold, each trained on the bars before its fold's test window (embargo between), each (fold, seed) job "
    "its own step; registered in tt_model (the walk-forward model and one row per fold and seed).",
)
def ppo_model(training_dataset):
    plan, jobs = plan_jobs(training_dataset)
    return register_model(plan, jobs.map(lambda job: train_fold(plan, job)).collect())


@dg.asset(
    partitions_def=training_partitions,
    deps=[ppo_model],
    group_name=TRAINING_GROUP,
    owners=OWNERS,
    metadata={"dashboard": dashboard_link()},
    kinds={"pandas"},
    code_version="4",
    description="Walk-forward out-of-sample metrics of ppo_model's latest model: each fold's models on its "
    "test window, stitched over the folds, the seeds' ensemble with the Sharpe ratio's sampling interval, "
    "probabilistic and deflated Sharpe ratios against cash and against the best baseline (chosen on the "
    "training spans), the verdict line, beside the baselines (and a planted market's oracle) (tt_eval).",
)
def evaluation(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    from tt_pipeline.models import evaluate_model
    from tt_pipeline.tearsheet_report import report_path

    timeframe = context.partition_key
    model_id = latest_value(context.instance, PPO_MODEL, timeframe, "model_id")
    if model_id is None:
        raise dg.Failure(f"no {timeframe} model yet: materialise ppo_model first")
    result = evaluate_model(database.get_engine(), model_id, run_id=context.run_id)
    table = summary_table(result.metrics)
    ppo = table.loc[table["policy"] == AGENT]

    def agent(name: str, digits: int, scale: float = 1.0) -> float | str:
        """The agent's `name` times `scale`, rounded (numeric: the UI plots it over materialisations), or
        "n/a"."""
        value = rounded(scale * ppo[name].iloc[0], digits) if len(ppo) and name in ppo else None
        return MISSING if value is None else value

    def text(name: str) -> str:
        """The agent's summary row's `name` (best baseline, verdict line), or "n/a"."""
        metrics = result.metrics
        row = metrics.loc[(metrics["policy"] == AGENT) & (metrics["fold"] == -1) & (metrics["seed"] == -1)]
        return str(row[name].iloc[0]) if len(row) and isinstance(row[name].iloc[0], str) else MISSING

    return dg.MaterializeResult(
        metadata={
            "model_id": model_id,
            "dashboard_view": dashboard_view(model_id),
            "tear_sheet": dg.MetadataValue.path(str(report_path(model_id, context.run_id))),
            "sharpe": agent("sharpe", 2),
            "sharpe_ci_low": agent("sharpe_ci_low", 2),
            "sharpe_ci_high": agent("sharpe_ci_high", 2),
            "psr_pct": agent("psr", 1, 100),  # probabilities in %, as in the table
            "dsr_pct": agent("dsr", 1, 100),
            "psr_vs_best_pct": agent("psr_vs_best", 1, 100),
            "dsr_vs_best_pct": agent("dsr_vs_best", 1, 100),
            "best_baseline": text("best_baseline"),
            "verdict": text("verdict"),
            "test_period_defects": result.test_defects,  # no-trade bars of kept symbols
            "metrics": metrics_table(table),
            "equity_curve": dg.MetadataValue.md(equity_sketch_md(result.equity)),
            "equity_curve_detail": dg.MetadataValue.md(
                equity_chart_md(result.equity, f"{timeframe} out-of-sample equity, folds stitched")
            ),
        },
        data_version=dg.DataVersion(model_id),
    )


@dg.asset(
    partitions_def=training_partitions,
    deps=[evaluation],
    group_name=TRAINING_GROUP,
    owners=OWNERS,
    metadata={"dashboard": dashboard_link()},
    kinds={"pytorch"},
    code_version="1",
    description="The deployable model of the walk-forward model evaluation scored: its configuration trained "
    "on the dataset's whole history, registered in tt_model with production_of = that walk-forward model "
    "(tt_pipeline.models.train_production; trained once per walk-forward model). `tt promote` accepts it "
    "only when the evaluation's verdict shows skill beyond the best baseline (docs/trading.md).",
)
def production_model(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    from tt_pipeline.datasets import DatasetError
    from tt_pipeline.models import train_production
    from tt_pipeline.trading.promotion import verdict_of

    timeframe = context.partition_key
    walk_forward_id = latest_value(context.instance, EVALUATION, timeframe, "model_id")
    if walk_forward_id is None:
        raise dg.Failure(f"no {timeframe} evaluation yet: materialise evaluation first")
    engine = database.get_engine()
    try:
        trained = train_production(
            engine, walk_forward_id, run_id=context.run_id, model_dir=model_dir(timeframe)
        )
    except DatasetError as exc:  # the walk-forward model or its dataset is gone: one line
        raise dg.Failure(str(exc)) from None
    verdict, promotable = verdict_of(engine, walk_forward_id)
    return dg.MaterializeResult(
        metadata={
            "model_id": trained.model_id,
            "production_of": walk_forward_id,
            "verdict": verdict or MISSING,
            "promotable": promotable,
            "dashboard_view": dashboard_view(trained.model_id),
            "total_timesteps": trained.total_timesteps,
            "training_seconds": round(trained.seconds, 2),
        },
        data_version=dg.DataVersion(trained.model_id),
    )
