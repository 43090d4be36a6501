"""`tt train`: fetch missing bars, train PPO on the watchlist's bars, evaluate against baselines (replaces
train_mvp)."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.table import Table

from tt_cli.common import DATE, BadInput, open_pipeline, refresh, report_partitions, time_window, universe
from tt_pipeline.quality import MIN_SYMBOLS
from tt_resources.terms import AGENT, TRAIN_TABLE_METRICS
from tt_resources.timeframes import TIMEFRAME_NAMES


def _metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """Stitched (window -1) out-of-sample metrics, PPO first, then the baselines."""
    stitched = metrics.sort_values("policy", key=lambda s: s.ne(AGENT))
    table = Table(title=title)
    table.add_column("policy", no_wrap=True)
    for name in TRAIN_TABLE_METRICS:  # narrow terminals wrap a cell, never cut it
        table.add_column(name, justify="right", overflow="fold")
    for _, row in stitched.iterrows():
        table.add_row(row["policy"], *(f"{row[name]:.4f}" for name in TRAIN_TABLE_METRICS))
    return table


@click.command()
@click.option(
    "--months",
    type=click.IntRange(1, 600),
    default=None,
    help="History to train on, ending at --end (default now): shorthand for --start (default 12 when "
    "--start is not given).",
)
@click.option("--start", type=DATE, default=None, help="First bar (UTC) of the dataset and of first fetches.")
@click.option("--end", type=DATE, default=None, help="Bars before this instant (UTC); default now.")
@click.option("--symbols", default=None, help="Comma-separated symbols instead of the watchlist.")
@click.option("--limit", type=click.IntRange(1), default=None, help="First N symbols.")
@click.option("--steps", type=click.IntRange(1), default=None, help="PPO total timesteps (default: config).")
@click.option("--timeframe", type=click.Choice(TIMEFRAME_NAMES), default="1d", show_default=True)
@click.option(
    "--source", type=click.Choice(["synthetic", "csv", "ibkr"]), help="Default: TT_SOURCE, else synthetic."
)
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
    help="Run the same steps as Dagster runs (raw_bars, features, training_dataset, ppo_model, evaluation "
    "with lineage in `dagster dev`).",
)
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where runs are saved (default <data dir>/models/<timeframe>; not with --via-dagster).",
)
def train(
    months,
    start,
    end,
    symbols,
    limit,
    steps,
    timeframe,
    source,
    config_path,
    log_training,
    n_envs,
    seed,
    via_dagster,
    model_dir,
) -> None:
    """Refresh the bars, build the dataset, train PPO and print its out-of-sample metrics beside the baselines."""
    from tt_rl.config import RLConfig

    if via_dagster and model_dir:
        raise BadInput("--model-dir does not apply with --via-dagster (models go to <data dir>/models)")
    if start is not None and months is not None:
        raise BadInput("give --start or --months, not both")
    try:
        rl = RLConfig.from_file(config_path) if config_path else RLConfig()
        for value, section, name in (
            (steps, rl.ppo, "total_timesteps"),
            (n_envs, rl.ppo, "n_envs"),
            (seed, rl.ppo, "seed"),
            (log_training, rl.logging, "log_training"),
        ):
            if value is not None:
                setattr(section, name, value)
        rl.check()  # cross-field rules, e.g. batch_size <= n_steps * n_envs after --n-envs
    except ValueError as exc:  # RLConfigError: one line naming the file (or flag) and key
        raise BadInput(str(exc)) from None
    start, end = time_window(start, end, months=None if start is not None else months or 12)
    names = universe(symbols, limit)
    if len(names) < MIN_SYMBOLS:
        raise BadInput(
            f"a portfolio needs at least {MIN_SYMBOLS} symbols, got {len(names)}: {', '.join(names)}"
        )

    console = Console()
    pipeline = open_pipeline(via_dagster, source, console)
    reports = refresh(pipeline, console, names, [timeframe], start=start, end=end)
    if report_partitions(console, reports, fail=False):
        console.print("[yellow]the dataset leaves out partitions whose bars fail the quality rules[/yellow]")
    dataset = pipeline.build_dataset(
        timeframe, names, start=start, end=end, test_fraction=rl.eval.test_fraction
    )
    left_out = sorted(set(names) - set(dataset["symbols"]))
    console.print(
        f"dataset {dataset['dataset_version']}: {len(dataset['symbols'])} symbols x {dataset['n_bars']} "
        f"{timeframe} bars, {dataset['start_ts']:%Y-%m-%d} .. {dataset['end_ts']:%Y-%m-%d}, test from "
        f"{dataset['split_ts']:%Y-%m-%d}" + (f"; left out: {', '.join(left_out)}" if left_out else ""),
        highlight=False,
    )
    console.print(f"training PPO for {rl.ppo.total_timesteps} steps ({pipeline.name})")
    trained = pipeline.train_and_evaluate(
        dataset["dataset_version"], rl, model_dir=Path(model_dir) if model_dir else None
    )
    console.print(f"model {trained.model_id}")
    console.print(
        _metrics_table(trained.metrics, f"out-of-sample {timeframe} from {dataset['split_ts']:%Y-%m-%d}")
    )
