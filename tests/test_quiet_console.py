"""Quiet, whole consoles: the results and ingest tables at 80 columns (fixed frames) wrap instead of cutting a
number; `tt --verbose` lets third-party notices through. The smoke test of a real quiet process at 80
columns reads the shared demo run (tests/test_demo.py)."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console

from tests.test_ingest_cli import summary_rows
from tt_cli.common import ingest_summary
from tt_cli.train import HEADERS, results_table
from tt_pipeline.market import PartitionReport
from tt_resources.terms import (
    HEADLINE_METRICS,
    METRIC_NAMES,
    POLICY_LABELS,
    POLICY_NAMES,
    TRAIN_TABLE_METRICS,
)

NOISE = ("Warning", "warning:", "I0000", "W0000", "absl", "oneDNN", "Beta", "Preview")
RECENT = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10)).strftime("%Y-%m-%d")
# a whole cell of the results table: a number (percent or not), an interval low..high, or "-" (undefined)
WHOLE_CELL = re.compile(r"-|-?\d[\d,]*\.\d+%?|-?\d+\.\d{2}\.\.-?\d+\.\d{2}")
SIGNIFICANCE_HEADERS = ["95% CI", "PSR", "DSR"]


def tt(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`python -m tt_cli ARGS` in an 80-column terminal on the embedded defaults under tmp_path; stderr
    merged into stdout in order."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "PYTHONWARNINGS")}
    env.update(TT_DATA_DIR=str(tmp_path), COLUMNS="80", LINES="50")
    return subprocess.run(
        [sys.executable, "-m", "tt_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,  # against a hang only
    )


def results_tables(output: str, title: str) -> dict[str, list[str]]:
    """The results table(s) whose title starts with `title` (and their `(cont.)` continuations): header ->
    cells per row, policy labels included (a label wrapped onto a second line joined again). Cells are parted
    by at least two spaces (headers like `max dd` and labels hold one)."""
    lines = output.splitlines()
    columns: dict[str, list[str]] = {}
    for k, line in enumerate(lines):
        if not line.startswith(title):
            continue
        header = next(i for i in range(k + 1, len(lines)) if lines[i].split()[:1] == ["policy"])
        names = re.split(r"\s{2,}", lines[header].strip())
        for row in lines[header + 2 :]:
            if not row.strip():  # the table ends at a blank line
                break
            cells = re.split(r"\s{2,}", row.strip())
            if len(cells) == 1 < len(names):  # a label wrapped onto a second line
                columns["policy"][-1] += f" {cells[0]}"
                continue
            assert len(cells) == len(names), row
            for name, cell in zip(names, cells, strict=True):
                columns.setdefault(name, []).append(cell)
    return columns


def assert_quiet_at_80_columns(output: str) -> None:
    lines = output.splitlines()
    assert [line for line in lines if len(line) > 80] == [], output
    assert [line for line in lines if any(word in line for word in NOISE)] == [], output
    assert "…" not in output


def assert_whole_results(columns: dict[str, list[str]], metrics: tuple[str, ...]) -> None:
    """Every metric's column is shown (in one of the tables), every cell whole."""
    expected = ["policy", *(HEADERS.get(m, m) for m in metrics), *SIGNIFICANCE_HEADERS]
    assert sorted(columns) == sorted(expected)
    cells = [cell for name, values in columns.items() if name != "policy" for cell in values]
    assert cells and [cell for cell in cells if not WHOLE_CELL.fullmatch(cell)] == []


def rendered(renderable, width: int = 80) -> str:
    """What a `width`-column terminal shows for `renderable` (no colour codes)."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def metrics_frame() -> pd.DataFrame:
    """Stitched out-of-sample rows as tt_eval stores them, one per policy, with the widest cells a run can
    print: huge percentages and ratios, negative numbers, undefined (NaN) values, an interval or none."""
    values = [12_345.6789, -0.987654, 1_234.5, -123.456, math.nan]  # a policy's value of every metric
    rows = []
    for k, policy in enumerate(POLICY_NAMES):
        row = {"policy": policy, **{name: values[(k + j) % 5] for j, name in enumerate(METRIC_NAMES)}}
        low, high = (-12.345, 23.456) if policy == "ppo" else (math.nan, math.nan)  # only seeds give one
        rows.append(row | {"sharpe_ci_low": low, "sharpe_ci_high": high, "psr": 0.999, "dsr": math.nan})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("names", "title"),
    [(HEADLINE_METRICS, "1d out-of-sample"), (TRAIN_TABLE_METRICS, "out-of-sample 1d")],
    ids=["demo", "train"],
)
def test_results_table_at_80_columns_shows_every_metric_whole(names, title):
    output = rendered(results_table(metrics_frame(), title, names, 80))
    assert_quiet_at_80_columns(output)
    columns = results_tables(output, title)
    assert_whole_results(columns, names)
    labels = [POLICY_LABELS[p] for p in POLICY_NAMES]  # as Dagster and the dashboard name them
    assert columns["policy"] == labels * (len(columns["policy"]) // len(labels))
    assert "12345.68" in columns["sharpe"] and "1234567.9%" in output  # the widest numbers, whole
    assert columns["95% CI"][:2] == ["-12.35..23.46", "-"]  # the interval over time, or none


def test_ingest_summary_at_80_columns_prints_every_count_whole():
    bars = {"1d": 9_876, "1h": 123_456, "15m": 12_345_678}
    reports = [
        PartitionReport(symbol, timeframe, "updated", requests=1_000, bars_written=n // 2, bars_stored=n)
        for timeframe, n in bars.items()
        for symbol in ("AAA", "BBB")
    ]
    output = rendered(ingest_summary(reports))
    assert_quiet_at_80_columns(output)
    rows = summary_rows(output)
    assert {timeframe: cells[4] for timeframe, cells in rows.items()} == {
        tf: f"{n:,}" for tf, n in bars.items()
    }
    assert {cells[5] for cells in rows.values()} == {"2,000"}


@pytest.mark.slow
def test_verbose_lets_dagster_beta_warnings_through(tmp_path):
    # the same command without --verbose prints none: the demo's smoke test (tests/test_demo.py) runs it
    args = ("ingest", "--symbols", "AAA", "--timeframe", "1d", "--source", "synthetic", "--start", RECENT)
    verbose = tt(tmp_path, "--verbose", *args, "--via-dagster")
    assert verbose.returncode == 0, verbose.stdout
    # tt_assets.market gives its AssetCheckSpecs a partitions_def, which Dagster marks preview
    assert "PreviewWarning: Specifying a partitions_def on an AssetCheckSpec" in verbose.stdout
    assert summary_rows(verbose.stdout)["1d"][:4] == ["1", "0", "1", "0"]
