"""The trading loop against the stand-in gateway through IbkrBroker (the real ib_async client): five
consecutive sessions end to end on SQLite and PostgreSQL, crashes (kill -9 mid-submission, a connection lost
before an acknowledgement), a limit breach, a live account, trading disabled by default.

The world (stored bars and a tiny production model) is trained once per module; each test seeds its own
database with it and starts its own gateway."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.fake_ibgateway import FakeIBGateway
from tests.trading_world import SYMBOLS, WALK_FORWARD_ID, production_model, store_bars
from tt_cli.main import cli
from tt_pipeline.trading.session import ENABLE_HINT, reconcile, session_close, trade_session
from tt_resources.broker import parse_order_ref
from tt_resources.brokers.ibkr import IbkrBroker
from tt_resources.config import PROJECT_ROOT, Settings
from tt_resources.db import registry
from tt_resources.db import trading as db
from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import upgrade
from tt_resources.db.rl_log import register_model
from tt_resources.sources.settings import IbkrSettings

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # the world trains a model

# decided on each session's close, filled at the next one's open: the Friday after Thanksgiving is an early
# close (13:00 New York), Thanksgiving itself no session
SESSIONS = [dt.date(2026, 11, d) for d in (20, 23, 24, 25, 27, 30)]
LAST_TRAINED = dt.date(2026, 11, 19)
IB = IbkrSettings(
    client_id=31, connect_timeout_s=5.0, request_timeout_s=10.0, max_attempts=3, reconnect_s=30.0
)
ENABLED = Settings(tt_trading_enabled=True)
EXACT = Settings(tt_trading_enabled=True, tt_trading_min_notional=0.0)  # no order skipped as too small


@pytest.fixture(scope="module")
def model_row(tmp_path_factory) -> dict:
    """The tiny production model, trained once on the stand-in's bars up to LAST_TRAINED."""
    path = tmp_path_factory.mktemp("trading_gw") / "train.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    store_bars(engine, SYMBOLS, LAST_TRAINED)
    model_id = production_model(engine, path.parent / "models", SYMBOLS, LAST_TRAINED, max_weight=0.2)
    row = registry.model(engine, model_id)
    engine.dispose()
    return row


def seed(engine: sa.Engine, model_row: dict) -> str:
    """The bars through the last session, the model registered and promoted (forced: no evaluation)."""
    store_bars(engine, SYMBOLS, SESSIONS[-1])
    register_model(engine, model_id=WALK_FORWARD_ID, timeframe="1d", path="-", config=model_row["config"])
    register_model(engine, **model_row)
    db.record_promotion(
        engine, timeframe="1d", model_id=model_row["model_id"], who="test", reason="test", forced=True
    )
    return model_row["model_id"]


@pytest.fixture
def seeded(sqlite_engine, model_row):
    seed(sqlite_engine, model_row)
    return sqlite_engine


@pytest.fixture
def gateway():
    gw = FakeIBGateway(session_close(SESSIONS[0]) - pd.Timedelta(hours=1))
    gw.start()
    yield gw
    gw.stop()


def broker_for(gateway: FakeIBGateway, **changes) -> IbkrBroker:
    return IbkrBroker(dataclasses.replace(IB, port=gateway.port, **changes))


def after_close(gateway: FakeIBGateway, session: dt.date) -> dt.datetime:
    """Move the stand-in to `session`'s close; an instant just after it."""
    return (gateway.close_session(session) + pd.Timedelta(minutes=5)).to_pydatetime()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_five_sessions_end_to_end(backend, request, model_row, gateway):
    engine = request.getfixturevalue("sqlite_engine" if backend == "sqlite" else "pg_engine")
    model_id = seed(engine, model_row)
    broker = broker_for(gateway)
    books = []  # (session, net liquidation, shares held) at each close
    try:
        for session, following in itertools.pairwise(SESSIONS):
            now = after_close(gateway, session)
            run = trade_session(engine, session, broker=broker, now=now, env=EXACT, sleep=lambda s: None)
            assert run.ok and run.target is not None, run.lines
            assert run.next_session == following and run.sent == [run.refs[o.symbol] for o in run.orders]
            assert all(parse_order_ref(ref)[0] == following for ref in run.sent)
            books.append((session, run.account.net_liquidation, dict(run.account.positions), run))
            gateway.open_session(following)
        final_now = after_close(gateway, SESSIONS[-1])
        account = broker.account()
        reconcile(engine, broker, account, SESSIONS[-1], since=final_now - dt.timedelta(days=10))
        books.append((SESSIONS[-1], account.net_liquidation, dict(account.positions), None))
    finally:
        broker.close()

    bars = pd.concat(
        [pd.DataFrame({"symbol": s, **_bars(engine, s)}) for s in SYMBOLS], ignore_index=True
    ).set_index(["symbol", "session"])
    assert sum(len(run.sent) for *_, run in books[:-1]) >= 5  # orders every session but inside the band
    for (_, nlv, held, run), (following, nlv_next, held_next, _) in itertools.pairwise(books):
        target = run.target
        # positions reconcile to the targets within one share
        for symbol, weight in target.weights.items():
            assert abs(held_next.get(symbol, 0.0) - weight * nlv / target.closes[symbol]) <= 1.0, (
                following,
                symbol,
            )
        # live return over the next session = the backtest's (next-open fills, costs off) within commissions
        opens = {s: bars.loc[(s, following), "open"] for s in SYMBOLS}
        closes = {s: bars.loc[(s, following), "close"] for s in SYMBOLS}
        worth_at_fill = nlv + sum(q * (opens[s] - target.closes[s]) for s, q in held.items())
        shadow = (
            worth_at_fill * (1 + sum(w * (closes[s] / opens[s] - 1) for s, w in target.weights.items())) / nlv
            - 1
        )
        live = nlv_next / nlv - 1
        commissions = sum(f["commission"] for f in db.fills_of(engine) if f["session"] == following)
        # the rest: whole shares (< 1 each) sized at the decision close, not at the open they fill at
        sizing = sum(
            abs(closes[s] / opens[s] - 1) * (opens[s] + abs(w * nlv * (opens[s] / target.closes[s] - 1)))
            for s, w in target.weights.items()
        )
        rounding = sizing / nlv
        assert abs(live - shadow) <= commissions / nlv + rounding, (following, live, shadow)

    orders = db.orders_of(engine, model_id=model_id)
    assert len(orders) == sum(len(run.sent) for *_, run in books[:-1])
    assert {o["state"] for o in orders} == {"filled"}
    fills = db.fills_of(engine)
    assert {f["order_ref"] for f in fills} == {o["order_ref"] for o in orders}
    assert all(f["commission"] and f["commission"] >= 1.0 for f in fills)
    for session, nlv, held, _ in books:
        rows = {r["symbol"]: r for r in db.positions_of(engine, session)}
        assert rows[db.NET_LIQUIDATION]["value"] == pytest.approx(nlv)
        assert {s: r["shares"] for s, r in rows.items() if s not in db.ACCOUNT_ROWS} == {
            s: q for s, q in held.items() if q
        }
    assert len(gateway.refs_sent()) == len(set(gateway.refs_sent()))


def _bars(engine: sa.Engine, symbol: str) -> dict:
    from tt_resources.db.prices import read_bars

    bars = read_bars(engine, [symbol], "1d")
    return {
        "session": [ts.tz_convert("America/New_York").date() for ts in bars["ts"]],
        "open": bars["open"].to_numpy(),
        "close": bars["close"].to_numpy(),
    }


def test_no_orders_before_the_close_of_an_early_close_or_on_a_holiday(seeded, gateway):
    broker = broker_for(gateway)
    try:
        early = dt.date(2026, 11, 27)
        before = (session_close(early) - pd.Timedelta(minutes=1)).to_pydatetime()
        run = trade_session(seeded, early, broker=broker, now=before, env=ENABLED)
        assert run.lines == ["no orders: the 2026-11-27 session closes at 18:00 UTC; its bars are not final"]
        holiday = trade_session(seeded, dt.date(2026, 11, 26), broker=broker, env=ENABLED)
        assert holiday.lines == ["no orders: 2026-11-26 is not an NYSE session"]
    finally:
        broker.close()
    assert gateway.order_log == []


def test_disabled_by_default_a_breach_blocks_and_a_live_account_is_refused(
    seeded, gateway, monkeypatch, tmp_path
):
    session = SESSIONS[0]
    now = after_close(gateway, session)
    broker = broker_for(gateway)
    try:
        off = trade_session(seeded, session, broker=broker, now=now, env=Settings(), sleep=lambda s: None)
        assert off.orders and off.lines[-1] == ENABLE_HINT and not off.sent
        monkeypatch.setenv("DATABASE_URL", seeded.url.render_as_string(hide_password=False))
        monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("IB_PORT", str(gateway.port))
        monkeypatch.setenv("IB_TRADING_CLIENT_ID", "45")
        monkeypatch.delenv("TT_TRADING_ENABLED", raising=False)
        said = CliRunner().invoke(cli, ["trade", "--session", str(session)])
        assert said.exit_code == 1, said.output
        assert said.output.endswith(
            "trading is disabled: set TT_TRADING_ENABLED=true (docs/trading.md) to send\n  orders\n"
        ), said.output
        shown = CliRunner().invoke(cli, ["positions"])
        assert shown.exit_code == 0 and "DU1234567   $NETLIQ" in shown.output, shown.output
        tight = Settings(tt_trading_enabled=True, tt_trading_max_weight=0.01)
        blocked = trade_session(seeded, session, broker=broker, now=now, env=tight)
        assert blocked.breaches and not blocked.sent
        first = blocked.breaches[0]
        assert (
            first.line.startswith("limit symbol_weight: buy ") and "TT_TRADING_MAX_WEIGHT 1.0%" in first.line
        )
        assert (
            blocked.lines[-1]
            == f"blocked: {len(blocked.breaches)} limit breach(es); no order of {session} was sent"
        )
        assert {o["state"] for o in db.orders_of(seeded)} == {"blocked"}
        db.set_halt(seeded, True, who="test", reason="drill")
        halted = trade_session(seeded, session, broker=broker, now=now, env=ENABLED)
        assert (
            halted.lines[-1].startswith("halted by test at ")
            and "(drill): `tt halt --off` resumes" in halted.lines[-1]
        )
        db.set_halt(seeded, False, who="test", reason=None)
    finally:
        broker.close()
    assert gateway.order_log == []

    live = FakeIBGateway(gateway.now, account="U7654321")
    live.start()
    broker = broker_for(live)
    try:
        refused = trade_session(seeded, session, broker=broker, now=now, env=ENABLED)
        assert refused.lines[-1] == (
            "refused: account U7654321 is not a paper account (DU...); TT_TRADING_ALLOW_LIVE=true allows a live one"
        )
        assert live.order_log == []
        allowed = Settings(tt_trading_enabled=True, tt_trading_allow_live=True)
        sent = trade_session(seeded, session, broker=broker, now=now, env=allowed, sleep=lambda s: None)
        assert sent.sent and live.refs_sent() == sent.sent
    finally:
        broker.close()
        live.stop()


def test_a_connection_lost_before_the_acknowledgement_the_rerun_sends_only_the_missing(seeded, gateway):
    session = SESSIONS[0]
    now = after_close(gateway, session)
    gateway.faults.drop_before_ack = 1
    broker = broker_for(gateway)
    try:
        first = trade_session(seeded, session, broker=broker, now=now, env=ENABLED, sleep=lambda s: None)
        assert first.lines[-1].startswith("error: buy ") and first.sent == []
        rerun = trade_session(seeded, session, broker=broker, now=now, env=ENABLED, sleep=lambda s: None)
    finally:
        broker.close()
    planned = sorted(first.refs.values())
    assert len(planned) >= 3 and sorted(rerun.refs.values()) == planned
    assert rerun.known == [gateway.refs_sent()[0]] and sorted(rerun.sent + rerun.known) == planned
    assert sorted(gateway.refs_sent()) == planned  # each order reached the gateway once


def test_kill_9_during_submission_the_rerun_sends_exactly_the_missing(seeded, gateway, tmp_path):
    """`tt trade` submitting two orders a second is killed once the stand-in has half of them; the rerun
    sends the rest, none twice."""
    session = SESSIONS[0]
    now = after_close(gateway, session)
    env = {
        **os.environ,
        "DATABASE_URL": seeded.url.render_as_string(hide_password=False),
        "TT_DATA_DIR": str(tmp_path),
        "IB_PORT": str(gateway.port),
        "IB_TRADING_CLIENT_ID": "41",
        "TT_TRADING_ENABLED": "true",
        "TT_TRADING_ORDERS_PER_S": "2",
    }
    command = [sys.executable, "-m", "tt_cli", "trade", "--session", str(session)]
    planned = trade_session(seeded, session, broker=None, dry_run=True, now=now, env=ENABLED)
    half = len(planned.orders) // 2
    assert half >= 2
    process = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 240  # a bound against hangs only
        while len(gateway.order_log) < half and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    sent_before = gateway.refs_sent()
    assert half <= len(sent_before) < len(planned.orders), process.stdout.read().decode()
    broker = broker_for(gateway)
    try:
        rerun = trade_session(seeded, session, broker=broker, now=now, env=ENABLED, sleep=lambda s: None)
    finally:
        broker.close()
    assert sorted(rerun.known) == sorted(sent_before) and len(rerun.sent) == len(planned.orders) - len(
        sent_before
    )
    refs = gateway.refs_sent()
    assert len(refs) == len(set(refs)) == len(planned.orders)
    assert sorted(refs) == sorted(planned.refs.values())
    assert {o["state"] for o in db.orders_of(seeded)} == {"submitted"}


def test_a_partial_fill_is_recorded_and_carries_into_the_next_sessions_order(seeded, gateway):
    first, second, third = SESSIONS[:3]
    broker = broker_for(gateway)
    try:
        run = trade_session(seeded, first, broker=broker, now=after_close(gateway, first), env=EXACT)
        symbol = max(run.orders, key=lambda o: o.quantity).symbol
        gateway.faults.partial_fills[symbol] = 0.4
        gateway.open_session(second)
        nxt = trade_session(seeded, second, broker=broker, now=after_close(gateway, second), env=EXACT)
        gateway.faults.partial_fills.clear()
        gateway.open_session(third)
        account = broker.account()
    finally:
        broker.close()
    ordered = next(o for o in run.orders if o.symbol == symbol)
    (row,) = [r for r in db.orders_of(seeded, session=second) if r["symbol"] == symbol]
    assert (row["state"], row["filled"]) == ("partially_filled", round(0.4 * ordered.quantity))
    held = nxt.account.positions[symbol]
    assert held == round(0.4 * ordered.quantity)
    carried = next(o for o in nxt.orders if o.symbol == symbol)
    assert carried.held == held and carried.quantity == carried.target - held
    assert abs(account.positions[symbol] - carried.target) == 0


def test_the_broker_trades_as_its_own_client_id_apart_from_market_data(gateway):
    """A data refresh holding IB_CLIENT_ID (17) made the broker connect as 18, which cannot cancel an order
    placed under 17 (IBKR 10147): the broker connects as IB_TRADING_CLIENT_ID only, and a second trading
    connection at once is refused with one line."""
    from tt_pipeline.trading.session import connect_broker
    from tt_resources.broker import BrokerError

    env = Settings(ib_port=gateway.port)
    market_data = broker_for(gateway, client_id=env.ib_client_id)  # connects: the account is checked
    try:
        trading = connect_broker(env)
        try:
            assert (market_data.client_id, trading.client_id) == (17, env.ib_trading_client_id) == (17, 9)
            with pytest.raises(BrokerError) as refused:
                connect_broker(env)
            assert "326" in str(refused.value) and "IB_TRADING_CLIENT_ID" in str(refused.value)
            assert "\n" not in str(refused.value)
        finally:
            trading.close()
    finally:
        market_data.close()
