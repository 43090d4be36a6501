"""`tt train`: fetch missing bars, train PPO on the watchlist's bars, evaluate against baselines."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tt_cli.common import (
    DATE,
    BadInput,
    market_config,
    open_pipeline,
    refresh,
    report_partitions,
    time_window,
    training_progress,
    universe,
)
from tt_pipeline.quality import MIN_SYMBOLS
from tt_pipeline.tearsheet_report import latest_report
from tt_resources.terms import (
    AGENT,
    DEFAULT_SPAN_POLICY,
    METRICS,
    POLICY_LABELS,
    POLICY_NAMES,
    SIGNIFICANCE_NAMES,
    SOURCE_NAMES,
    SPAN_POLICIES,
    TRAIN_TABLE_METRICS,
)
from tt_resources.timeframes import TIMEFRAME_NAMES
from tt_rl.config import MAX_TIMESTEPS

CI_COLUMN = "sharpe_ci"  # the Sharpe ratio's sampling interval over time, shown as one "low..high" column
# the columns of the results' first table when the terminal is too narrow for all, in this order of importance
PRIORITY = ("sharpe", CI_COLUMN, "psr", "dsr", "total_return", "max_drawdown", "turnover", "cagr", "sortino")


def _finite(value) -> bool:
    """A number to show (NULL from the database and NaN are shown as "-")."""
    return value is not None and math.isfinite(value)


def _cell(name: str, value) -> str:
    if name == CI_COLUMN:
        low, high = value
        return f"{low:.2f}..{high:.2f}" if _finite(low) and _finite(high) else "-"
    if not _finite(value):
        return "-"
    return f"{value:.1%}" if METRIC_KIND.get(name) == "percent" else f"{value:.2f}"


def results_table(metrics: pd.DataFrame, title: str, names: tuple[str, ...], width: int) -> Group:
    """Out-of-sample rows (one per policy: folds stitched, the seeds' ensemble) as tables at most `width`
    characters wide: PPO first, the oracle next, then the baselines, each by its label (POLICY_LABELS, as
    Dagster and the dashboard show it); columns `names` (tt_eval metrics) with the Sharpe ratio's interval
    over time, PSR and DSR beside the Sharpe ratio. Columns are two spaces apart; a label wraps onto a second
    line when that lets every column fit. When the columns still do not fit in one table they wrap: the
    first table holds the PRIORITY columns that fit, continuation tables (same rows) the others; numbers
    are never cut."""
    rows = metrics.sort_values("policy", key=lambda p: p.map(_policy_rank)).to_dict("records")
    shown = [n for n in names if n != "sharpe"]
    if "sharpe" in names:
        at = names.index("sharpe")
        shown[at:at] = ["sharpe", CI_COLUMN, *SIGNIFICANCE_NAMES[:2]]
    cells = {
        n: [_cell(n, (r["sharpe_ci_low"], r["sharpe_ci_high"]) if n == CI_COLUMN else r.get(n)) for r in rows]
        for n in shown
    }
    labels = [POLICY_LABELS.get(r["policy"], r["policy"]) for r in rows]
    widths = {c: max(len(HEADERS.get(c, c)), *map(len, cells[c])) for c in shown}
    whole = max(len("policy"), *map(len, labels))

    def needed(columns: list[str], policy: int) -> int:  # two spaces between columns, no edges
        return policy + sum(widths[c] + GAP for c in columns)

    ordered = [c for c in PRIORITY if c in shown] + [c for c in shown if c not in PRIORITY]
    # the policy column: whole labels when every column fits beside them, else labels on two lines
    policy = whole if needed(ordered, whole) <= width else max(len("policy"), *map(_two_lines, labels))
    chunks: list[list[str]] = []
    for column in ordered:
        if chunks and needed([*chunks[-1], column], policy) <= width:
            chunks[-1].append(column)
        else:
            chunks.append([column])
    tables = []
    for k, chunk in enumerate(chunks):
        table = Table(
            title=title if k == 0 else f"{title} (cont.)",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
            title_justify="left",
        )
        table.add_column("policy", min_width=policy, max_width=policy)
        columns = [c for c in shown if c in chunk]  # the metrics' order within each table
        for name in columns:
            table.add_column(HEADERS.get(name, name), justify="right", no_wrap=True, min_width=widths[name])
        for i, label in enumerate(labels):
            table.add_row(label, *(cells[name][i] for name in columns))
        tables += [table, Text()]  # a blank line ends each table
    return Group(*tables)


GAP = 2  # spaces between two columns of the results table


def _two_lines(label: str) -> int:
    """The narrowest width that holds `label` on at most two lines, broken at a space."""
    words = label.split(" ")
    return min(
        [len(label)] + [max(len(" ".join(words[:k])), len(" ".join(words[k:]))) for k in range(1, len(words))]
    )


def _policy_rank(policy: str) -> int:
    return POLICY_NAMES.index(policy) if policy in POLICY_NAMES else len(POLICY_NAMES)


HEADERS = {
    "total_return": "return",
    "ann_volatility": "vol",
    "max_drawdown": "max dd",
    CI_COLUMN: "95% CI",
    "psr": "PSR",
    "dsr": "DSR",
}
METRIC_KIND = {m.name: m.kind for m in METRICS}


def results_title(metrics: pd.DataFrame, timeframe: str, windows: int) -> str:
    """The results table's title with its stitched test period, e.g. "1d out-of-sample: test
    2025-06-02..2026-11-27, 2 windows, 375 sessions" (bars on the exchange calendar from the first test bar
    to the last, inclusive; "sessions" for 1d bars)."""
    from tt_resources.calendar import expected_bar_starts

    first, last = metrics["test_start"].min(), metrics["test_end"].max()
    if pd.isna(first) or pd.isna(last):
        return f"{timeframe} out-of-sample"
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    bars = len(expected_bar_starts(timeframe, first, last + pd.Timedelta(1, "ns")))
    unit = "sessions" if timeframe == "1d" else f"{timeframe} bars"
    return (
        f"{timeframe} out-of-sample: test {first:%Y-%m-%d}..{last:%Y-%m-%d}, {windows} "
        f"window{'s' if windows != 1 else ''}, {bars:,} {unit}"
    )


def evaluation_note(rl) -> str:
    """One line under the table: how the numbers were made."""
    return (
        f"{rl.eval.n_folds} walk-forward folds ({rl.eval.scheme}, embargo {rl.embargo} "
        f"bar{'s' if rl.embargo != 1 else ''}) x "
        f"{rl.eval.seeds} seed(s); PPO = the seeds' ensemble (mean return per bar); 95% CI = sampling interval "
        "of the Sharpe ratio over the test period (Lo/Mertens); PSR = P(Sharpe > 0) vs cash; DSR = PSR vs cash "
        "deflated by the configurations tried on overlapping data"
    )


def verdict_lines(metrics: pd.DataFrame) -> str:
    """The agent's seed range of Sharpe ratios and its stored verdict line (tt_eval summary row), or "" when
    the metrics have no agent row."""
    agent = metrics.loc[metrics["policy"] == AGENT]
    if agent.empty:
        return ""
    row = agent.iloc[0]
    seeds = (
        f"PPO seeds' Sharpe range {row['sharpe_seed_min']:.2f}..{row['sharpe_seed_max']:.2f}; "
        if _finite(row.get("sharpe_seed_min")) and _finite(row.get("sharpe_seed_max"))
        else ""
    )
    best = row.get("best_baseline")  # one per fold, comma-separated ids
    best = (
        f"best baseline on the training spans: "
        f"{', '.join(POLICY_LABELS.get(p, p) for p in best.split(', '))}\n"
        if best
        else ""
    )
    return f"{seeds}{best}{row.get('verdict') or 'Verdict: none stored (evaluated before verdicts existed)'}"


def production_line(engine, walk_forward_id: str, production_id: str) -> str:
    """One line: the production model of `walk_forward_id` (trained on the whole history) and whether
    `tt promote` accepts it (tt_pipeline.trading.promotion: only a verdict of skill beyond the best baseline)."""
    from tt_pipeline.trading.promotion import verdict_of

    _, skill = verdict_of(engine, walk_forward_id)
    answer = (
        "accepts it (skill beyond the best baseline)"
        if skill
        else "refuses it (no skill beyond the best baseline)"
    )
    return f"production model {production_id} (whole history): `tt promote {production_id}` {answer}"


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
@click.option(
    "--steps",
    type=click.IntRange(1, MAX_TIMESTEPS),
    default=None,
    help="PPO total timesteps (default: config).",
)
@click.option("--timeframe", type=click.Choice(TIMEFRAME_NAMES), default="1d", show_default=True)
@click.option("--source", type=click.Choice(SOURCE_NAMES), help="Default: TT_SOURCE, else synthetic.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="RLConfig file (.json/.yaml).",
)
@click.option(
    "--span-policy",
    type=click.Choice(SPAN_POLICIES),
    default=DEFAULT_SPAN_POLICY,
    show_default=True,
    help="Symbols whose history starts later or ends earlier than most: leave them out, or cut every "
    "symbol to the span all have.",
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
    span_policy,
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
        rl.ppo.progress_bar = False  # the command's own bar over every fold and seed (training_progress)
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
    pipeline = open_pipeline(via_dagster, market_config(source), console)
    reports = refresh(pipeline, console, names, [timeframe], start=start, end=end)
    if report_partitions(console, reports, fail=False):
        console.print("[yellow]the dataset leaves out partitions whose bars fail the quality rules[/yellow]")
    dataset = pipeline.build_dataset(
        timeframe, names, start=start, end=end, test_fraction=rl.eval.test_fraction, span_policy=span_policy
    )
    left_out = [
        f"{s} ({dataset['excluded'].get(s, 'not in the panel')})"
        for s in names
        if s not in dataset["symbols"]
    ]
    console.print(
        f"dataset {dataset['dataset_version']}: {len(dataset['symbols'])} symbols x {dataset['n_bars']} "
        f"{timeframe} bars, {dataset['start_ts']:%Y-%m-%d} .. {dataset['end_ts']:%Y-%m-%d}, test from "
        f"{dataset['split_ts']:%Y-%m-%d}"
        + (f"; left out: {'; '.join(left_out)}" if left_out else "")
        + (f"; {dataset['span_note']}" if dataset["span_note"] else ""),
        highlight=False,
    )
    if dataset["test_defects"]:  # kept: the universe is chosen on the training span
        defects = "; ".join(f"{s} {why}" for s, why in dataset["test_defects"].items())
        console.print(f"test-period defects (symbols kept): {defects}", highlight=False)
    jobs = rl.eval.n_folds * rl.eval.seeds
    console.print(
        f"training PPO: {rl.eval.n_folds} folds x {rl.eval.seeds} seed(s) = {jobs} models of "
        f"{rl.ppo.total_timesteps} steps ({pipeline.name})"
    )
    from tt_resources.db import registry

    with (
        registry.dataset_lock(pipeline.engine, dataset["dataset_version"]),  # one training per dataset
        training_progress(console, rl) as progress,
    ):
        trained = pipeline.train_and_evaluate(
            dataset["dataset_version"],
            rl,
            model_dir=Path(model_dir) if model_dir else None,
            progress=progress,
        )
    console.print(f"model {trained.model_id}")
    title = results_title(trained.metrics, timeframe, rl.eval.n_folds)
    console.print(results_table(trained.metrics, title, TRAIN_TABLE_METRICS, console.width))
    console.print(evaluation_note(rl), highlight=False)
    console.print(verdict_lines(trained.metrics), highlight=False)
    console.print(production_line(pipeline.engine, trained.model_id, trained.production_id), highlight=False)
    console.print(
        f"tear sheet: {latest_report(pipeline.engine, trained.model_id)}", highlight=False, soft_wrap=True
    )
