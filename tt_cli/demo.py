"""`tt demo`: the whole platform on the embedded defaults, through the Dagster instance.

Registers the watchlist's symbols as partitions, materialises raw_bars + features for 1d/1h/15m (a few
range runs), then training_dataset -> ppo_model -> evaluation for 1d. Runs are recorded in DAGSTER_HOME,
so `dagster dev` shows them afterwards. A second run finds every partition fresh and retrains only when
the dataset changed.
"""

from __future__ import annotations

import time

import click

from tt_cli.common import ingest_summary

DEFAULT_SYMBOLS = 25


@click.command()
@click.option(
    "--symbols", "n_symbols", default=DEFAULT_SYMBOLS, show_default=True, help="Watchlist symbols to use."
)
@click.option("--steps", type=int, default=None, help="PPO timesteps (default: the demo's budget).")
def demo(n_symbols: int, steps: int | None) -> None:
    """Ingest, check and featurise 3 timeframes, then train and evaluate a 1d PPO agent, all via Dagster."""
    from rich.console import Console

    console = Console()
    started = time.perf_counter()
    from tt_assets.demo import run_demo
    from tt_assets.launch import ensure_dagster_home

    home = ensure_dagster_home()

    try:
        summary = run_demo(n_symbols, steps, console)
    except Exception as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    console.print(ingest_summary(summary.partition_results))
    summary.print(console, home, time.perf_counter() - started)
