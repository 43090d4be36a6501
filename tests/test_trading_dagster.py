"""The trading group in Dagster against real instances: the schedules on sessions, an early close and a
holiday; the live-performance sensor firing once per cause; the orders' limit checks blocking a breach."""

from __future__ import annotations

import datetime as dt
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from tests.dagster_instance import instance_for_test
from tests.live_seed import COMMISSION, NLV, PRODUCTION, SESSIONS, book, seed_bars, seed_live
from tt_assets.definitions import defs
from tt_assets.resources import DatabaseResource
from tt_assets.trading import (
    ORDERS,
    SESSION_DIM,
    TARGET_PORTFOLIO,
    LivePolicy,
    live_performance_sensor,
    trading_close_schedule,
    trading_open_schedule,
)
from tt_pipeline.trading.live import record_session
from tt_pipeline.trading.orders import LIMIT_NAMES
from tt_resources.db import trading as db
from tt_resources.db.schema import promotions

# 17:00 and 10:00 New York (EST, UTC-5) on Tuesday 2026-11-24, Thanksgiving Thursday and the early-close Friday
CLOSE_TUESDAY = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
CLOSE_WEDNESDAY = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
CLOSE_THANKSGIVING = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
CLOSE_FRIDAY = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)  # the session closed at 13:00
OPEN_THANKSGIVING = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
OPEN_FRIDAY = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def _tick(schedule, instance, when: datetime):
    context = dg.build_schedule_context(
        instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


def _runs(tick) -> list[tuple[str, str, list[str]]]:
    return [
        (r.run_key, r.partition_key, sorted(k.to_user_string() for k in r.asset_selection))
        for r in tick.run_requests
    ]


def test_the_close_schedule_decides_on_sessions_early_closes_included_and_skips_holidays():
    with instance_for_test() as instance:
        tick = _tick(trading_close_schedule, instance, CLOSE_TUESDAY)
        assert _runs(tick) == [("decide 2026-11-24", "2026-11-24", ["orders", "target_portfolio"])]
        tick = _tick(trading_close_schedule, instance, CLOSE_WEDNESDAY)
        # the decision of the session, and the live record of the previous decision (its orders filled today)
        assert _runs(tick) == [
            ("decide 2026-11-25", "2026-11-25", ["orders", "target_portfolio"]),
            ("live 2026-11-24", "2026-11-24", ["live_performance"]),
        ]
        tick = _tick(trading_close_schedule, instance, CLOSE_THANKSGIVING)
        assert tick.run_requests == []
        assert tick.skip_message == "2026-11-26 is not an NYSE session: no target, no orders"
        assert not instance.has_dynamic_partition(SESSION_DIM, "2026-11-26")  # a holiday is no partition
        tick = _tick(trading_close_schedule, instance, CLOSE_FRIDAY)
        assert _runs(tick) == [
            ("decide 2026-11-27", "2026-11-27", ["orders", "target_portfolio"]),
            ("live 2026-11-25", "2026-11-25", ["live_performance"]),  # Thursday was no session
        ]
        assert instance.get_dynamic_partitions(SESSION_DIM) == ["2026-11-24", "2026-11-25", "2026-11-27"]
        again = _tick(trading_close_schedule, instance, CLOSE_FRIDAY)
        assert _runs(again) == _runs(tick)  # a re-evaluated tick asks for the same runs under the same keys
        job = defs.resolve_job_def("trading_job")
        assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
            "target_portfolio",
            "orders",
            "fills",
            "positions",
            "live_performance",
        }


def test_the_open_schedule_reconciles_the_previous_decision_and_skips_holidays():
    with instance_for_test() as instance:
        tick = _tick(trading_open_schedule, instance, OPEN_FRIDAY)
        assert tick.skip_message == "no decision of 2026-11-25 to reconcile"
        instance.add_dynamic_partitions(SESSION_DIM, ["2026-11-25"])
        tick = _tick(trading_open_schedule, instance, OPEN_FRIDAY)
        assert _runs(tick) == [("fills 2026-11-25", "2026-11-25", ["fills", "positions"])]
        tick = _tick(trading_open_schedule, instance, OPEN_THANKSGIVING)
        assert (tick.run_requests, tick.skip_message) == (
            [],
            "2026-11-26 is not an NYSE session: nothing filled",
        )


def _sensor(instance, engine, cursor: str | None, **policy):
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        definitions=defs,
        resources={
            "database": DatabaseResource(url=engine.url.render_as_string(hide_password=False)),
            "live_policy": LivePolicy(**policy),
        },
    ) as context:
        return live_performance_sensor.evaluate_tick(context)


def test_the_live_performance_sensor_fires_once_per_cause(sqlite_engine):
    seed_live(sqlite_engine)
    record_session(sqlite_engine, PRODUCTION, SESSIONS[1])
    record_session(sqlite_engine, PRODUCTION, SESSIONS[2])
    with instance_for_test() as instance:
        tick = _sensor(instance, sqlite_engine, None, max_tracking_error=0.01)
        assert tick.run_requests == [] and tick.skip_message.startswith(
            f"champion {PRODUCTION}: live results"
        )

        # 26 of 100,000 lost to slippage and commission on 2026-11-25: above a 0.02 % limit
        tick = _sensor(instance, sqlite_engine, None, max_tracking_error=0.0002)
        [request] = tick.run_requests
        assert request.run_key == f"{PRODUCTION}:tracking_error" and request.partition_key == "1d"
        assert request.tags["tt/live_cause"] == "tracking_error"
        assert request.tags["tt/retrain_reason"].startswith("tracking error 0.03% on 2026-11-25")
        dg.validate_run_config(defs.resolve_job_def("retrain_job"), request.run_config)
        cursor = tick.cursor
        for _ in range(2):  # the same cause does not fire again
            tick = _sensor(instance, sqlite_engine, cursor, max_tracking_error=0.0002)
            assert tick.run_requests == []

        # a 39 % fall on 2026-11-30 takes the live return far below the walk-forward's range: a new cause,
        # fired once, and (auto-demote on) the champion demoted once
        seed_bars(sqlite_engine, {"AAA": [(98.0, 100.0), (100.0, 110.0), (110.0, 99.0), (99.0, 60.0)]})
        book(sqlite_engine, SESSIONS[3], {"AAA": 500.0}, {"AAA": 60.0}, NLV - 500 * 100.05 - COMMISSION)
        record_session(sqlite_engine, PRODUCTION, SESSIONS[3])
        tick = _sensor(instance, sqlite_engine, cursor, max_tracking_error=0.0002, demote=True)
        [request] = tick.run_requests
        assert request.run_key == f"{PRODUCTION}:below_range"
        assert "outside the walk-forward range" in request.tags["tt/retrain_reason"]
        assert db.champion(sqlite_engine, "1d") is None
        with sqlite_engine.connect() as conn:
            demotions = conn.execute(promotions.select().where(promotions.c.action == "demote")).all()
        assert [d.who for d in demotions] == ["sensor:live_performance_sensor"]
        tick = _sensor(instance, sqlite_engine, tick.cursor, max_tracking_error=0.0002, demote=True)
        assert (tick.run_requests, tick.skip_message) == ([], "no 1d champion")


@pytest.fixture(scope="module")
def champion_template(tmp_path_factory) -> tuple[Path, dict]:
    """A SQLite file with the stand-in's bars through DECIDED and a tiny production model promoted (trained
    once per module); its path and the model row."""
    from tests.trading_world import SYMBOLS, production_model, store_bars
    from tt_resources.db import registry
    from tt_resources.db.engine import create_engine
    from tt_resources.db.migrate import upgrade

    path = tmp_path_factory.mktemp("trading_dagster") / "tt.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    store_bars(engine, SYMBOLS, DECIDED)
    model_id = production_model(engine, path.parent / "models", SYMBOLS, DECIDED)
    db.record_promotion(engine, timeframe="1d", model_id=model_id, who="test", reason="test", forced=True)
    row = registry.model(engine, model_id)
    engine.dispose()
    return path, row


@pytest.fixture
def champion_world(champion_template, tmp_path) -> tuple[str, dict]:
    """This test's copy of the champion's database: its URL and the model row."""
    path, row = champion_template
    shutil.copy(path, tmp_path / "tt.sqlite")
    return f"sqlite:///{tmp_path / 'tt.sqlite'}", row


@pytest.fixture
def gateway():
    """The stand-in gateway, its clock just after DECIDED's close."""
    from tests.fake_ibgateway import FakeIBGateway
    from tt_pipeline.trading.session import session_close

    gw = FakeIBGateway(session_close(DECIDED) + pd.Timedelta(minutes=5))
    gw.start()
    yield gw
    gw.stop()


DECIDED, NEXT = dt.date(2026, 11, 20), dt.date(2026, 11, 23)  # a Friday and the Monday after


@pytest.mark.slow  # the champion trains a model
@pytest.mark.timeout(300)
def test_a_limit_breach_fails_the_orders_check_sends_nothing_and_blocks_downstream(
    champion_world, gateway, monkeypatch
):
    from tt_assets.trading import reconciliation, trading_decision
    from tt_resources.db.engine import create_engine

    url, model = champion_world
    monkeypatch.setenv("IB_PORT", str(gateway.port))
    monkeypatch.setenv("TT_TRADING_ENABLED", "true")
    monkeypatch.setenv("TT_TRADING_MAX_WEIGHT", "0.01")  # every buy above 1 % of the account breaches
    key = DECIDED.isoformat()
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(SESSION_DIM, [key])
        result = dg.materialize(
            [trading_decision, reconciliation],
            partition_key=key,
            instance=instance,
            resources={"database": DatabaseResource(url=url)},
            raise_on_error=False,
        )
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert set(checks) == set(LIMIT_NAMES)
        breach = checks["symbol_weight"]
        assert not breach.passed and breach.severity == dg.AssetCheckSeverity.ERROR
        assert breach.description.startswith("limit symbol_weight: buy ")
        assert "TT_TRADING_MAX_WEIGHT 1.0%" in breach.description
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        # the target and the (blocked) orders are recorded; fills and positions never run
        assert materialized == {TARGET_PORTFOLIO, ORDERS}
        assert not result.success
    engine = create_engine(url)
    orders = db.orders_of(engine, session=NEXT, model_id=model["model_id"])
    engine.dispose()
    assert orders and {o["state"] for o in orders} == {"blocked"}
    assert gateway.refs_sent() == []  # nothing reached the broker


@pytest.mark.slow  # the champion trains a model
@pytest.mark.timeout(300)
def test_a_session_through_the_assets_decide_fill_reconcile_and_record_live(
    champion_world, gateway, monkeypatch
):
    """The schedules' three runs of one decision against the stand-in: orders sent at DECIDED's close, filled
    at NEXT's open, reconciled after it, and NEXT recorded against its shadow after its close."""
    from tests.trading_world import SYMBOLS, store_bars
    from tt_assets.trading import live_performance, reconciliation, trading_decision
    from tt_pipeline.trading.live import live_records
    from tt_resources.db.engine import create_engine

    url, model = champion_world
    engine = create_engine(url)
    store_bars(engine, SYMBOLS, NEXT)  # what the 1d refresh stores after NEXT's close
    for name, value in {
        "IB_PORT": str(gateway.port),
        "TT_TRADING_ENABLED": "true",
        "TT_TRADING_MIN_NOTIONAL": "0",
        "TT_TRADING_MAX_ORDER_NOTIONAL": "1e9",  # the stand-in's account holds 1,000,000
        "TT_TRADING_MAX_WEIGHT": "1",
        "TT_TRADING_MAX_SECTOR_WEIGHT": "1",
    }.items():
        monkeypatch.setenv(name, value)
    key = DECIDED.isoformat()
    resources = {"database": DatabaseResource(url=url)}
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(SESSION_DIM, [key])
        decided = dg.materialize(
            [trading_decision], partition_key=key, instance=instance, resources=resources
        )
        assert all(e.passed for e in decided.get_asset_check_evaluations())
        sent = gateway.refs_sent()
        assert sent and sorted(sent) == sorted(o["order_ref"] for o in db.orders_of(engine, session=NEXT))
        gateway.open_session(NEXT)
        filled = dg.materialize([reconciliation], partition_key=key, instance=instance, resources=resources)
        fills = filled.asset_materializations_for_node("reconciliation")[0].metadata
        assert fills["fills"].value == len(sent) and fills["filled"].value == len(sent)
        gateway.close_session(NEXT)
        dg.materialize([live_performance], partition_key=key, instance=instance, resources=resources)
    [row] = live_records(engine, model["model_id"]).to_dict("records")
    commissions = sum(f["commission"] for f in db.fills_of(engine))
    engine.dispose()
    assert row["session"] == NEXT and row["missed_fills"] == 0
    assert row["slippage_bps"] == pytest.approx(0.0, abs=1e-9)  # the stand-in fills at the bar's open
    assert row["costs"] == pytest.approx(commissions) and commissions > 0
    # costs are off in the model: what separates live from shadow is commissions and whole-share sizing at
    # the decision close
    assert row["tracking_error"] < 0.002
    assert row["live_equity"] == pytest.approx(gateway.net_liquidation())


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("evaluated", "state"),
    [
        ((12, 28, 17, 30), "PASS"),  # Monday's decision is due: Thursday's target (Christmas Friday) is fresh
        ((12, 28, 19, 30), "FAIL"),  # more than 4 days 2 hours: a session's target is missing
    ],
)
def test_the_target_portfolio_is_stale_once_a_session_is_missed(evaluated, state):
    """The freshness daemon's own evaluation of target_portfolio's policy: the longest gap between two
    sessions' closes (Thursday 2026-12-24, an early close, to Monday 12-28) stays fresh."""
    from dagster._core.test_utils import freeze_time

    from tests.dagster_instance import freshness_state

    with instance_for_test() as instance:
        instance.add_dynamic_partitions(SESSION_DIM, ["2026-12-24"])
        with freeze_time(datetime(2026, 12, 24, 17, 5, tzinfo=NEW_YORK)):
            instance.report_runless_asset_event(
                dg.AssetMaterialization("target_portfolio", partition="2026-12-24")
            )
        with freeze_time(datetime(2026, *evaluated, tzinfo=NEW_YORK)):
            assert freshness_state(instance, defs, "target_portfolio") == state
