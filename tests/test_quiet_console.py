"""Quiet, whole consoles: `tt demo` in an 80-column terminal prints no third-party notice and no cut line
(stdout and stderr of a real process, so TensorFlow's C++ log is seen too); `tt --verbose` lets them through."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.test_ingest_cli import summary_rows
from tt_cli.train import HEADERS
from tt_resources.db.engine import create_engine
from tt_resources.terms import HEADLINE_METRICS, TRAIN_TABLE_METRICS

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
    """The results table(s) titled `title` (and their `(cont.)` continuations): header -> cells per row,
    policy included. Cells are parted by at least two spaces (headers like `max dd` hold one)."""
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


@pytest.mark.slow
def test_demo_at_80_columns_is_quiet_and_every_number_whole(tmp_path):
    result = tt(tmp_path, "demo", "--symbols", "10", "--steps", "1024")
    assert result.returncode == 0, result.stdout
    assert_quiet_at_80_columns(result.stdout)
    assert_whole_results(results_tables(result.stdout, "1d out-of-sample"), HEADLINE_METRICS)

    engine = create_engine(f"sqlite:///{tmp_path / 'tt.sqlite'}")
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.text("SELECT timeframe, count(*) FROM tt_prices GROUP BY timeframe")).all()
        )
    engine.dispose()
    rows = summary_rows(result.stdout)
    assert set(rows) == {"1d", "1h", "15m"}
    # a first run writes every stored bar: the summary's "bars written" (5th count) is the stored count, whole
    assert {tf: cells[4] for tf, cells in rows.items()} == {tf: f"{n:,}" for tf, n in stored.items()}
    assert all(n > 1000 for n in stored.values())  # numbers with a thousands separator were printed whole


@pytest.mark.slow
def test_train_at_80_columns_shows_every_metric_whole(tmp_path):
    config = tmp_path / "rl.json"
    config.write_text(
        '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},'
        ' "env": {"max_episode_steps": 50}, "eval": {"n_folds": 2, "seeds": 2}}'
    )
    args = ("--limit", "3", "--steps", "128", "--months", "14", "--config", str(config))
    result = tt(tmp_path, "train", *args)
    assert result.returncode == 0, result.stdout
    assert_quiet_at_80_columns(result.stdout)
    assert_whole_results(results_tables(result.stdout, "out-of-sample 1d"), TRAIN_TABLE_METRICS)


def test_verbose_lets_dagster_beta_warnings_through(tmp_path):
    args = ("ingest", "--symbols", "AAA", "--interval", "1d", "--source", "synthetic", "--start", RECENT)
    quiet = tt(tmp_path / "quiet", *args, "--via-dagster")
    verbose = tt(tmp_path / "verbose", "--verbose", *args, "--via-dagster")
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stdout + verbose.stdout
    assert "BetaWarning" not in quiet.stdout and "PreviewWarning" not in quiet.stdout
    # tt_assets.partitions builds a MultiToSingleDimensionPartitionMapping, which Dagster marks beta
    assert "BetaWarning: Class `MultiToSingleDimensionPartitionMapping`" in verbose.stdout
    assert (
        summary_rows(quiet.stdout)["1d"][:4] == summary_rows(verbose.stdout)["1d"][:4] == ["1", "0", "1", "0"]
    )
