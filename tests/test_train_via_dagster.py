"""`tt train --via-dagster`: the whole chain runs as Dagster runs recorded in the instance."""

from __future__ import annotations

import itertools

import dagster as dg
import pytest
from click.testing import CliRunner

from tt_cli.main import cli
from tt_resources.terms import ORACLE, POLICY_NAMES

pytestmark = pytest.mark.slow


def test_train_via_dagster_records_lineage(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tt.sqlite'}")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    config = tmp_path / "rl.json"
    config.write_text(
        '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "learning_rate": 0.0005},'
        ' "env": {"max_episode_steps": 50}, "eval": {"n_folds": 2, "seeds": 1}}'
    )
    args = [
        "train",
        "--via-dagster",
        "--limit",
        "3",
        "--steps",
        "128",
        "--months",
        "14",
        "--config",
        str(config),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output[result.output.index("out-of-sample 1d") :].splitlines()
    header = next(k for k, line in enumerate(lines) if line.split()[:1] == ["policy"])
    rows = itertools.takewhile(str.strip, lines[header + 2 :])  # the table ends at a blank line
    policies = [line.split()[0] for line in rows]
    assert sorted(policies) == sorted(p for p in POLICY_NAMES if p != ORACLE)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        jobs = [run.job_name for run in instance.get_runs()]
        assert sorted(jobs) == ["market_data_job", "retrain_job", "training_job"]
        # the RL config travels as the run's config, not as a file in the data directory
        [retrain] = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        ppo = retrain.run_config["ops"]["ppo_model"]["config"]["ppo"]
        assert (ppo["learning_rate"], ppo["total_timesteps"]) == (0.0005, 128)
        for asset in ("raw_bars", "features", "training_dataset", "ppo_model", "evaluation"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
    assert list((tmp_path / "models" / "1d").glob("*/model.zip"))
    assert not (tmp_path / "configs").exists()


def test_model_dir_is_refused_with_via_dagster(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tt.sqlite'}")
    result = CliRunner().invoke(cli, ["train", "--via-dagster", "--model-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--model-dir" in result.output
