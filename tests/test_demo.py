"""`tt demo` (= `make demo`) end to end on the embedded defaults: one shared scenario (a first run in a real
80-column process, a second run, then a run that fails) read by several claims, and a run on PostgreSQL."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.test_ingest_cli import summary_rows
from tests.test_quiet_console import assert_quiet_at_80_columns, assert_whole_results, results_tables, tt
from tt_cli.demo import planted_oracle
from tt_cli.main import cli
from tt_resources.db.engine import create_engine
from tt_resources.terms import HEADLINE_METRICS, POLICY_LABELS

pytestmark = pytest.mark.slow

# PPO steps per model: each of the demo's 4 training envs (tt_cli.demo.DemoBudget) finishes an episode
STEPS = 2_048
DEMO = ("demo", "--symbols", "2", "--steps", str(STEPS))


@dataclass
class DemoRuns:
    data_dir: Path
    first: str  # stdout and stderr of the first run, a real process in an 80-column terminal
    second: str  # the second run's output
    jobs: list[str]  # the Dagster runs' job names after the second run
    failed_output: str  # a third run's, with a file where the datasets directory belongs
    failed_exit_code: int


def demo_in_process(data_dir: Path, *args: str, columns: str = "80"):
    """`tt demo ARGS` in this process on the embedded defaults under data_dir (DAGSTER_HOME unset after)."""
    env = {"TT_DATA_DIR": str(data_dir), "DATABASE_URL": None, "DAGSTER_HOME": None, "COLUMNS": columns}
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRuns:
    data_dir = tmp_path_factory.mktemp("demo")
    first = tt(data_dir, *DEMO)
    assert first.returncode == 0, first.stdout
    second = demo_in_process(data_dir, *DEMO)
    assert second.exit_code == 0, second.output
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        jobs = sorted(run.job_name for run in instance.get_runs())
    # the bars are fresh: the third run gets as far as training_job, which writes under datasets/
    shutil.move(data_dir / "datasets", data_dir / "datasets.kept")
    (data_dir / "datasets").write_text("a file where the datasets directory belongs")
    failed = demo_in_process(data_dir, "demo", "--symbols", "2", "--steps", "128", columns="200")
    return DemoRuns(data_dir, first.stdout, second.output, jobs, failed.output, failed.exit_code)


def test_demo_ingests_checks_trains_and_reports(demo):
    output = demo.first
    assert "partitions: 6 (2 symbols x 3 timeframes), 0 already fresh" in output
    assert "raw_bars checks passed: 30/30" in output
    assert "(trained now: new dataset)" in output
    # at 80 columns: one table (labels wrapped onto two lines), every column whole, the test span in its title
    table = results_tables(output, "1d out-of-sample: test ")
    assert "(cont.)" not in output
    [title] = [line.strip() for line in output.splitlines() if line.startswith("1d out-of-sample: test ")]
    assert re.fullmatch(
        r"1d out-of-sample: test \d{4}-\d\d-\d\d\.\.\d{4}-\d\d-\d\d, 2 windows, \d+ sessions", title
    )
    # the default synthetic market plants sign persistence (TT_SYNTHETIC_SIGNAL): its oracle is scored too;
    # each policy by its label, as Dagster and the dashboard show it
    assert table["policy"] == [
        POLICY_LABELS[p] for p in ("ppo", "oracle", "equal_weight", "equal_weight_vol", "cash")
    ]  # each wrapped table's rows
    ppo, oracle, cash = 0, 1, 4
    assert (
        table["95% CI"][ppo] == "-" or ".." in table["95% CI"][ppo]
    )  # the Sharpe ratio's interval over time
    # no volatility: no Sharpe, interval, PSR or DSR
    assert [table[name][cash] for name in ("sharpe", "95% CI", "PSR", "DSR")] == ["-"] * 4
    # a sampling interval over time for every policy with volatility; the oracle was never searched
    assert table["95% CI"][oracle] != "-" and table["DSR"][oracle] == "-"
    assert "2 walk-forward folds (anchored, embargo 1 bar) x 3 seed(s)" in output
    # the training's progress, followed from the Dagster run's step logs: its last frame, all steps done
    steps = 2 * 3 * STEPS
    assert re.search(rf"^evaluating .* {steps:,}/{steps:,} steps \d+:\d\d:\d\d", output, re.M), output
    assert "\nVerdict: " in output  # one verdict line, stored with the evaluation
    engine = create_engine(f"sqlite:///{demo.data_dir / 'tt.sqlite'}")  # the embedded default database
    with engine.connect() as conn:  # training episodes for the dashboard's train side, per fold and seed
        trained = conn.execute(
            sa.text(
                "SELECT m.fold, m.seed, count(*) FROM tt_episode e JOIN tt_model m ON m.model_id = e.model_id"
                " WHERE e.split = 'train' AND e.status = 'finished' AND m.group_id IS NOT NULL"
                " GROUP BY m.fold, m.seed"
            )
        ).all()
        # the walk-forward model's production model (the demo trains it after the evaluation), trained too
        production = conn.execute(
            sa.text(
                "SELECT count(*) FROM tt_episode e JOIN tt_model m ON m.model_id = e.model_id"
                " JOIN tt_model w ON w.model_id = m.production_of"
                " WHERE e.split = 'train' AND w.group_id IS NULL AND m.fold IS NULL"
            )
        ).scalar_one()
    engine.dispose()
    assert sorted((fold, seed) for fold, seed, _ in trained) == [(f, s) for f in (0, 1) for s in (0, 1, 2)]
    assert production > 0


def test_demo_at_80_columns_is_quiet_and_every_number_whole(demo):
    # stdout and stderr of a real process: a third-party notice or a native log line would show here
    assert_quiet_at_80_columns(demo.first)
    assert_whole_results(results_tables(demo.first, "1d out-of-sample: test "), HEADLINE_METRICS)
    engine = create_engine(f"sqlite:///{demo.data_dir / 'tt.sqlite'}")
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.text("SELECT timeframe, count(*) FROM tt_prices GROUP BY timeframe")).all()
        )
    engine.dispose()
    rows = summary_rows(demo.first)
    assert set(rows) == {"1d", "1h", "15m"}
    # a first run writes every stored bar: the summary's "bars written" (5th count) is the stored count, whole
    assert {tf: cells[4] for tf, cells in rows.items()} == {tf: f"{n:,}" for tf, n in stored.items()}
    assert max(stored.values()) > 1000  # a number with a thousands separator was printed whole


def test_second_demo_is_fresh_and_does_not_retrain(demo):
    assert "0 already fresh" not in demo.second and "6 already fresh" in demo.second
    assert "bars: 0 written this run" in demo.second
    assert "(not retrained)" in demo.second
    # first: 3 market runs + dataset + retrain; second: 3 market runs + dataset (no retrain)
    assert demo.jobs.count("market_data_job") == 6 and demo.jobs.count("training_job") == 2
    assert demo.jobs.count("retrain_job") == 1


def test_an_unexpected_error_in_the_demo_names_its_type_and_step(demo):
    assert demo.failed_exit_code == 1, demo.failed_output
    [line] = [line for line in demo.failed_output.splitlines() if line.startswith("Error:")]
    assert line.startswith("Error: training_job 1d failed (run ")
    missing = str(demo.data_dir / "datasets" / "1d")
    assert f"NotADirectoryError: [Errno 20] Not a directory: {missing!r}" in line


def test_demo_runs_on_the_database_that_database_url_names_with_the_same_numbers(
    demo, tmp_path, monkeypatch, pg_url
):
    # the pinned synthetic market (TT_SYNTHETIC_END) and seeded training: another run, on another day,
    # machine or database, prints the first run's numbers
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(cli, list(DEMO))
    assert result.exit_code == 0, result.output
    assert "raw_bars checks passed: 30/30" in result.output
    assert results_tables(result.output, "1d out-of-sample: test ") == results_tables(
        demo.first, "1d out-of-sample: test "
    )
    verdict = [line for line in result.output.splitlines() if line.startswith("Verdict: ")]
    assert verdict and verdict[0] in " ".join(demo.first.split())
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in ("tt_dataset", "tt_eval")
        ]
    engine.dispose()
    assert counts[0] == 1 and counts[1] > 0
    assert not (tmp_path / "tt.sqlite").exists()  # nothing went to the embedded default


def test_the_plain_synthetic_market_has_no_oracle(monkeypatch):
    assert planted_oracle() == "sign_persistence"  # the default market plants sign persistence
    monkeypatch.setenv("TT_SYNTHETIC_SIGNAL", "none")
    assert planted_oracle() is None
    monkeypatch.setenv("TT_SYNTHETIC_SIGNAL", "sign_persistence")
    monkeypatch.setenv("TT_SOURCE", "csv")
    assert planted_oracle() is None


def test_demo_ends_with_a_dry_run_of_the_next_session_and_sends_nothing(demo):
    # the production model of the demo's configuration, promoted only when its verdict allows: a tiny demo
    # shows no skill, so it is refused with the verdict and the dry run is the production model's
    output = demo.first
    assert "next session: dry run (nothing is sent)" in output
    assert re.search(r"^not promoted: model \w{16} cannot be promoted", output, re.M), output
    assert re.search(
        r"^session \d{4}-\d\d-\d\d: orders for the open of \d{4}-\d\d-\d\d; model \w{16}$", output, re.M
    )
    assert "dry run: nothing sent" in output
    engine = create_engine(f"sqlite:///{demo.data_dir / 'tt.sqlite'}")
    with engine.connect() as conn:
        production = conn.execute(
            sa.text("SELECT count(*) FROM tt_model WHERE production_of IS NOT NULL")
        ).scalar()
        orders = conn.execute(sa.text("SELECT count(*) FROM tt_order")).scalar()
        promotions = conn.execute(sa.text("SELECT count(*) FROM tt_promotion")).scalar()
    engine.dispose()
    assert (production, orders, promotions) == (1, 0, 0)
