"""`tt train --via-dagster` refuses what only the direct path does. Its whole chain, recorded as Dagster runs
with lineage, is asserted on the run tests/test_one_pipeline.py compares with the direct path."""

from __future__ import annotations

from click.testing import CliRunner

from tt_cli.main import cli


def test_model_dir_is_refused_with_via_dagster(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tt.sqlite'}")
    result = CliRunner().invoke(cli, ["train", "--via-dagster", "--model-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--model-dir" in result.output


def test_step_processes_fork_from_a_server_only_under_the_environment_it_started_with(monkeypatch):
    """A forked step inherits the forkserver's environment: a second run of this process under another
    DATABASE_URL would run its steps against the first run's database; it spawns them instead."""
    from tt_assets import launch

    monkeypatch.setattr(launch, "_forkserver_environ", None)
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/first.sqlite")
    assert launch._start_method() == launch.FORKSERVER  # the first run starts the server
    assert launch._start_method() == launch.FORKSERVER
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/second.sqlite")
    assert launch._start_method() == {"spawn": {}}
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/first.sqlite")
    assert launch._start_method() == launch.FORKSERVER


def test_only_several_long_training_jobs_get_processes_of_their_own():
    from tt_cli.demo import DEMO_BUDGET
    from tt_cli.pipeline import PROCESS_MIN_TIMESTEPS, in_step_processes
    from tt_rl.config import RLConfig

    demo = RLConfig.from_dict(DEMO_BUDGET.rl_config())
    assert in_step_processes(demo)  # 2 folds x 3 seeds x 65,536 steps
    assert not in_step_processes(RLConfig.from_dict(DEMO_BUDGET.rl_config(PROCESS_MIN_TIMESTEPS - 1)))
    one_job = RLConfig.from_dict({**DEMO_BUDGET.rl_config(), "eval": {"n_folds": 1, "seeds": 1}})
    assert not in_step_processes(one_job)
