"""ppo_model's walk-forward jobs (1 fold x 2 seeds) run as separate steps of a real Dagster instance with
the multiprocess executor, launched as `tt` launches a long training (tt_assets.launch.run_job with
`step_processes`: steps forked from a server that has loaded torch and the pipeline once); evaluation gathers
them. Tiny PPO settings, a SQLite database. Only ppo_model runs under the multiprocess executor; its dataset
and its evaluation run in this process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from tests.dagster_instance import instance_for_test
from tt_assets.definitions import defs
from tt_assets.launch import run_job
from tt_assets.partitions import range_tags, register_training_timeframe, symbol_ranges
from tt_resources.db import registry
from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import upgrade
from tt_resources.db.schema import evals, models
from tt_rl.config import RLConfig

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "MSFT"]
BARS_CONFIG = {
    "ops": {"market_data": {"config": {"start": "2025-07-08", "end": "2026-11-20T22:00:00+00:00"}}}
}
TINY_RL = {
    "env": {"window_size": 5, "max_episode_steps": 64},
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "net_arch": [16], "total_timesteps": 64},
    "eval": {"n_folds": 1, "seeds": 2},  # two jobs are enough for "each in its own step and process"
}
JOB_KEYS = ["fold0_seed0", "fold0_seed1"]
# tt_eval columns that name the run, its models and episodes rather than carry a figure
ID_COLUMNS = ["eval_id", "model_id", "fold_model_id", "episode_id", "run_id", "created_at"]


def training_job() -> dg.JobDefinition:
    """The code location's training_job."""
    return defs.resolve_job_def("training_job")


# how the executor's step processes find training_job (pytest imports this file under another module name)
TRAINING_JOB = dg.build_reconstructable_job("tests.test_training_fan_out", "training_job")


@dataclass
class FanOut:
    instance: dg.DagsterInstance
    engine: sa.Engine
    run_id: str
    model_id: str
    dataset_version: str
    rl_file: str
    data_dir: str


@pytest.fixture(scope="module")
def fan_out(tmp_path_factory) -> Iterator[FanOut]:
    """training_job's assets on 1d (ppo_model under the multiprocess executor), after a market_data_job run
    over SYMBOLS."""
    tmp = tmp_path_factory.mktemp("fan_out")
    url = f"sqlite:///{tmp / 'tt.sqlite'}"
    rl_file = tmp / "rl.yaml"
    rl_file.write_text(yaml.safe_dump(TINY_RL))
    engine = create_engine(url)
    upgrade(engine)
    # the step processes configure the code location's resources from the environment they inherit
    with pytest.MonkeyPatch.context() as env, instance_for_test(temp_dir=str(tmp)) as instance:
        env.setenv("TT_DATA_DIR", str(tmp))
        env.setenv("DATABASE_URL", url)
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        [key_range] = symbol_ranges(SYMBOLS, "1d")
        market = defs.resolve_job_def("market_data_job").execute_in_process(
            instance=instance, tags=range_tags(key_range), run_config=BARS_CONFIG
        )
        assert market.success
        register_training_timeframe(instance, "1d")
        training = defs.resolve_job_def("training_job")
        in_process = {"instance": instance, "partition_key": "1d"}
        assert training.execute_in_process(
            **in_process, asset_selection=[dg.AssetKey("training_dataset")]
        ).success
        fanned = run_job(  # as `tt train --via-dagster` runs a long training: steps forked from a warm server
            instance,
            "training_job",
            run_config={"ops": {"ppo_model": {"config": TINY_RL}}},
            partition_key="1d",
            asset_selection=[dg.AssetKey("ppo_model")],
            step_processes=True,
        )
        assert fanned.success
        assert training.execute_in_process(**in_process, asset_selection=[dg.AssetKey("evaluation")]).success
        [model] = registry.models_on_dataset(engine, _dataset_version(instance))
        yield FanOut(
            instance,
            engine,
            fanned.run_id,
            model["model_id"],
            model["dataset_version"],
            str(rl_file),
            str(tmp),
        )
    engine.dispose()


def _dataset_version(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
    return event.asset_materialization.metadata["dataset_version"].value


def _successes(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return list(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS))


def test_each_fold_and_seed_trains_in_its_own_step_and_process(fan_out):
    trained = [
        e
        for e in _successes(fan_out.instance, fan_out.run_id)
        if e.step_key.startswith("ppo_model.train_fold[")
    ]
    assert sorted(e.step_key for e in trained) == [f"ppo_model.train_fold[{key}]" for key in JOB_KEYS]
    processes = {e.dagster_event.pid for e in trained}
    assert len(processes) == len(JOB_KEYS) and os.getpid() not in processes


def test_evaluation_of_the_fanned_out_model_equals_the_in_process_walk_forward(fan_out):
    from tt_pipeline.models import evaluate_model, train_walk_forward

    config = RLConfig.from_file(fan_out.rl_file)
    config.ppo.progress_bar = False
    direct = train_walk_forward(
        fan_out.engine,
        fan_out.dataset_version,
        config,
        run_id="in-process",
        model_dir=Path(fan_out.data_dir) / "direct",
    )
    evaluate_model(fan_out.engine, direct.model_id, run_id="in-process")
    fanned, in_process = (_evaluation(fan_out.engine, m) for m in (fan_out.model_id, direct.model_id))
    assert len(fanned) == 2 + 2 + 1 + 3 * 2  # agent: 2 jobs, 2 seeds stitched, the summary; 3 baselines x 2
    pd.testing.assert_frame_equal(fanned, in_process)


def _evaluation(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    """The model's tt_eval rows without the id columns, by policy, fold, seed."""
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(sa.select(evals).where(evals.c.model_id == model_id)).mappings().all()
        )
    return frame.drop(columns=ID_COLUMNS).sort_values(["policy", "fold", "seed"]).reset_index(drop=True)


def test_re_executed_steps_reuse_the_registered_fold_and_walk_forward_model(fan_out):
    steps = ["ppo_model.train_fold[fold0_seed1]", "ppo_model.register_model"]
    again = dg.execute_job(  # the fixture's environment still points at its database and data dir
        TRAINING_JOB,
        fan_out.instance,
        reexecution_options=dg.ReexecutionOptions(fan_out.run_id, step_selection=steps),
        tags={"dagster/partition": "1d"},  # what the UI's re-execution copies from the parent run
    )
    assert again.success
    assert sorted(e.step_key for e in _successes(fan_out.instance, again.run_id)) == sorted(steps)
    with fan_out.engine.connect() as conn:
        group = conn.execute(
            sa.select(models.c.model_id).where(
                sa.or_(models.c.model_id == fan_out.model_id, models.c.group_id == fan_out.model_id)
            )
        ).scalars()
        assert len(list(group)) == 1 + len(JOB_KEYS)  # no fold model trained again, walk-forward model kept
    [materialised] = fan_out.instance.all_logs(
        again.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    assert materialised.asset_materialization.metadata["model_id"].value == fan_out.model_id
