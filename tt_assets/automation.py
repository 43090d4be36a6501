"""Jobs, schedules and sensors. features follow raw_bars through their eager automation condition."""

import dagster as dg

from tt_assets.conventions import DAILY_BARS_CRON, INTRADAY_BARS_CRON, US_EASTERN
from tt_assets.market import FEATURES, RAW_BARS
from tt_assets.models import evaluation, ppo_model, production_model, training_dataset
from tt_assets.partitions import (
    SYMBOL_DIM,
    TIMEFRAMES,
    TRAINING_DIM,
    bar_partitions,
    range_tags,
    split_key,
    symbol_ranges,
    training_partitions,
)
from tt_assets.resources import DatabaseResource, WatchlistResource

market_data_job = dg.define_asset_job(
    "market_data_job",
    selection=dg.AssetSelection.assets(RAW_BARS, FEATURES),
    partitions_def=bar_partitions,
    description="Fetch the missing tail of bars, check them (blocking) and update features.",
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(training_dataset, ppo_model, evaluation, production_model),
    partitions_def=training_partitions,
    description="Build the dataset, train PPO, evaluate it against the baselines and train the production "
    "model (whole history) for one timeframe.",
)
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(ppo_model, evaluation, production_model),
    partitions_def=training_partitions,
    description="Retrain and re-evaluate on the latest dataset of one timeframe, and train its production "
    "model (a challenger: promoted by hand, docs/trading.md).",
)


class RetrainPolicy(dg.ConfigurableResource):
    """When the retraining sensor asks for a new model: new dataset, or stitched OOS Sharpe below `min_sharpe`."""

    min_sharpe: float = 0.0

    @classmethod
    def from_env(cls) -> "RetrainPolicy":
        """TT_RETRAIN_MIN_SHARPE from the settings (an EnvVar reference when set)."""
        from tt_assets.resources import configured_fields

        return cls(**configured_fields(min_sharpe="tt_retrain_min_sharpe"))


def bar_run(key_range: dg.PartitionKeyRange, run_key_prefix: str = "") -> dg.RunRequest:
    """One market_data_job run over `key_range` (consecutive symbols of one timeframe).

    Its run_key names the range (`AAPL|1d..MSFT|1d`, after `run_key_prefix`): the daemon launches a key once per
    schedule tick (a schedule's keys are scoped to the scheduled time) or once ever (a sensor's)."""
    timeframe = split_key(key_range.start)[1]
    return dg.RunRequest(
        run_key=f"{run_key_prefix}{key_range.start}..{key_range.end}",
        tags={**range_tags(key_range), "tt/timeframe": timeframe},
    )


def bar_refresh_requests(
    context: dg.ScheduleEvaluationContext, timeframes: tuple[str, ...]
) -> list[dg.RunRequest]:
    """One market_data_job run per chunk of registered symbols and timeframe (a partition key range each)."""
    symbols = list(context.instance.get_dynamic_partitions(SYMBOL_DIM))
    return [bar_run(key_range) for timeframe in timeframes for key_range in symbol_ranges(symbols, timeframe)]


@dg.schedule(
    job=market_data_job,
    cron_schedule=DAILY_BARS_CRON,
    execution_timezone=US_EASTERN,
    description="Daily bars 15 minutes after the US close (16:15 New York, Monday to Friday).",
)
def daily_bars_schedule(context: dg.ScheduleEvaluationContext):
    return bar_refresh_requests(context, ("1d",)) or dg.SkipReason("no symbols registered")


@dg.schedule(
    job=market_data_job,
    cron_schedule=INTRADAY_BARS_CRON,
    execution_timezone=US_EASTERN,
    description="Hourly and 15-minute bars every hour in market hours (10:05 to 16:05 New York).",
)
def intraday_bars_schedule(context: dg.ScheduleEvaluationContext):
    return bar_refresh_requests(context, ("1h", "15m")) or dg.SkipReason("no symbols registered")


@dg.sensor(
    job=market_data_job,
    minimum_interval_seconds=300,
    description="Keeps the symbol partitions equal to the watchlist and fetches the bars of added symbols "
    "(one run per chunk and timeframe).",
)
def watchlist_sensor(context: dg.SensorEvaluationContext, watchlist: WatchlistResource):
    """Adds and deletes symbol partitions. Dagster records a tick as acted only when it launches runs, and a
    new symbol needs its bars anyway: a tick that adds symbols requests their runs, keyed by the cursor (the
    number of ticks that added symbols), so re-evaluating a tick launches nothing twice and a symbol added
    again later is fetched again. Deleted symbols keep their stored bars."""
    symbols = watchlist.symbols()
    registered = list(context.instance.get_dynamic_partitions(SYMBOL_DIM))
    known, wanted = set(registered), set(symbols)
    added = [s for s in symbols if s not in known]
    removed = [s for s in registered if s not in wanted]
    delete = dg.DeleteDynamicPartitionsRequest(partitions_def_name=SYMBOL_DIM, partition_keys=removed)
    if not added:
        if not removed:
            return dg.SkipReason(f"symbol partitions already match the watchlist ({len(symbols)} symbols)")
        return dg.SensorResult(
            dynamic_partitions_requests=[delete],
            skip_reason=f"removed from the symbol partitions: {', '.join(removed)} (their stored bars stay)",
        )
    additions = int(context.cursor or 0) + 1
    add = dg.AddDynamicPartitionsRequest(partitions_def_name=SYMBOL_DIM, partition_keys=added)
    # added symbols are registered last, in this order, so a range over them holds no other symbol
    return dg.SensorResult(
        run_requests=[
            bar_run(key_range, f"watchlist {additions}: ")
            for timeframe in TIMEFRAMES
            for key_range in symbol_ranges(added, timeframe)
        ],
        dynamic_partitions_requests=[add, delete] if removed else [add],
        cursor=str(additions),
    )


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=600,
    description="Retrains a timeframe once per new training_dataset version, and once per (dataset, code, "
    "config) when the model's stitched out-of-sample Sharpe is below the policy's threshold.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, database: DatabaseResource, retrain_policy: RetrainPolicy
):
    from tt_assets.models import RETRAIN_REASON_TAG, TRAINING_DATASET, latest_value, rl_config
    from tt_pipeline.retraining import retrain_request

    config = rl_config({}).to_dict()  # the defaults, written out in each run's config
    requests = []
    for timeframe in context.instance.get_dynamic_partitions(TRAINING_DIM):
        version = latest_value(context.instance, TRAINING_DATASET, timeframe, "dataset_version")
        if version is None:
            continue
        request = retrain_request(
            database.get_engine(),
            timeframe,
            version,
            min_sharpe=retrain_policy.min_sharpe,
            config=config,
        )
        if request is None:
            continue
        context.log.info(f"retraining {timeframe}: {request.reason}")
        requests.append(
            dg.RunRequest(
                run_key=request.run_key,
                partition_key=timeframe,
                run_config={"ops": {"ppo_model": {"config": config}}},
                tags={RETRAIN_REASON_TAG: request.reason},
            )
        )
    return requests or dg.SkipReason("every timeframe's model is current or cannot improve by retraining")
