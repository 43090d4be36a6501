"""IbkrBroker (and so the real ib_async client) placing market-on-open orders at the wire-level stand-in."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock

from tests.fake_ibgateway import FakeIBGateway, series
from tt_resources.broker import BrokerError, OrderRequest, order_ref
from tt_resources.brokers.ibkr import IbkrBroker
from tt_resources.sources.ibkr import run_on_ib_loop
from tt_resources.sources.settings import IbkrSettings

pytestmark = pytest.mark.timeout(120)

NOW = pd.Timestamp("2026-11-18 21:30", tz="UTC")  # Wednesday after the close
SESSION = dt.date(2026, 11, 19)  # the session the orders execute at
MODEL = "model0123456789"
SETTINGS = IbkrSettings(
    client_id=21,
    connect_timeout_s=5.0,
    request_timeout_s=10.0,
    max_attempts=3,
    backoff_s=0.02,
    backoff_max_s=0.2,
    reconnect_s=30.0,
)


def moo(symbol: str, quantity: int) -> OrderRequest:
    return OrderRequest(symbol, quantity, order_ref(SESSION, MODEL, symbol), SESSION)


def session_open_price(symbol: str) -> float:
    opened = pd.Timestamp("2026-11-19 14:30", tz="UTC")
    return float(series(symbol, "1d", opened, opened + pd.Timedelta(days=1))["open"].iloc[0])


@pytest.fixture
def gateway():
    gw = FakeIBGateway(NOW)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def connect(gateway):
    made: list[IbkrBroker] = []

    def make(**settings) -> IbkrBroker:
        broker = IbkrBroker(dataclasses.replace(SETTINGS, port=gateway.port, **settings))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def test_moo_orders_are_acknowledged_then_fill_at_the_next_open_with_commissions(gateway, connect):
    broker = connect()
    before = broker.account()
    assert (before.account, before.currency, before.positions) == ("DU1234567", "USD", {})
    assert before.net_liquidation == before.cash == 1_000_000.0

    reports = [broker.place(moo("AAPL", 10)), broker.place(moo("MSFT", -5))]
    assert [(r.symbol, r.quantity, r.state, r.filled, r.remaining, r.messages) for r in reports] == [
        ("AAPL", 10, "submitted", 0.0, 10.0, ()),
        ("MSFT", -5, "submitted", 0.0, 5.0, ()),
    ]
    assert all(r.broker_order_id and r.perm_id for r in reports)
    sent = [(p.action, p.quantity, p.order_type, p.tif, p.account, p.order_ref) for p in gateway.order_log]
    assert sent == [
        ("BUY", 10, "MKT", "OPG", "DU1234567", moo("AAPL", 10).order_ref),
        ("SELL", 5, "MKT", "OPG", "DU1234567", moo("MSFT", -5).order_ref),
    ]
    assert {r.order_ref: r.state for r in broker.open_orders()} == {r.order_ref: "submitted" for r in reports}
    assert broker.executions(NOW.to_pydatetime()) == []

    opened = gateway.open_session(SESSION)
    assert broker.open_orders() == []
    fills = sorted(broker.executions(NOW.to_pydatetime()), key=lambda e: e.symbol)
    prices = {s: session_open_price(s) for s in ("AAPL", "MSFT")}
    assert [(e.symbol, e.shares, e.time, e.commission) for e in fills] == [
        ("AAPL", 10, opened.to_pydatetime(), 1.0),  # IBKR fixed: $0.005/share, at least $1
        ("MSFT", -5, opened.to_pydatetime(), 1.0),
    ]
    assert [e.price for e in fills] == pytest.approx([prices["AAPL"], prices["MSFT"]])
    assert broker.executions((opened + pd.Timedelta(seconds=1)).to_pydatetime()) == []  # since is a bound
    done = {r.symbol: r for r in broker.orders()}
    assert {s: (r.state, r.filled, r.remaining) for s, r in done.items()} == {
        "AAPL": ("filled", 10.0, 0.0),
        "MSFT": ("filled", 5.0, 0.0),
    }
    assert [done["AAPL"].avg_fill_price, done["MSFT"].avg_fill_price] == pytest.approx(list(prices.values()))
    later = connect()  # another process: it heard no fill live
    assert {(r.symbol, r.state, r.filled, r.avg_fill_price) for r in later.orders()} == {
        ("AAPL", "filled", 10.0, None),  # IBKR's completed orders carry no average price
        ("MSFT", "filled", 5.0, None),
    }
    assert sorted(later.executions(NOW.to_pydatetime()), key=lambda e: e.symbol) == fills

    after = broker.account()
    assert after.positions == {"AAPL": 10.0, "MSFT": -5.0}
    assert after.cash == pytest.approx(1_000_000.0 - 10 * prices["AAPL"] + 5 * prices["MSFT"] - 2.0, abs=0.01)
    assert after.net_liquidation == pytest.approx(1_000_000.0 - 2.0, abs=0.01)  # marked at the open


def test_a_rejection_is_a_report_and_the_others_go_on_with_warnings_carried(gateway, connect):
    gateway.faults.rejections["TSLA"] = "Short sale not permitted"
    gateway.faults.order_warnings["NVDA"] = "your order will not be placed at the exchange until 09:30"
    broker = connect()
    reports = [broker.place(moo(s, q)) for s, q in (("AAPL", 3), ("TSLA", -4), ("NVDA", 2))]
    assert [r.state for r in reports] == ["submitted", "rejected", "submitted"]
    assert reports[1].messages == ("201: Order rejected - reason:Short sale not permitted",)
    assert len(reports[2].messages) == 1 and reports[2].messages[0].startswith("399: Order Message:")
    assert (
        reports[2].messages[0].endswith("Warning: your order will not be placed at the exchange until 09:30")
    )
    assert sorted(r.symbol for r in broker.open_orders()) == ["AAPL", "NVDA"]
    assert {r.symbol: (r.state, r.messages) for r in broker.orders()} == {
        r.symbol: (r.state, r.messages) for r in reports
    }
    # a later process knows the rejection as cancelled: ib_async 2.0 keeps no completedStatus of an order
    assert {r.symbol: r.state for r in connect().orders()} == {
        "AAPL": "submitted",
        "TSLA": "cancelled",
        "NVDA": "submitted",
    }


def test_an_order_for_another_session_than_the_next_open_is_not_sent(gateway, connect):
    broker = connect()
    late = OrderRequest("AAPL", 3, order_ref(dt.date(2026, 11, 18), MODEL, "AAPL"), dt.date(2026, 11, 18))
    report = broker.place(late)
    assert (report.state, report.broker_order_id) == ("rejected", None)
    assert report.messages == (
        "not sent: an OPG order sent at 2026-11-18 21:30 UTC (the gateway's clock) executes at the open of "
        "2026-11-19, not of its session 2026-11-18",
    )
    assert gateway.order_log == []
    gateway.advance(pd.Timestamp("2026-11-19 15:00", tz="UTC"))  # after the open: the next open is Friday's
    assert (
        broker.place(moo("AAPL", 3))
        .messages[0]
        .endswith("executes at the open of 2026-11-20, not of its session 2026-11-19")
    )


def test_a_partial_fill_is_reported_and_the_rest_is_cancelled_after_the_open(gateway, connect):
    gateway.faults.partial_fills["AMD"] = 0.4
    broker = connect()
    broker.place(moo("AMD", 10))
    gateway.open_session(SESSION)
    (fill,) = broker.executions(NOW.to_pydatetime())
    assert (fill.symbol, fill.shares) == ("AMD", 4)
    (report,) = broker.orders()
    assert (report.state, report.filled, report.remaining) == ("partially_filled", 4.0, 0.0)
    assert broker.account().positions == {"AMD": 4.0}


def test_an_order_whose_acknowledgement_was_lost_is_found_by_a_new_connection_and_not_sent_again(
    gateway, connect
):
    gateway.faults.drop_before_ack = 1
    broker = connect()
    with pytest.raises(
        BrokerError, match="connection lost sending tt:20261119:model0123456:AAPL before IBKR"
    ):
        broker.place(moo("AAPL", 7))
    found = connect().open_orders()  # a new process
    assert [(r.order_ref, r.quantity, r.state) for r in found] == [(moo("AAPL", 7).order_ref, 7, "submitted")]
    assert gateway.refs_sent() == [moo("AAPL", 7).order_ref]
    assert [p.outcome for p in gateway.order_log] == ["unacknowledged"]
    # the broker whose connection dropped connects again for its next call
    assert broker.place(moo("MSFT", 1)).state == "submitted"


def test_an_order_left_unanswered_is_reported_pending_after_the_bounded_wait(gateway, connect):
    gateway.faults.unanswered_orders = 1
    broker = connect(request_timeout_s=0.3)  # the acknowledgement wait
    pending = broker.place(moo("AAPL", 2))
    assert (pending.state, pending.filled, pending.remaining, pending.perm_id) == (
        "pending_submit",
        0.0,
        2.0,
        None,
    )
    assert broker.place(moo("MSFT", 2)).state == "submitted"
    assert sorted(r.symbol for r in broker.open_orders()) == ["AAPL", "MSFT"]  # IBKR has both


def test_orders_of_another_client_id_are_seen_but_only_their_client_cancels_them(gateway, connect):
    first = connect()
    first.place(moo("AAPL", 5))
    second = connect()  # the first still holds client id 21
    assert (first.client_id, second.client_id) == (21, 22)
    assert [r.symbol for r in second.open_orders()] == ["AAPL"]
    with pytest.raises(BrokerError, match="placed by client id 21; IBKR lets only that client id"):
        second.cancel(moo("AAPL", 5).order_ref)
    cancelled = first.cancel(moo("AAPL", 5).order_ref)
    assert (cancelled.state, cancelled.remaining) == ("cancelled", 0.0)
    assert second.open_orders() == []
    with pytest.raises(BrokerError, match="no working order with order ref"):
        first.cancel(moo("AAPL", 5).order_ref)


def test_a_gateway_restart_keeps_the_orders_and_the_broker_reconnects(gateway, connect):
    broker = connect()
    broker.place(moo("AAPL", 3))
    gateway.restart(0.3)
    gateway.wait_listening()
    assert [r.symbol for r in broker.open_orders()] == ["AAPL"]
    gateway.open_session(SESSION)
    assert [e.shares for e in broker.executions(NOW.to_pydatetime())] == [3]
    assert gateway.refs_sent() == [moo("AAPL", 3).order_ref]


def test_a_live_looking_account_id_is_visible():
    gw = FakeIBGateway(NOW, account="U7654321")
    gw.start()
    try:
        broker = IbkrBroker(dataclasses.replace(SETTINGS, port=gw.port))
        assert broker.account_id == "U7654321"
        # each call's account summary subscription is cancelled (the stand-in, as IBKR, allows two open)
        assert [broker.account().account for _ in range(3)] == ["U7654321"] * 3
        broker.close()
    finally:
        gw.stop()


def test_an_account_the_gateway_does_not_manage_is_refused(gateway):
    with pytest.raises(BrokerError, match=r"account DU999 is not among the gateway's \(DU1234567\)"):
        IbkrBroker(dataclasses.replace(SETTINGS, port=gateway.port), account="DU999")


def test_no_gateway_is_one_broker_error_line():
    closed = dataclasses.replace(SETTINGS, port=1, max_attempts=2)
    with pytest.raises(BrokerError, match=r"^IB Gateway at 127\.0\.0\.1:1 \(client id 21\): connect: "):
        IbkrBroker(closed)


def test_placing_many_orders_stays_under_ibkrs_50_messages_per_second(gateway, connect):
    broker = connect()
    reports = [broker.place(moo(f"S{i:03d}", 1)) for i in range(55)]  # 2 messages each
    assert {r.state for r in reports} == {"submitted"}
    arrivals = [p.at for p in gateway.order_log]
    busiest = max(sum(t <= u < t + 1.0 for u in arrivals) for t in arrivals)
    assert busiest <= 50


def test_the_stand_in_refuses_duplicate_order_ids_and_other_order_types(gateway):
    async def place(client_id: int, orders: list) -> list:
        ib = IB()
        await ib.connectAsync("127.0.0.1", gateway.port, client_id, timeout=5)
        trades = [ib.placeOrder(Stock("AAPL", "SMART", "USD"), order) for order in orders]
        await ib.reqAllOpenOrdersAsync()  # a round trip: every answer is in
        ib.disconnect()
        return [(t.orderStatus.status, [e.errorCode for e in t.log if e.errorCode]) for t in trades]

    first = run_on_ib_loop(
        place(
            40,
            [
                MarketOrder("BUY", 1, tif="DAY", orderRef="a"),
                LimitOrder("BUY", 1, 10.0, tif="OPG", orderRef="b"),
                MarketOrder("BUY", 1, tif="OPG", orderRef="c"),
            ],
        )
    )
    used = gateway.order_log[0].order_id
    again = run_on_ib_loop(place(40, [MarketOrder("BUY", 1, tif="OPG", orderRef="d", orderId=used)]))
    assert first == [("Cancelled", [201]), ("Cancelled", [387]), ("PreSubmitted", [])]
    assert again == [("Cancelled", [103])]
    assert [p.outcome for p in gateway.order_log] == [
        "unsupported",
        "unsupported",
        "accepted",
        "duplicate_id",
    ]
