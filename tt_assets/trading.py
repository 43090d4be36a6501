"""The trading group (docs/trading.md, docs/dagster.md): the champion's decision at a session's close and what
became of it, partitioned by that session.

Partition D (a `trading_session` key, `2026-11-18`) holds everything about the decision taken at D's close:
- target_portfolio: the champion's target weights (tt_target), from D's 1d bars and features;
- orders: the market-on-open orders for the next session (tt_order), submitted only when every pre-trade
  limit passes; each limit is a blocking asset check of orders, so a breach fails the step and nothing
  downstream runs;
- fills, positions: their executions at the next session's open and the book after them (tt_fill,
  tt_position), reconciled after that open;
- live_performance: the next session live against the shadow backtest (tt_live_performance).
target_portfolio and orders are one step: tt_pipeline.trading.session.trade_session, the function `tt trade`
runs. Sessions only: the schedules add a partition for a date only when the XNYS calendar
(tt_resources.calendar) has a session then, so a holiday has no partition and no run.

Loading this module imports only Dagster; the bodies import the pipeline (torch with the policy).
"""

import datetime as dt
import json
from datetime import timedelta

import dagster as dg

from tt_assets.automation import retrain_job
from tt_assets.conventions import OWNERS, US_EASTERN
from tt_assets.models import RETRAIN_REASON_TAG
from tt_assets.partitions import TRAINING_DIM
from tt_assets.resources import DatabaseResource, configured_fields
from tt_pipeline.trading.orders import LIMIT_NAMES

TRADING_GROUP = "trading"
SESSION_DIM = "trading_session"
TIMEFRAME = "1d"  # the trading loop's timeframe (tt_pipeline.trading.target.TIMEFRAME)
TARGET_PORTFOLIO = dg.AssetKey("target_portfolio")
ORDERS = dg.AssetKey("orders")
FILLS = dg.AssetKey("fills")
POSITIONS = dg.AssetKey("positions")
LIVE_PERFORMANCE = dg.AssetKey("live_performance")
AFTER_CLOSE_CRON = "0 17 * * 1-5"  # after every close (16:00, early closes 13:00) and the 16:15 1d bars
AFTER_OPEN_CRON = "0 10 * * 1-5"  # half an hour after the open, when market-on-open orders have filled

session_partitions = dg.DynamicPartitionsDefinition(name=SESSION_DIM)
# a target exists once per session; the longest gap between two XNYS sessions' closes is 4 days (a Thursday
# before a Friday holiday to Monday), so an older one means a session was missed (bars or features late)
target_freshness = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=4, hours=2))


class LivePolicy(dg.ConfigurableResource):
    """When the live-performance sensor fires (tt_pipeline.trading.live.live_causes): a session's tracking
    error above `max_tracking_error`, or live results out of the walk-forward's range; `demote` also demotes
    the champion (else retraining only)."""

    max_tracking_error: float = 0.01
    demote: bool = False

    @classmethod
    def from_env(cls) -> "LivePolicy":
        """TT_TRADING_MAX_TRACKING_ERROR and TT_TRADING_AUTO_DEMOTE from the settings."""
        return cls(
            **configured_fields(
                max_tracking_error="tt_trading_max_tracking_error", demote="tt_trading_auto_demote"
            )
        )


def session_of(key: str) -> dt.date:
    """The session date of a partition key (`2026-11-18`)."""
    return dt.date.fromisoformat(key)


def _broker():
    """The IBKR account of the settings; dg.Failure (one line) when the gateway cannot be reached."""
    from tt_pipeline.trading.session import connect_broker
    from tt_resources.broker import BrokerError

    try:
        return connect_broker()
    except BrokerError as exc:
        raise dg.Failure(str(exc)) from None


@dg.multi_asset(
    name="trading_decision",
    specs=[
        dg.AssetSpec(
            TARGET_PORTFOLIO,
            deps=[dg.AssetDep("features", partition_mapping=dg.AllPartitionMapping())],
            group_name=TRADING_GROUP,
            owners=OWNERS,
            kinds={"sql"},
            freshness_policy=target_freshness,
            description="The champion's target weights after the session's close (tt_target): its observation "
            "and sizing exactly as the environment's, made only when every symbol's 1d bar and features of the "
            "session are stored and pass their checks.",
        ),
        dg.AssetSpec(
            ORDERS,
            deps=[TARGET_PORTFOLIO],
            group_name=TRADING_GROUP,
            owners=OWNERS,
            kinds={"sql"},
            description="Whole-share market-on-open orders for the next session (tt_order), sent only when "
            "trading is enabled, not halted, on a paper account, and every pre-trade limit passes.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            name, asset=ORDERS, blocking=True, description=f"pre-trade limit {name} (docs/trading.md)"
        )
        for name in LIMIT_NAMES
    ],
    partitions_def=session_partitions,
)
def trading_decision(context: dg.AssetExecutionContext, database: DatabaseResource):
    from tt_pipeline.trading.session import TradingRefused, trade_session
    from tt_resources.broker import BrokerError

    engine = database.get_engine()
    session = session_of(context.partition_key)
    broker = _broker()
    try:
        run = trade_session(engine, session, broker=broker)
    except (TradingRefused, BrokerError) as exc:
        raise dg.Failure(str(exc)) from None
    finally:
        broker.close()
    for line in run.lines:
        context.log.info(line)
    if run.target is None:
        raise dg.Failure(run.lines[-1] if run.lines else f"no target for {session}")
    weights = run.target.weights
    yield dg.MaterializeResult(
        asset_key=TARGET_PORTFOLIO,
        metadata={
            "model_id": run.model_id,
            "decision_ts": run.target.decision_ts.isoformat(),
            "symbols": len(weights),
            "invested": float(sum(weights.values())),
            "weights": dg.MetadataValue.md(_weights_md(weights)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ORDERS,
        metadata={
            "next_session": str(run.next_session),
            "orders": len(run.orders),
            "notional": float(sum(o.notional for o in run.orders)),
            "sent": len(run.sent),
            "known_to_broker": len(run.known),
            "rejected": len(run.rejected),
            "lines": dg.MetadataValue.md("\n".join(f"- {line}" for line in run.lines) or "-"),
        },
    )
    for name in LIMIT_NAMES:
        breaches = [b.line for b in run.breaches if b.limit == name]
        yield dg.AssetCheckResult(
            asset_key=ORDERS,
            check_name=name,
            passed=not breaches,
            severity=dg.AssetCheckSeverity.ERROR,
            description=breaches[0] if breaches else None,
            metadata={"breaches": len(breaches), "lines": dg.MetadataValue.md("\n".join(breaches) or "-")},
        )


@dg.multi_asset(
    name="reconciliation",
    specs=[
        dg.AssetSpec(
            FILLS,
            deps=[ORDERS],
            group_name=TRADING_GROUP,
            owners=OWNERS,
            kinds={"sql"},
            description="Executions and commissions of the orders at the next session's open (tt_fill), and "
            "each order's state (tt_order), as the broker reports them after the open.",
        ),
        dg.AssetSpec(
            POSITIONS,
            deps=[FILLS],
            group_name=TRADING_GROUP,
            owners=OWNERS,
            kinds={"sql"},
            description="The account after those fills (tt_position of the next session): shares, cash and "
            "net liquidation, reconciled with the broker.",
        ),
    ],
    partitions_def=session_partitions,
)
def reconciliation(context: dg.AssetExecutionContext, database: DatabaseResource):
    from tt_pipeline.trading.live import previous_session
    from tt_pipeline.trading.session import next_session, reconcile
    from tt_resources.calendar import session_open
    from tt_resources.db import trading as db

    engine = database.get_engine()
    decided = session_of(context.partition_key)
    executed = next_session(decided)
    broker = _broker()
    try:
        account = broker.account()
        reconcile(
            engine, broker, account, executed, since=session_open(previous_session(executed)).to_pydatetime()
        )
    finally:
        broker.close()
    orders = db.orders_of(engine, session=executed)
    fills = db.fills_of(engine, [o["order_ref"] for o in orders]) if orders else []
    yield dg.MaterializeResult(
        asset_key=FILLS,
        metadata={
            "session": str(executed),
            "orders": len(orders),
            "filled": sum(1 for o in orders if o["state"] == "filled"),
            "fills": len(fills),
            "commissions": float(sum(f["commission"] or 0.0 for f in fills)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=POSITIONS,
        metadata={
            "account": account.account,
            "positions": sum(1 for q in account.positions.values() if q),
            "net_liquidation": float(account.net_liquidation),
            "cash": float(account.cash),
        },
    )


@dg.asset(
    key=LIVE_PERFORMANCE,
    deps=[POSITIONS],
    partitions_def=session_partitions,
    group_name=TRADING_GROUP,
    owners=OWNERS,
    kinds={"sql"},
    description="The next session live against its shadow backtest (tt_live_performance): returns, slippage "
    "against the open, costs, missed fills, tracking error and equity; after that session's close.",
)
def live_performance(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    from tt_pipeline.trading.live import NoRecord, record_live
    from tt_pipeline.trading.session import next_session, reconcile
    from tt_resources.calendar import session_open

    engine = database.get_engine()
    decided = session_of(context.partition_key)
    executed = next_session(decided)
    broker = _broker()
    try:  # the book at the session's close, as `tt trade` of that session reconciles it
        reconcile(engine, broker, broker.account(), executed, since=session_open(decided).to_pydatetime())
    finally:
        broker.close()
    try:
        row = record_live(engine, executed)
    except NoRecord as exc:
        raise dg.Failure(str(exc)) from None
    return dg.MaterializeResult(
        metadata={
            key: (float(row[key]) if row[key] is not None else None)
            for key in (
                "live_return",
                "shadow_return",
                "tracking_error",
                "slippage_bps",
                "costs",
                "live_equity",
            )
        }
        | {"session": str(executed), "model_id": row["model_id"], "missed_fills": row["missed_fills"]}
    )


trading_job = dg.define_asset_job(
    "trading_job",
    selection=dg.AssetSelection.groups(TRADING_GROUP),
    partitions_def=session_partitions,
    description="The trading loop of one session (the schedules run its steps at the close and at the open).",
)


def _session_day(context: dg.ScheduleEvaluationContext) -> tuple[dt.date, bool]:
    """The New York date of the tick, and whether XNYS has a session that day that has closed or opened by
    the tick (the calendar decides: holidays, early closes)."""
    import pandas as pd

    from tt_resources.calendar import nyse

    tick = pd.Timestamp(context.scheduled_execution_time)
    day = tick.tz_convert(US_EASTERN).date()
    return day, pd.Timestamp(day) in nyse().schedule.index


def _add_session(instance: dg.DagsterInstance, key: str) -> None:
    if not instance.has_dynamic_partition(SESSION_DIM, key):
        instance.add_dynamic_partitions(SESSION_DIM, [key])


@dg.schedule(
    job=trading_job,
    cron_schedule=AFTER_CLOSE_CRON,
    execution_timezone=US_EASTERN,
    description="After each session's close (17:00 New York; early closes included, holidays skipped: the "
    "XNYS calendar decides): the session's target and orders, and the previous decision's live performance.",
)
def trading_close_schedule(context: dg.ScheduleEvaluationContext):
    from tt_pipeline.trading.live import previous_session

    day, trades = _session_day(context)
    if not trades:
        return dg.SkipReason(f"{day} is not an NYSE session: no target, no orders")
    key = day.isoformat()
    _add_session(context.instance, key)
    requests = [
        dg.RunRequest(run_key=f"decide {key}", partition_key=key, asset_selection=[TARGET_PORTFOLIO, ORDERS])
    ]
    previous = previous_session(day).isoformat()
    if context.instance.has_dynamic_partition(SESSION_DIM, previous):
        requests.append(
            dg.RunRequest(
                run_key=f"live {previous}", partition_key=previous, asset_selection=[LIVE_PERFORMANCE]
            )
        )
    return requests


@dg.schedule(
    job=trading_job,
    cron_schedule=AFTER_OPEN_CRON,
    execution_timezone=US_EASTERN,
    description="After each session's open (10:00 New York; holidays skipped): the fills of the orders "
    "decided at the previous session's close and the book after them.",
)
def trading_open_schedule(context: dg.ScheduleEvaluationContext):
    from tt_pipeline.trading.live import previous_session

    day, trades = _session_day(context)
    if not trades:
        return dg.SkipReason(f"{day} is not an NYSE session: nothing filled")
    decided = previous_session(day).isoformat()
    if not context.instance.has_dynamic_partition(SESSION_DIM, decided):
        return dg.SkipReason(f"no decision of {decided} to reconcile")
    return dg.RunRequest(
        run_key=f"fills {decided}", partition_key=decided, asset_selection=[FILLS, POSITIONS]
    )


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=600,
    description="Retrains the 1d timeframe (and demotes the champion when TT_TRADING_AUTO_DEMOTE) once per "
    "cause: a session's tracking error above TT_TRADING_MAX_TRACKING_ERROR, live results out of the "
    "walk-forward's range (docs/trading.md).",
)
def live_performance_sensor(
    context: dg.SensorEvaluationContext, database: DatabaseResource, live_policy: LivePolicy
):
    """Fires once per cause (tt_pipeline.trading.live.Cause.key: model and kind): the cursor holds the keys
    fired, and each run's run_key is its cause's key, so a re-evaluated tick launches nothing twice."""
    from tt_pipeline.trading.live import live_causes
    from tt_resources.db import registry
    from tt_resources.db import trading as db

    engine = database.get_engine()
    model_id = db.champion(engine, TIMEFRAME)
    if model_id is None:
        return dg.SkipReason(f"no {TIMEFRAME} champion")
    fired = set(json.loads(context.cursor or "[]"))
    causes = [c for c in live_causes(engine, model_id, live_policy.max_tracking_error) if c.key not in fired]
    if not causes:
        return dg.SkipReason(f"champion {model_id}: live results within the range and the tracking limit")
    config = registry.model(engine, model_id)["config"]  # the challenger trains the champion's configuration
    requests = []
    for cause in causes:
        context.log.info(f"champion {model_id}: {cause.line}")
        requests.append(
            dg.RunRequest(
                run_key=cause.key,
                partition_key=TIMEFRAME,
                run_config={"ops": {"ppo_model": {"config": config}}},
                tags={RETRAIN_REASON_TAG: cause.line[:200], "tt/live_cause": cause.kind},
            )
        )
    if live_policy.demote:
        db.record_promotion(
            engine,
            timeframe=TIMEFRAME,
            model_id=None,
            who="sensor:live_performance_sensor",
            reason="; ".join(c.line for c in causes),
        )
    add = dg.AddDynamicPartitionsRequest(partition_keys=[TIMEFRAME], partitions_def_name=TRAINING_DIM)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[]
        if context.instance.has_dynamic_partition(TRAINING_DIM, TIMEFRAME)
        else [add],
        cursor=json.dumps(sorted(fired | {c.key for c in causes})),
    )


def _weights_md(weights: dict[str, float]) -> str:
    """The non-zero target weights, largest first, as a Markdown table."""
    rows = sorted(((s, w) for s, w in weights.items() if w), key=lambda sw: (-abs(sw[1]), sw[0]))
    return "| symbol | weight |\n|---|---:|\n" + "\n".join(f"| {s} | {w:.4f} |" for s, w in rows)
