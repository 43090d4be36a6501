"""Every use of ib_async's internals (its Client and Wrapper objects behind `IB`), checked against ib_async 2.0.

`IB.reqHistoricalDataAsync` answers a timeout with an empty bar list, the same answer as a window without bars,
so tt_resources.sources.ibkr sends the request itself and applies its own timeout: a request id from the client, a
future registered with the wrapper (which fills it with the bars), the wire call with its positional arguments,
and the cancel message on timeout. The connection's `apiError` event (the gateway closed the socket before the
API was ready) is the client's too. ib_async treats some error codes as warnings that leave the request open
(10167: market data not subscribed); `fail_request` ends such a request with the error.
The broker (tt_resources.brokers.ibkr) asks for the account summary once per call and cancels the subscription
after its end (`account_summary`: IB.reqAccountSummaryAsync leaves it open, IBKR allows two), and sets the
client's own message throttle explicitly (`limit_message_rate`: IBKR refuses more than 50 API messages per
second). tests/test_fences.py checks what is relied on here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ib_async import IB, AccountValue, BarDataList, Contract

if TYPE_CHECKING:
    from eventkit import Event

from tt_resources.fences import require_checked

require_checked("ib_async", "2.0", "tt_resources/ib_fence.py")

DATE_FORMAT_UTC = 2  # formatDate=2: bar times as epoch seconds (UTC)


def new_request_id(ib: IB) -> int:
    """A fresh request id of the connection; ConnectionError when it is not connected."""
    return ib.client.getReqId()


def request_historical_bars(
    ib: IB,
    req_id: int,
    contract: Contract,
    *,
    end: str,
    duration: str,
    bar_size: str,
    what_to_show: str,
    use_rth: bool,
) -> asyncio.Future:
    """Send one historical-data request (`end` as IBKR's "yyyymmdd-hh:mm:ss" UTC text, bar times as epoch
    seconds, no live updates); the future resolves to a BarDataList, or raises ib_async's RequestError with
    the gateway's error code when IB.RaiseRequestErrors is set."""
    future = ib.wrapper.startReq(req_id, contract, container=BarDataList())
    ib.client.reqHistoricalData(
        req_id, contract, end, duration, bar_size, what_to_show, use_rth, DATE_FORMAT_UTC, False, []
    )
    return future


def cancel_historical_bars(ib: IB, req_id: int) -> None:
    """Tell the gateway to drop the historical request `req_id` (after a timeout)."""
    ib.client.cancelHistoricalData(req_id)


def api_errors(ib: IB) -> Event:
    """The connection's API-error event (one str argument: the message), e.g. the gateway closing the socket
    during the handshake."""
    return ib.client.apiError


def fail_request(ib: IB, req_id: int, error: Exception) -> None:
    """End the open request `req_id` (any kind) with `error`; nothing when it is not open."""
    ib.wrapper._endReq(req_id, error, success=False)


async def account_summary(ib: IB, tags: str) -> list[AccountValue]:
    """The account summary values of `tags` (comma-separated, e.g. "NetLiquidation,TotalCashValue") for group
    "All", as answered to one request whose subscription is cancelled after its end; raises ib_async's
    RequestError on an error answer (IB.RaiseRequestErrors set)."""
    values: list[AccountValue] = []
    req_id = ib.client.getReqId()
    ib.accountSummaryEvent += values.append
    try:
        future = ib.wrapper.startReq(req_id)
        ib.client.reqAccountSummary(req_id, "All", tags)
        await future
    finally:
        ib.accountSummaryEvent -= values.append
        if ib.isConnected():
            ib.client.cancelAccountSummary(req_id)
    return values


def limit_message_rate(ib: IB, messages: int, interval_s: float) -> None:
    """Let the connection's client send at most `messages` API messages per `interval_s` seconds (it queues
    the rest and sends them as the window moves on)."""
    ib.client.MaxRequests = messages
    ib.client.RequestsInterval = interval_s
