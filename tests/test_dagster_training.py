"""training_dataset -> ppo_model -> evaluation through Dagster with tiny PPO settings (SQLite), on the bars
of one market_data_job run shared by the tests."""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.dagster_instance import instance_for_test
from tt_assets.definitions import defs
from tt_assets.partitions import range_tags, register_training_timeframe, symbol_ranges
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_pipeline.trading.promotion import verdict_of
from tt_resources.db import registry
from tt_resources.db.engine import create_engine

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
BARS_CONFIG = {
    "ops": {"market_data": {"config": {"start": "2025-07-08", "end": "2026-11-20T22:00:00+00:00"}}}
}
# ppo_model's run config (RLConfig sections); a learning rate other than the default to find in the run. No
# no-trade band: 64 steps leave the action means near 0, so the few small positions the policy takes (long-only
# scores max(a, 0)) would stay below the default band and the agent would never trade (its Sharpe undefined)
TINY_RL = {
    "env": {"window_size": 5, "max_episode_steps": 64, "no_trade_band": 0.0},
    "ppo": {
        "total_timesteps": 64,
        "learning_rate": 5e-4,
        "n_steps": 64,
        "batch_size": 32,
        "n_epochs": 1,
        "net_arch": [16],
    },
    "eval": {"n_folds": 2, "seeds": 1},
}


@dataclass
class Market:
    instance: dg.DagsterInstance
    engine: sa.Engine
    url: str
    resources: dict


@pytest.fixture(scope="module")
def market(tmp_path_factory, sqlite_template) -> Iterator[Market]:
    """A Dagster instance and a SQLite database holding a market_data_job run's 1d bars of SYMBOLS."""
    path = tmp_path_factory.mktemp("market") / "tt.sqlite"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    resources = {
        "database": DatabaseResource(url=url),
        "market_data": MarketDataResource(),
        "watchlist": WatchlistResource(),
    }
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        register_training_timeframe(instance, "1d")
        [key_range] = symbol_ranges(SYMBOLS, "1d")
        bars = defs.resolve_job_def("market_data_job").execute_in_process(
            instance=instance, tags=range_tags(key_range), run_config=BARS_CONFIG, resources=resources
        )
        assert bars.success
        yield Market(instance, engine, url, resources)
    engine.dispose()


def test_dataset_model_evaluation_materialise_with_metadata(market, tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    instance, resources, sqlite_engine = market.instance, market.resources, market.engine
    result = defs.resolve_job_def("training_job").execute_in_process(
        instance=instance,
        partition_key="1d",
        resources=resources,
        run_config={"ops": {"ppo_model": {"config": TINY_RL}}},
    )
    assert result.success
    events = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
    }
    dataset = events["training_dataset"].metadata
    assert dataset["symbols"].value == 3 and dataset["symbols_excluded"].value == {}
    assert len(dataset["dataset_version"].value) == 16
    assert dataset["test_pct"].value == 30.0
    assert isinstance(dataset["split_ts"], dg.TimestampMetadataValue)
    assert dataset["start_ts"].value < dataset["split_ts"].value < dataset["end_ts"].value

    model = events["ppo_model"].metadata
    assert model["total_timesteps"].value >= 2 * 64  # one model per fold
    assert (model["folds"].value, model["seeds"].value, model["embargo_bars"].value) == (2, 1, 5)
    assert len(model["fold_models"].value) == 2
    assert model["dataset_version"].value == dataset["dataset_version"].value
    assert model["code_version"].value and model["model_id"].value

    evaluation = events["evaluation"].metadata
    assert evaluation["model_id"].value == model["model_id"].value
    [stitched_ppo] = [
        r
        for r in registry.stitched_metrics(sqlite_engine, model["model_id"].value).to_dict("records")
        if r["policy"] == "ppo"
    ]
    test_start = registry.dataset(sqlite_engine, dataset["dataset_version"].value)["split_ts"]
    assert stitched_ppo["test_start"] == test_start  # its own dataset's test period
    table = {r.data["Policy"]: r.data for r in evaluation["metrics"].value.records}
    assert list(table)[:3] == ["PPO agent", "Equal weight (buy & hold)", "Equal weight, vol-targeted"]
    assert table["PPO agent"]["Total return"].endswith(" %")
    assert evaluation["sharpe"].value == round(stitched_ppo["sharpe"], 2)
    assert evaluation["psr_pct"].value == round(100 * stitched_ppo["psr"], 1)
    assert table["PPO agent"]["PSR vs cash"] == f"{evaluation['psr_pct'].value:.1f} %"
    assert evaluation["verdict"].value == stitched_ppo["verdict"] and stitched_ppo["verdict"].startswith(
        "Verdict: "
    )
    assert evaluation["dsr_vs_best_pct"].value == round(100 * stitched_ppo["dsr_vs_best"], 1)
    assert evaluation["best_baseline"].value == stitched_ppo["best_baseline"]
    assert evaluation["equity_curve"].value.startswith("![out-of-sample equity](data:image/svg+xml,")
    assert evaluation["equity_curve_detail"].value.startswith(
        "![1d out-of-sample equity, folds stitched](data:image/png;base64,"
    )
    assert evaluation["dashboard_view"].value == f"?model={model['model_id'].value}"
    assert "dashboard" not in evaluation  # the address is the definition's, from the current settings
    report = tmp_path / "reports" / f"{model['model_id'].value}-{result.run_id}.html"
    assert evaluation["tear_sheet"].value == str(report)  # the tear sheet the evaluation wrote
    assert "Tear sheet · PPO agent" in report.read_text() and "Trade blotter" in report.read_text()

    # the deployable model: the evaluated configuration trained on the whole history, linked to its evaluation
    production = events["production_model"].metadata
    row = registry.model(sqlite_engine, production["model_id"].value)
    assert row["production_of"] == production["production_of"].value == model["model_id"].value
    assert row["dataset_version"] == dataset["dataset_version"].value
    verdict, promotable = verdict_of(sqlite_engine, model["model_id"].value)
    assert (production["verdict"].value, production["promotable"].value) == (verdict, promotable)
    assert verdict == stitched_ppo["verdict"]
    assert production["dashboard_view"].value == f"?model={row['model_id']}"


def test_a_changed_split_is_a_new_dataset_that_training_and_evaluation_use(market, tmp_path, monkeypatch):
    # the code location's own resources (a job run on an asset subset cannot take overrides), pointed at
    # the test's database through the environment
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", market.url)
    instance, sqlite_engine, job = market.instance, market.engine, defs.resolve_job_def
    versions = []
    for fraction in (0.3, 0.5):
        built = job("training_job").execute_in_process(
            instance=instance,
            partition_key="1d",
            run_config={"ops": {"training_dataset": {"config": {"test_fraction": fraction}}}},
            asset_selection=[dg.AssetKey("training_dataset")],
        )
        [event] = built.get_asset_materialization_events()
        versions.append(event.event_specific_data.materialization.metadata["dataset_version"].value)
    first, second = (registry.dataset(sqlite_engine, v) for v in versions)
    assert versions[0] != versions[1] and first["content_version"] == second["content_version"]
    assert (first["test_fraction"], second["test_fraction"]) == (0.3, 0.5)
    assert second["split_ts"] < first["split_ts"]

    trained = job("retrain_job").execute_in_process(
        instance=instance,
        partition_key="1d",
        run_config={"ops": {"ppo_model": {"config": TINY_RL}}},
    )
    assert trained.success
    # the run carries the values it trained with (what its page in the UI shows), and so does the model
    run_config = instance.get_run_by_id(trained.run_id).run_config["ops"]["ppo_model"]["config"]
    assert run_config["ppo"]["learning_rate"] == 5e-4
    [model] = registry.models_on_dataset(sqlite_engine, versions[1])
    assert model["config"]["ppo"]["learning_rate"] == 5e-4
    assert model["test_start"] == second["split_ts"]  # the walk-forward's test period is the dataset's
    folds = registry.fold_models(sqlite_engine, model["model_id"])
    assert [f["fold"] for f in folds] == [0, 1] and folds[0]["train_end"] < second["split_ts"]
    for fold_model in folds:  # each fold refits on the bars before its own test window
        assert fold_model["train_end"] < fold_model["test_start"]
    stitched = registry.stitched_metrics(sqlite_engine, model["model_id"])
    assert (stitched["test_end"] > second["split_ts"]).all()
    assert (stitched["test_start"] == second["split_ts"]).all()  # the bar the first test step starts from
