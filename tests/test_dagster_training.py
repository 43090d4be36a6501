"""training_dataset -> ppo_model -> evaluation through Dagster with tiny PPO settings (SQLite)."""

import dagster as dg
import yaml

from tt_assets.definitions import defs
from tt_assets.partitions import range_tags, symbol_ranges
from tt_resources.resources import DatabaseResource, IbkrResource, MarketDataResource

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
BARS_CONFIG = {"ops": {"raw_bars": {"config": {"history_days": 500, "as_of": "2026-11-20T22:00:00+00:00"}}}}
TINY_RL = {
    "env": {"window_size": 5, "max_episode_steps": 64},
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "net_arch": [16]},
    "eval": {"n_windows": 2},
}


def test_dataset_model_evaluation_materialise_with_metadata(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    rl_file = tmp_path / "rl.yaml"
    rl_file.write_text(yaml.safe_dump(TINY_RL))
    resources = {
        "database": DatabaseResource(url=sqlite_engine.url.render_as_string(hide_password=False)),
        "market_data": MarketDataResource(ibkr=IbkrResource()),
    }
    training_config = {"config": {"rl_config_path": str(rl_file), "total_timesteps": 128}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        [key_range] = symbol_ranges(SYMBOLS, "1d")
        market = defs.resolve_job_def("market_data_job").execute_in_process(
            instance=instance, tags=range_tags(key_range), run_config=BARS_CONFIG, resources=resources
        )
        assert market.success
        result = defs.resolve_job_def("training_job").execute_in_process(
            instance=instance,
            partition_key="1d",
            resources=resources,
            run_config={"ops": {"ppo_model": training_config, "evaluation": training_config}},
        )
        assert result.success
        events = {
            e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()
        }
        dataset = events["training_dataset"].metadata
        assert dataset["symbols"].value == 3 and dataset["symbols_excluded"].value == []
        assert len(dataset["dataset_version"].value) == 16
        [panel_check] = result.get_asset_check_evaluations()
        assert panel_check.check_name == "panel_sane" and panel_check.passed

        model = events["ppo_model"].metadata
        assert model["total_timesteps"].value >= 128
        assert model["dataset_version"].value == dataset["dataset_version"].value
        assert model["code_version"].value and model["model_id"].value

        evaluation = events["evaluation"].metadata
        assert evaluation["model_id"].value == model["model_id"].value
        assert "| ppo" in evaluation["metrics"].value and "equal_weight" in evaluation["metrics"].value
        assert evaluation["equity_curve"].value.startswith(
            "![1d out-of-sample equity](data:image/png;base64,"
        )
