"""`tt train`: fetch missing bars, train PPO on the watchlist's bars, evaluate against baselines (replaces
train_mvp)."""

from __future__ import annotations

import uuid
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.table import Table

from tt_cli.common import BadInput, open_database
from tt_resources.timeframes import TIMEFRAME_NAMES

SHOWN = ("total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown", "turnover", "costs")


def _metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """Stitched (window -1) out-of-sample metrics, PPO first, then the baselines."""
    stitched = metrics.loc[metrics["window"] == -1].sort_values("policy", key=lambda s: s.ne("ppo"))
    table = Table(title=title)
    table.add_column("policy")
    for name in SHOWN:
        table.add_column(name, justify="right")
    for _, row in stitched.iterrows():
        table.add_row(row["policy"], *(f"{row[name]:.4f}" for name in SHOWN))
    return table


def _train_via_dagster(engine, symbols, timeframe, start, source, rl, console) -> pd.DataFrame:
    """market_data_job for the symbols, then training_job and retrain_job for `timeframe`, through the
    persistent Dagster instance; returns the stitched out-of-sample metrics of the new model."""
    import json
    import os

    from tt_resources import config as settings

    if source:
        os.environ["TT_SOURCE"] = source  # read by the code location's resources
    from tt_assets.launch import ensure_dagster_home, materialize_market_data, run_job

    ensure_dagster_home()
    import dagster as dg

    from tt_assets import lineage

    instance = dg.DagsterInstance.get()
    history = {"history_days": (pd.Timestamp.now(tz="UTC") - start).days}
    for key_range, result in materialize_market_data(
        instance,
        symbols,
        [timeframe],
        run_config={"ops": {"raw_bars": {"config": history}}},
        status=console.status,
    ):
        console.print(f"{key_range.start} .. {key_range.end}: {'ok' if result.success else '[red]failed'}")
    rl_path = settings.data_dir() / "configs" / f"{uuid.uuid4().hex[:12]}.json"
    rl_path.parent.mkdir(parents=True, exist_ok=True)
    rl_path.write_text(json.dumps(rl.to_dict(), indent=2))
    training = {"config": {"rl_config_path": str(rl_path)}}
    with console.status(f"training_dataset -> ppo_model -> evaluation {timeframe}"):
        result = run_job(
            instance,
            "training_job",
            partition_key=timeframe,
            run_config={"ops": {"ppo_model": training, "evaluation": training}},
            raise_on_error=False,
        )
    if not result.success:
        raise click.ClickException(
            f"training_job failed for {timeframe} (run {result.run_id}); see `dagster dev`"
        )
    console.print(f"training_job {timeframe}: ok (run {result.run_id})")
    return lineage.latest_evaluation(engine, timeframe)


@click.command()
@click.option("--months", type=click.IntRange(1), default=12, show_default=True, help="History to train on.")
@click.option("--steps", type=click.IntRange(1), default=None, help="PPO total timesteps (default: config).")
@click.option("--limit", type=click.IntRange(1), default=None, help="First N watchlist symbols.")
@click.option("--timeframe", type=click.Choice(TIMEFRAME_NAMES), default="1d", show_default=True)
@click.option("--source", default=None, help="Market-data source for missing bars (default TT_SOURCE).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="RLConfig file (.json/.yaml).",
)
@click.option("--log-training/--no-log-training", default=None, help="Log training episodes to the database.")
@click.option("--n-envs", type=click.IntRange(1), default=None, help="Parallel environments.")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option(
    "--via-dagster",
    is_flag=True,
    help="Materialise raw_bars, features, training_dataset, ppo_model and evaluation through the Dagster "
    "instance (lineage in `dagster dev`); trains on every registered symbol that passes the checks.",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where runs are saved (default <data dir>/models/<timeframe>).",
)
def train(
    months, steps, limit, timeframe, source, config_path, log_training, n_envs, seed, via_dagster, model_dir
) -> None:
    """Train a PPO agent on the database's bars and print its out-of-sample metrics next to the baselines."""
    from tt_resources import config as settings
    from tt_resources.ingest import ingest_many
    from tt_resources.sources import make_source
    from tt_resources.watchlist import WatchlistError, load_watchlist
    from tt_rl.config import RLConfig
    from tt_rl.evaluate import evaluate
    from tt_rl.panel import build_panel
    from tt_rl.train import train as train_model

    console = Console()
    try:
        rl = RLConfig.from_file(config_path) if config_path else RLConfig()
        symbols = load_watchlist(limit=limit).symbols
    except (ValueError, WatchlistError) as exc:
        raise BadInput(str(exc)) from None
    for value, section, name in (
        (steps, rl.ppo, "total_timesteps"),
        (n_envs, rl.ppo, "n_envs"),
        (seed, rl.ppo, "seed"),
        (log_training, rl.logging, "log_training"),
    ):
        if value is not None:
            setattr(section, name, value)

    engine = open_database()
    start = pd.Timestamp.now(tz="UTC").normalize() - pd.DateOffset(months=months)
    if via_dagster:
        if model_dir:
            raise BadInput("--model-dir does not apply with --via-dagster (models go to <data dir>/models)")
        metrics = _train_via_dagster(engine, symbols, timeframe, start, source, rl, console)
        console.print(_metrics_table(metrics, f"out-of-sample {timeframe} (via Dagster)"))
        return
    market = make_source(source)
    try:
        results = ingest_many(engine, market, symbols, [timeframe], start=start)
    finally:
        market.close()
    failed = [r.symbol for r in results if r.status == "failed"]
    if failed:
        console.print(f"[yellow]could not fetch {timeframe} bars for: {', '.join(failed)}[/yellow]")
    try:
        panel = build_panel(engine, timeframe, symbols, start=start)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    split_at = panel.test_start(rl.eval.test_fraction)
    train_panel, _ = panel.split(split_at)
    console.print(
        f"training on {len(panel.symbols)} symbols x {len(train_panel)} {timeframe} bars "
        f"({train_panel.index[0]:%Y-%m-%d} .. {train_panel.index[-1]:%Y-%m-%d}), {rl.ppo.total_timesteps} steps"
    )
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    trained = train_model(
        train_panel,
        rl,
        engine=engine,
        model_dir=Path(model_dir) if model_dir else settings.data_dir() / "models" / timeframe,
        run_id=run_id,
        dataset_version=panel.version,
    )
    console.print(f"model {trained.model_id} saved in {trained.path} ({trained.seconds:.1f} s)")
    result = evaluate(trained.path, panel, rl, engine=engine, model_id=trained.model_id, run_id=run_id)
    console.print(_metrics_table(result.metrics, f"out-of-sample {timeframe} from {split_at:%Y-%m-%d}"))
