"""The code location: `dagster dev` (workspace.yaml / pyproject [tool.dagster]) loads `defs` from here.

Loading imports only dagster, pandas and SQLAlchemy; tensortrade, torch and SB3 load inside asset bodies.
"""

# ruff: noqa: E402  the asset modules are imported after quiet.quiet() on purpose

import dagster as dg

from tt_assets import quiet

quiet.quiet()  # before the asset modules below build definitions that raise Dagster's beta/preview warnings

from tt_assets.automation import (
    RetrainPolicy,
    daily_bars_schedule,
    intraday_bars_schedule,
    market_data_job,
    retrain_job,
    retraining_sensor,
    training_job,
    watchlist_sensor,
)
from tt_assets.executors import executor
from tt_assets.market import market_data
from tt_assets.models import evaluation, ppo_model, production_model, training_dataset
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_assets.trading import (
    LivePolicy,
    live_performance,
    live_performance_sensor,
    reconciliation,
    trading_close_schedule,
    trading_decision,
    trading_job,
    trading_open_schedule,
)


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources, configured from the environment (embedded defaults when nothing is set)."""
    return {
        "database": DatabaseResource.from_env(),
        "market_data": MarketDataResource.from_env(),
        "watchlist": WatchlistResource.from_env(),
        "retrain_policy": RetrainPolicy.from_env(),
        "live_policy": LivePolicy.from_env(),
    }


defs = dg.Definitions(
    assets=[
        market_data,
        training_dataset,
        ppo_model,
        evaluation,
        production_model,
        trading_decision,
        reconciliation,
        live_performance,
    ],
    jobs=[market_data_job, training_job, retrain_job, trading_job],
    schedules=[daily_bars_schedule, intraday_bars_schedule, trading_close_schedule, trading_open_schedule],
    sensors=[watchlist_sensor, retraining_sensor, live_performance_sensor],
    resources=resources_from_env(),
    executor=executor(),  # TT_EXECUTOR: Dagster's default, or Celery workers
)
