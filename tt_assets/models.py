"""Training assets per timeframe: training_dataset -> ppo_model -> evaluation.

tensortrade, torch and Stable-Baselines3 are imported inside tt_rl's train/evaluate, which these asset
bodies call; nothing heavy is imported when the code location loads.
"""

from datetime import UTC, datetime

import dagster as dg

from tt_assets.checks import panel_check, panel_check_spec
from tt_assets.market import features
from tt_assets.partitions import SYMBOL_DIM, timeframe_of_bars, timeframe_partitions
from tt_assets.quality import assess_bars, iso
from tt_assets.reporting import equity_chart_md, summary_table
from tt_resources import config
from tt_resources.resources import DatabaseResource
from tt_rl.config import EvalConfig

TRAINING_GROUP = "training"


class DatasetConfig(dg.Config):
    """Share of the panel's bars held out as the out-of-sample test period."""

    test_fraction: float = EvalConfig.test_fraction  # the same default as `tt train`


class TrainingConfig(dg.Config):
    """RL settings: an optional RLConfig file (JSON/YAML) and an override of PPO's total timesteps."""

    rl_config_path: str | None = None
    total_timesteps: int | None = None


def _rl_config(cfg: TrainingConfig):
    from tt_rl.config import RLConfig

    rl = RLConfig.from_file(cfg.rl_config_path) if cfg.rl_config_path else RLConfig()
    if cfg.total_timesteps is not None:
        rl.ppo.total_timesteps = cfg.total_timesteps
    rl.ppo.progress_bar = False
    return rl


@dg.asset(
    partitions_def=timeframe_partitions,
    deps=[dg.AssetDep(features, partition_mapping=timeframe_of_bars)],
    check_specs=[panel_check_spec],
    group_name=TRAINING_GROUP,
    kinds={"numpy"},
    code_version="1",
    description="Aligned price/feature panel over the registered symbols whose bars pass the raw_bars checks.",
)
def training_dataset(
    context: dg.AssetExecutionContext, config: DatasetConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    from tt_assets import lineage
    from tt_resources.db.prices import read_bars
    from tt_rl.panel import build_panel

    timeframe = context.partition_key
    engine = database.get_engine()
    symbols = list(context.instance.get_dynamic_partitions(SYMBOL_DIM))
    bars = read_bars(engine, symbols, timeframe)
    passed = [s for s, group in bars.groupby("symbol", sort=False) if assess_bars(group, timeframe).ok]
    passed = [s for s in symbols if s in set(passed)]
    if not passed:
        raise dg.Failure(f"no {timeframe} symbol has bars that pass the raw_bars checks")
    panel = build_panel(engine, timeframe, passed, bars=bars[bars["symbol"].isin(passed)])
    split_at = panel.test_start(config.test_fraction)
    path = panel.save(config_data_path("datasets", timeframe, f"{panel.version}.npz"))
    lineage.record_dataset(
        engine,
        {
            "dataset_version": panel.version,
            "timeframe": timeframe,
            "symbols": list(panel.symbols),
            "start_ts": panel.index[0],
            "end_ts": panel.index[-1],
            "split_ts": split_at,
            "n_bars": len(panel),
            "path": str(path),
            "created_at": datetime.now(UTC),
        },
    )
    return dg.MaterializeResult(
        metadata={
            "dataset_version": panel.version,
            "symbols": len(panel.symbols),
            "symbols_excluded": sorted(set(symbols) - set(panel.symbols)),
            "bars": len(panel),
            "start_ts": iso(panel.index[0]),
            "split_ts": iso(split_at),
            "end_ts": iso(panel.index[-1]),
            "path": dg.MetadataValue.path(str(path)),
        },
        check_results=[panel_check(panel)],
        data_version=dg.DataVersion(panel.version),
    )


def config_data_path(*parts: str):
    """A path under the data directory (TT_DATA_DIR)."""
    return config.data_dir().joinpath(*parts)


def _dataset(engine, timeframe: str):
    from tt_assets import lineage
    from tt_rl.panel import Panel

    row = lineage.latest_dataset(engine, timeframe)
    if row is None:
        raise dg.Failure(f"no {timeframe} training_dataset yet: materialise training_dataset first")
    return row, Panel.load(row["path"])


@dg.asset(
    partitions_def=timeframe_partitions,
    deps=[training_dataset],
    group_name=TRAINING_GROUP,
    kinds={"pytorch"},
    code_version="1",
    description="PPO agent trained on the training period of the latest dataset; registered in tt_model.",
)
def ppo_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    from tt_rl.train import code_version, train

    timeframe = context.partition_key
    engine = database.get_engine()
    dataset, panel = _dataset(engine, timeframe)
    train_panel, _ = panel.split(dataset["split_ts"])
    trained = train(
        train_panel,
        _rl_config(config),
        engine=engine,
        model_dir=config_data_path("models", timeframe),
        run_id=context.run_id,
        dataset_version=dataset["dataset_version"],
    )
    return dg.MaterializeResult(
        metadata={
            "model_id": trained.model_id,
            "path": dg.MetadataValue.path(str(trained.path)),
            "total_timesteps": trained.total_timesteps,
            "training_seconds": round(trained.seconds, 2),
            "dataset_version": dataset["dataset_version"],
            "code_version": code_version(),
            **{f"train_{k}": v for k, v in (trained.metrics or {}).items() if isinstance(v, int | float)},
        },
        data_version=dg.DataVersion(trained.model_id),
    )


@dg.asset(
    partitions_def=timeframe_partitions,
    deps=[ppo_model],
    group_name=TRAINING_GROUP,
    kinds={"pandas"},
    code_version="1",
    description="Walk-forward out-of-sample metrics of the latest model against the baselines (tt_eval).",
)
def evaluation(
    context: dg.AssetExecutionContext, config: TrainingConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    from tt_assets import lineage
    from tt_rl.evaluate import evaluate

    timeframe = context.partition_key
    engine = database.get_engine()
    model = lineage.latest_model(engine, timeframe)
    if model is None:
        raise dg.Failure(f"no {timeframe} model yet: materialise ppo_model first")
    _, panel = _dataset(engine, timeframe)
    result = evaluate(
        model["path"],
        panel,
        _rl_config(config),
        engine=engine,
        model_id=model["model_id"],
        run_id=context.run_id,
    )
    table = summary_table(result.metrics)
    ppo = table.loc[table["policy"] == "ppo"]
    return dg.MaterializeResult(
        metadata={
            "model_id": model["model_id"],
            "sharpe": float(ppo["sharpe"].iloc[0]) if len(ppo) else None,
            "metrics": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
            "equity_curve": dg.MetadataValue.md(
                equity_chart_md(result.equity, f"{timeframe} out-of-sample equity")
            ),
        },
        data_version=dg.DataVersion(model["model_id"]),
    )
