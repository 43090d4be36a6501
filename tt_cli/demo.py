"""`tt demo`: the whole platform on the embedded defaults, through the Dagster instance.

Registers the watchlist's symbols as partitions, materialises raw_bars + features for 1d/1h/15m (a few
range runs), then training_dataset -> ppo_model -> evaluation for 1d. Runs are recorded in DAGSTER_HOME,
so `dagster dev` shows them afterwards. A second run finds every partition fresh and retrains only when
the dataset changed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import click

from tt_resources import config

DEFAULT_SYMBOLS = 25


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (set to `<data dir>/dagster_home` when unset), holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        shutil.copy(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


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
    home = ensure_dagster_home()
    from tt_assets.demo import run_demo

    try:
        summary = run_demo(n_symbols, steps, console)
    except Exception as exc:
        raise click.ClickException(str(exc).strip().splitlines()[0]) from None
    summary.print(console, home, time.perf_counter() - started)
