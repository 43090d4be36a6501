"""`tt demo` (= `make demo`) end to end on the embedded defaults, twice."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.test_quiet_console import results_tables
from tt_cli.main import cli
from tt_resources.db.engine import create_engine

pytestmark = pytest.mark.slow


def test_demo_then_second_run_is_fresh_and_does_not_retrain(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    first = CliRunner().invoke(cli, ["demo", "--symbols", "2", "--steps", "256"])
    assert first.exit_code == 0, first.output
    assert "partitions: 6 (2 symbols x 3 timeframes), 0 already fresh" in first.output
    assert "raw_bars checks passed: 24/24" in first.output
    assert "(trained now: new dataset)" in first.output
    lines = first.output.splitlines()
    table = results_tables(first.output, "1d out-of-sample")  # at 80 columns: wrapped, every column whole
    # the default synthetic market plants sign persistence (TT_SYNTHETIC_SIGNAL): its oracle is scored too
    policies = ["ppo", "oracle", "equal_weight", "equal_weight_vol", "cash"]
    assert table["policy"] == policies * (len(table["policy"]) // len(policies))  # each wrapped table's rows
    ppo, oracle, cash = 0, 1, 4
    assert table["95% CI"][ppo] == "-" or ".." in table["95% CI"][ppo]  # the interval across the 2 seeds
    # no volatility: no Sharpe, interval, PSR or DSR
    assert [table[name][cash] for name in ("sharpe", "95% CI", "PSR", "DSR")] == ["-"] * 4
    # deterministic: no seeds, never searched
    assert table["95% CI"][oracle] == "-" and table["DSR"][oracle] == "-"
    assert "2 walk-forward folds (anchored, embargo 1 bar) x 2 seed(s)" in first.output
    assert "Nothing significant found" in first.output or "is significant" in first.output
    assert max(map(len, lines)) <= 80
    assert (tmp_path / "tt.sqlite").exists()
    engine = create_engine(f"sqlite:///{tmp_path / 'tt.sqlite'}")
    with engine.connect() as conn:  # training episodes for the dashboard's train side, per fold and seed
        trained = conn.execute(
            sa.text(
                "SELECT m.fold, m.seed, count(*) FROM tt_episode e JOIN tt_model m ON m.model_id = e.model_id"
                " WHERE e.split = 'train' AND e.status = 'finished' GROUP BY m.fold, m.seed"
            )
        ).all()
    engine.dispose()
    assert sorted((fold, seed) for fold, seed, _ in trained) == [(0, 0), (0, 1), (1, 0), (1, 1)]

    second = CliRunner().invoke(cli, ["demo", "--symbols", "2", "--steps", "256"])
    assert second.exit_code == 0, second.output
    assert "0 already fresh" not in second.output and "6 already fresh" in second.output
    assert "bars: 0 written this run" in second.output
    assert "(not retrained)" in second.output

    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        jobs = sorted(run.job_name for run in instance.get_runs())
    # first: 3 market runs + dataset + retrain; second: 3 market runs + dataset (no retrain)
    assert jobs.count("market_data_job") == 6 and jobs.count("training_job") == 2
    assert jobs.count("retrain_job") == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_demo_runs_on_the_database_that_database_url_names(tmp_path, monkeypatch, request, backend):
    url = (
        f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TT_SYNTHETIC_SIGNAL", "none")  # the plain market: no planted signal, no oracle
    result = CliRunner().invoke(cli, ["demo", "--symbols", "2", "--steps", "128"])
    assert result.exit_code == 0, result.output
    assert "raw_bars checks passed: 24/24" in result.output
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in ("tt_dataset", "tt_eval")
        ]
        policies = set(conn.execute(sa.text("SELECT DISTINCT policy FROM tt_eval")).scalars())
    engine.dispose()
    assert counts[0] == 1 and counts[1] > 0
    assert policies == {"ppo", "equal_weight", "equal_weight_vol", "cash"}
    assert not (tmp_path / "tt.sqlite").exists()  # nothing went to the embedded default


def test_an_unexpected_error_in_the_demo_names_its_type_and_step(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "datasets").write_text("a file where the datasets directory belongs")
    result = CliRunner().invoke(cli, ["demo", "--symbols", "2", "--steps", "128"])
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert line.startswith("Error: training_job 1d failed (run ")
    assert f"NotADirectoryError: [Errno 20] Not a directory: {str(tmp_path / 'datasets' / '1d')!r}" in line
