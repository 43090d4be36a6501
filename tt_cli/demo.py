"""`tt demo`: the whole platform on the embedded defaults, through the Dagster instance.

Registers the watchlist's symbols as partitions, materialises raw_bars + features for 1d/1h/15m (a few
range runs), then training_dataset -> ppo_model -> evaluation for 1d. Runs are recorded in DAGSTER_HOME,
so `dagster dev` shows them afterwards. A second run finds every partition fresh and retrains only when
the dataset changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import dagster as dg
from rich.console import Console

from tt_assets.launch import (
    ensure_dagster_home,
    materialize_market_data,
    partition_results,
    run_job,
)
from tt_assets.partitions import SYMBOL_DIM, TIMEFRAMES, split_key
from tt_cli.common import ingest_summary, timeframe_progress

DEFAULT_SYMBOLS = 25

TRAIN_TIMEFRAME = "1d"
# PPO steps: the whole demo stays within 5 minutes on 2 cores (about 2.5 min measured)
DEMO_TIMESTEPS = 24_576


@dataclass
class DemoSummary:
    """What the demo did: partition counts, bars stored, check outcomes, training and evaluation."""

    symbols: int = 0
    partitions: int = 0
    # raw_bars outcome per partition, as `launch.partition_results` returns them
    partition_results: list = field(default_factory=list)
    bars_stored: int = 0
    checks_passed: int = 0
    checks_total: int = 0
    dataset_version: str | None = None
    retrained: bool = False
    model_id: str | None = None
    metrics: list[dict] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> int:
        return sum(r.status == "fresh" for r in self.partition_results)

    @property
    def bars_written(self) -> int:
        return sum(r.bars_written for r in self.partition_results)

    def print(self, console, dagster_home: Path, seconds: float) -> None:
        from rich.table import Table

        console.rule("[bold]tt demo: summary")
        console.print(
            f"partitions: {self.partitions} ({self.symbols} symbols x {len(TIMEFRAMES)} timeframes), "
            f"{self.fresh} already fresh\n"
            f"bars: {self.bars_written:,} written this run, {self.bars_stored:,} stored\n"
            f"raw_bars checks passed: {self.checks_passed}/{self.checks_total}\n"
            f"dataset {TRAIN_TIMEFRAME}: {self.dataset_version}; model {self.model_id} "
            f"({'trained now' if self.retrained else 'unchanged dataset, not retrained'})"
        )
        if self.metrics:
            table = Table(title=f"{TRAIN_TIMEFRAME} out-of-sample, model vs baselines")
            columns = [
                c
                for c in ("policy", "total_return", "sharpe", "max_drawdown", "turnover")
                if c in self.metrics[0]
            ]
            for column in columns:
                table.add_column(column, justify="left" if column == "policy" else "right")
            for row in self.metrics:
                table.add_row(*(row[c] if c == "policy" else f"{row[c]:.3f}" for c in columns))
            console.print(table)
        console.print(
            f"{len(self.runs)} Dagster runs recorded in DAGSTER_HOME={dagster_home}; took {seconds:.0f} s.\n"
            "Next: [bold]make dev[/bold] (dagster dev -w workspace.yaml: lineage, runs, checks) and "
            "[bold]make dashboard[/bold] (Streamlit P&L)."
        )


def _metadata_value(value):
    return getattr(value, "value", value)


def run_demo(n_symbols: int, steps: int | None, console) -> DemoSummary:
    """Register symbols, refresh market data for every timeframe, then dataset -> model -> evaluation (1d)."""
    from tt_assets import lineage
    from tt_assets.definitions import defs
    from tt_resources.resources import WatchlistResource

    instance = dg.DagsterInstance.get()
    summary = DemoSummary()
    symbols = WatchlistResource(limit=n_symbols).symbols()
    new = set(symbols) - set(instance.get_dynamic_partitions(SYMBOL_DIM))
    summary.symbols, summary.partitions = len(symbols), len(symbols) * len(TIMEFRAMES)
    console.print(f"[bold]{len(symbols)} symbols[/bold] as partitions ({len(new)} new)")

    with timeframe_progress(console) as progress:
        tasks = {tf: progress.add_task(tf, total=len(symbols), note="waiting") for tf in TIMEFRAMES}
        for key_range, result in materialize_market_data(instance, symbols, TIMEFRAMES):
            timeframe = split_key(key_range.start)[1]
            rows = partition_results(result)
            summary.runs.append(result.run_id)
            summary.partition_results += rows
            _count_checks(result, summary)
            note = f"{key_range.start} .. {key_range.end}: {'ok' if result.success else 'failed'}"
            progress.update(tasks[timeframe], advance=len(rows), note=note)
            if not result.success:
                raise RuntimeError(
                    f"market_data_job failed for {key_range.start}..{key_range.end} (run {result.run_id})"
                )

    with console.status(f"training_dataset {TRAIN_TIMEFRAME}"):
        result = run_job(
            instance,
            "training_job",
            partition_key=TRAIN_TIMEFRAME,
            asset_selection=[dg.AssetKey("training_dataset")],
        )
    summary.runs.append(result.run_id)
    engine = defs.resources["database"].get_engine()
    dataset = lineage.latest_dataset(engine, TRAIN_TIMEFRAME)
    model = lineage.latest_model(engine, TRAIN_TIMEFRAME)
    summary.dataset_version = dataset["dataset_version"]
    if (
        model is None
        or model["dataset_version"] != dataset["dataset_version"]
        or lineage.latest_evaluation(engine, TRAIN_TIMEFRAME).empty
    ):
        timesteps = steps or DEMO_TIMESTEPS
        with console.status(f"ppo_model ({timesteps} steps) -> evaluation {TRAIN_TIMEFRAME}"):
            result = run_job(
                instance,
                "retrain_job",
                partition_key=TRAIN_TIMEFRAME,
                run_config={
                    "ops": {
                        name: {"config": {"total_timesteps": timesteps}}
                        for name in ("ppo_model", "evaluation")
                    }
                },
            )
        summary.runs.append(result.run_id)
        summary.retrained = True
    summary.model_id = lineage.latest_model(engine, TRAIN_TIMEFRAME)["model_id"]
    metrics = lineage.latest_evaluation(engine, TRAIN_TIMEFRAME)
    summary.metrics = metrics.sort_values("policy", key=lambda p: p.ne("ppo")).to_dict("records")
    from tt_resources.db.prices import high_water_marks

    marks = high_water_marks(engine)
    summary.bars_stored = int(marks.loc[marks["symbol"].isin(symbols), "n_bars"].sum())
    return summary


def _count_checks(result: dg.ExecuteInProcessResult, summary: DemoSummary) -> None:
    for evaluation in result.get_asset_check_evaluations():
        passed_partitions = _metadata_value(evaluation.metadata.get("partitions")) or 1
        failed = len(_metadata_value(evaluation.metadata.get("failed_partitions")) or [])
        summary.checks_total += passed_partitions
        summary.checks_passed += passed_partitions - failed


@click.command()
@click.option(
    "--symbols", "n_symbols", default=DEFAULT_SYMBOLS, show_default=True, help="Watchlist symbols to use."
)
@click.option("--steps", type=int, default=None, help="PPO timesteps (default: the demo's budget).")
def demo(n_symbols: int, steps: int | None) -> None:
    """Ingest, check and featurise 3 timeframes, then train and evaluate a 1d PPO agent, all via Dagster."""
    console = Console()
    started = time.perf_counter()
    home = ensure_dagster_home()

    try:
        summary = run_demo(n_symbols, steps, console)
    except Exception as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    console.print(ingest_summary(summary.partition_results))
    summary.print(console, home, time.perf_counter() - started)
