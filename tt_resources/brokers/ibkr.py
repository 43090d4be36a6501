"""tt_resources.broker.Broker on Interactive Brokers (IB Gateway or TWS) through ib_async.

Connection: the market-data source's settings (tt_resources.sources.settings.IbkrSettings: host, port, client
id and the ids tried after it, timeouts) and its connect (tt_resources.sources.ibkr.connect_client), not
read-only. ib_async's client throttles every message it sends to MESSAGES_PER_S (IBKR refuses more than 50 API
messages per second), so placing 150 orders never floods the gateway. Every call runs on the process's ib_async
loop (tt_resources.sources.ibkr.run_on_ib_loop) and blocks; a lost connection is re-established by the next
call (within `reconnect_s`, maybe under another client id).

Our orders are those whose orderRef parses (tt_resources.broker.parse_order_ref). open_orders() asks for the
working orders of every client id (reqAllOpenOrders), so an order placed by an earlier process, connection or
client id is found; executions() asks for the account's executions of every client id since an instant
(reqExecutions) with their commissions; orders() adds the orders done (reqCompletedOrders: filled, cancelled,
rejected). place() checks that an OPG order sent now (by the gateway's clock) executes at the order's session
(else a "rejected" report, "not sent: ..."), sends MKT, time in force OPG, the account and the orderRef, then
waits at most `ack_timeout_s` for IBKR's answer: acknowledged -> "submitted"; an error answer (201 and the
like) -> "rejected" with "code: text" in messages; 399 warnings are in messages either way; no answer -> a
report in state "pending_submit" (the order may be working). A connection lost before the answer raises
BrokerError: the order may be live at IBKR, this class never sends it again, and the next run finds it by its
order ref.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from ib_async import IB, ExecutionFilter, MarketOrder, OrderStatus, RequestError, Stock, Trade
from ib_async.util import UNSET_DOUBLE

from tt_resources import calendar, ib_fence
from tt_resources.broker import (
    AccountState,
    BrokerError,
    Execution,
    OrderReport,
    OrderRequest,
    OrderState,
    parse_order_ref,
)
from tt_resources.sources.base import SourceError
from tt_resources.sources.ibkr import GatewayUnreachable, connect_client, ib_symbol, run_on_ib_loop
from tt_resources.sources.settings import IbkrSettings
from tt_resources.watchlist import Listing

MESSAGES_PER_S = 45  # ib_async's default, under IBKR's limit of 50 API messages per second
ACCOUNT_TAGS = "AccountType,NetLiquidation,TotalCashValue"
ACKNOWLEDGED = frozenset({"PreSubmitted", "Submitted", "ApiUpdate"}) | OrderStatus.DoneStates
CANCELLED = 202  # "Order Canceled - reason:": the answer to a cancel, not a rejection
WARNINGS = frozenset({399, 404})  # order message warning; shares not available for short sale (held)


def is_warning(code: int) -> bool:
    """IBKR message codes that leave an order working: 399, 404 and the 2100-2199 notices."""
    return code in WARNINGS or 2100 <= code < 2200


def watchlist_symbol(ib_spelling: str) -> str:
    """The watchlist's spelling of an IBKR symbol: "BRK B" -> "BRK.B" (the inverse of ib_symbol)."""
    return ib_spelling.replace(" ", ".")


class IbkrBroker:
    """A connected IBKR account (see the module doc). `settings`: the platform's IBKR settings (e.g.
    tt_resources.sources.settings.from_config(...).ibkr); `account`: the account id among the gateway's managed
    accounts (None: the only one); `listings`: exchange and currency per symbol (absent: SMART, USD);
    `ack_timeout_s`: longest wait for an order's acknowledgement (None: settings.request_timeout_s).
    BrokerError with one line when the gateway cannot be reached or the account is not among its accounts."""

    def __init__(
        self,
        settings: IbkrSettings,
        *,
        account: str | None = None,
        listings: Mapping[str, Listing] | None = None,
        ack_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.ack_timeout_s = settings.request_timeout_s if ack_timeout_s is None else ack_timeout_s
        self.client_id = settings.client_id  # the id of the current connection
        self.account_id = account or ""
        self._listings = dict(listings or {})
        self._ib: IB | None = None
        self._connecting: asyncio.Lock | None = None  # created on the ib_async loop
        self._ever_connected = False
        # (client id, order id) -> IBKR's (code, text) messages about that order, as this process heard them
        self._messages: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
        accounts = self._run("connect", self._managed_accounts())
        refusal = None
        if account is None and len(accounts) != 1:
            refusal = f"the gateway manages {', '.join(accounts)}; name the account"
        elif account is not None and account not in accounts:
            refusal = f"account {account} is not among the gateway's ({', '.join(accounts)})"
        if refusal is not None:
            where = self._where()
            self.close()
            raise BrokerError(f"{where}: {refusal}")
        self.account_id = account or accounts[0]

    # ------------------------------------------------------------------ the protocol
    def account(self) -> AccountState:
        """Net liquidation value, cash (TotalCashValue) and positions (stocks, per watchlist symbol)."""
        return self._read("account summary and positions", self._account)

    def open_orders(self) -> list[OrderReport]:
        """Our working orders, whichever client id or process placed them."""
        return self._read("open orders", lambda: self._orders(completed=False))

    def orders(self) -> list[OrderReport]:
        """Our orders IBKR knows today: working, and done (filled, cancelled, rejected)."""
        return self._read("open and completed orders", lambda: self._orders(completed=True))

    def executions(self, since: datetime) -> list[Execution]:
        """Our executions since `since` (tz-aware, inclusive), with commissions when IBKR reported them."""
        if since.tzinfo is None:
            raise ValueError(f"since must be tz-aware, got {since}")
        return self._read("executions", lambda: self._executions(since))

    def place(self, order: OrderRequest) -> OrderReport:
        """Send one MOO order and wait (at most ack_timeout_s) for IBKR's answer (see the module doc)."""
        if order.quantity == 0 or parse_order_ref(order.order_ref) is None:
            raise ValueError(f"not an order to send: {order}")
        return self._run(f"placing {order.order_ref}", self._place(order))

    def cancel(self, order_ref: str) -> OrderReport:
        """Cancel our working order `order_ref` and wait (at most ack_timeout_s) for IBKR's answer. BrokerError
        when no such order works, or another client id placed it (IBKR lets only that client cancel it)."""
        return self._run(f"cancelling {order_ref}", self._cancel(order_ref))

    def close(self) -> None:
        """Disconnect (idempotent)."""
        if self._ib is not None:
            ib, self._ib = self._ib, None
            run_on_ib_loop(self._disconnect(ib))

    # ------------------------------------------------------------------ connection
    def _where(self) -> str:
        s = self.settings
        account = f", account {self.account_id}" if self.account_id else ""
        return f"IB Gateway at {s.host}:{s.port} (client id {self.client_id}{account})"

    def _run[T](self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the ib_async loop; a failure to answer becomes one BrokerError line."""
        try:
            return run_on_ib_loop(coro)
        except BrokerError:
            raise
        except RequestError as exc:
            raise BrokerError(f"{self._where()}: {what}: IBKR error {exc.code}: {exc.message}") from None
        except (ConnectionError, OSError, TimeoutError, SourceError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise BrokerError(f"{self._where()}: {what}: {reason}") from None

    def _read[T](self, what: str, ask: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """_run(ask()), asked once more on a new connection when the connection drops meanwhile (a gateway
        restart the client has not noticed yet): a question, unlike an order, is safe to ask twice."""

        async def twice() -> T:
            try:
                return await ask()
            except ConnectionError:
                return await ask()  # _connected() connects again

        return self._run(what, twice())

    @staticmethod
    async def _disconnect(ib: IB) -> None:
        ib.disconnect()

    async def _connected(self) -> IB:
        """The connected client; connects again after a loss: the first connection is tried max_attempts
        times, a lost one for reconnect_s, with the source's backoff (one caller at a time)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            return await self._connect()

    async def _connect(self) -> IB:
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
        s = self.settings
        began, attempts = time.monotonic(), 0
        while True:
            try:
                ib, self.client_id = await connect_client(s, readonly=False)
                break
            except GatewayUnreachable:
                attempts += 1
                given_up = attempts >= s.max_attempts if not self._ever_connected else False
                if given_up or time.monotonic() - began >= s.reconnect_s:
                    raise
                await asyncio.sleep(min(s.backoff_s * 2 ** (attempts - 1), s.backoff_max_s))
        ib_fence.limit_message_rate(ib, MESSAGES_PER_S, 1.0)
        client_id = self.client_id

        def on_error(req_id: int, code: int, text: str, contract) -> None:
            if req_id > 0:  # about an order of this connection's (or a request)
                self._messages[(client_id, req_id)].append((code, text))

        ib.errorEvent += on_error
        self._ib, self._ever_connected = ib, True
        return ib

    async def _managed_accounts(self) -> list[str]:
        return (await self._connected()).managedAccounts()

    async def _within[T](self, awaitable: Coroutine[Any, Any, T] | asyncio.Future) -> T:
        """`awaitable`'s answer within request_timeout_s (TimeoutError after)."""
        return await asyncio.wait_for(awaitable, self.settings.request_timeout_s)

    # ------------------------------------------------------------------ reads
    async def _account(self) -> AccountState:
        ib = await self._connected()
        values = await self._within(ib_fence.account_summary(ib, ACCOUNT_TAGS))
        mine = {v.tag: v for v in values if v.account == self.account_id}
        missing = [tag for tag in ("NetLiquidation", "TotalCashValue") if tag not in mine]
        if missing:
            raise BrokerError(f"{self._where()}: the account summary lacks {', '.join(missing)}")
        positions = await self._within(ib.reqPositionsAsync())
        held = {
            watchlist_symbol(p.contract.symbol): p.position
            for p in positions
            if p.account == self.account_id and p.contract.secType == "STK" and p.position != 0
        }
        net = mine["NetLiquidation"]
        return AccountState(
            self.account_id,
            net.currency,
            float(net.value),
            float(mine["TotalCashValue"].value),
            held,
            datetime.now(UTC),
        )

    async def _orders(self, *, completed: bool) -> list[OrderReport]:
        ib = await self._connected()
        trades = [t for t in await self._within(ib.reqAllOpenOrdersAsync()) if t.isActive()]
        if completed:
            trades += await self._within(ib.reqCompletedOrdersAsync(False))
        # the trades this connection placed or saw carry more (average fill price, IBKR's messages) than
        # reqCompletedOrders' copies: prefer them (by perm id; a rejection never acknowledged by order ref)
        own = {t.order.permId: t for t in ib.trades() if t.order.permId}
        unacknowledged = {t.order.orderRef: t for t in ib.trades() if not t.order.permId and t.isDone()}
        trades = [_richer(t, own, unacknowledged) for t in trades]
        reports, seen = [], set()
        for trade in trades:
            key = trade.order.permId or (trade.order.clientId, trade.order.orderId)
            if key not in seen and parse_order_ref(trade.order.orderRef) is not None:
                seen.add(key)
                reports.append(self._report(trade))
        return reports

    async def _executions(self, since: datetime) -> list[Execution]:
        ib = await self._connected()
        # a day early, then exactly here: however the gateway reads the time's zone, nothing since is missed
        early = (since - timedelta(days=1)).astimezone(UTC)
        wanted = ExecutionFilter(acctCode=self.account_id, time=early.strftime("%Y%m%d-%H:%M:%S"))
        fills = await self._within(ib.reqExecutionsAsync(wanted))
        reported = {f.execution.execId: f.commissionReport for f in ib.fills()}  # commissions arrive there
        executions = []
        for fill in fills:
            ex = fill.execution
            ref = parse_order_ref(ex.orderRef)
            if ref is None or ex.time < since:
                continue
            commission = reported.get(ex.execId)
            executions.append(
                Execution(
                    ex.execId,
                    ex.orderRef,
                    ref[2],
                    ex.shares if ex.side == "BOT" else -ex.shares,
                    ex.price,
                    ex.time.astimezone(UTC),
                    commission.commission if commission is not None and commission.execId else None,
                )
            )
        return executions

    # ------------------------------------------------------------------ orders
    async def _place(self, request: OrderRequest) -> OrderReport:
        ib = await self._connected()
        listing = self._listings.get(request.symbol, Listing(request.symbol))
        gateway_now = pd.Timestamp(await self._within(ib.reqCurrentTimeAsync())).tz_convert("UTC")
        opens = calendar.sessions(gateway_now, gateway_now + pd.Timedelta(days=10), listing.calendar)["open"]
        executes_at = opens[opens > gateway_now].index[0].date()
        if executes_at != request.session:
            return _not_sent(
                request,
                f"an OPG order sent at {gateway_now:%Y-%m-%d %H:%M} UTC (the gateway's clock) executes at the "
                f"open of {executes_at}, not of its session {request.session}",
            )
        contract = Stock(
            ib_symbol(request.symbol),
            listing.exchange,
            listing.currency,
            primaryExchange=listing.primary_exchange,
        )
        order = MarketOrder(
            "BUY" if request.quantity > 0 else "SELL",
            abs(request.quantity),
            tif="OPG",
            orderRef=request.order_ref,
            account=self.account_id,
        )
        trade = ib.placeOrder(contract, order)
        await self._await_answer(ib, trade, ACKNOWLEDGED, f"sending {request.order_ref}")
        return self._report(trade)

    async def _cancel(self, order_ref: str) -> OrderReport:
        ib = await self._connected()
        working = [
            t
            for t in await self._within(ib.reqAllOpenOrdersAsync())
            if t.isActive() and t.order.orderRef == order_ref
        ]
        if not working:
            raise BrokerError(f"{self._where()}: no working order with order ref {order_ref}")
        trade = working[0]
        if trade.order.clientId != self.client_id:
            raise BrokerError(
                f"{self._where()}: {order_ref} was placed by client id {trade.order.clientId}; IBKR lets only "
                "that client id (or TWS) cancel it"
            )
        ib.cancelOrder(trade.order)
        await self._await_answer(ib, trade, OrderStatus.DoneStates, f"cancelling {order_ref}")
        return self._report(trade)

    async def _await_answer(self, ib: IB, trade: Trade, answers: frozenset[str], what: str) -> None:
        """Wait until `trade`'s status is one of `answers` (or it got an error), at most ack_timeout_s;
        BrokerError when the connection drops first (what IBKR did with the order is then unknown)."""
        changed = asyncio.Event()

        def wake(*_) -> None:
            changed.set()

        trade.statusEvent += wake
        ib.disconnectedEvent += wake
        deadline = asyncio.get_running_loop().time() + self.ack_timeout_s
        try:
            while trade.orderStatus.status not in answers:
                if not ib.isConnected():
                    raise BrokerError(
                        f"{self._where()}: connection lost {what} before IBKR answered; the order may be live "
                        "at IBKR: it is not sent again, the next run finds it by its order ref"
                    )
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            trade.statusEvent -= wake
            ib.disconnectedEvent -= wake

    def _report(self, trade: Trade) -> OrderReport:
        """`trade` (one of ours) as an OrderReport; `remaining` is what still works (0 once done)."""
        order, status = trade.order, trade.orderStatus
        codes = self._messages.get((order.clientId, order.orderId), []) if order.orderId else []
        done = status.status in OrderStatus.DoneStates
        filled = status.filled
        if not filled and order.filledQuantity not in (UNSET_DOUBLE, None):  # a completed order
            filled = float(order.filledQuantity)
        rejected = done and any(not is_warning(code) and code != CANCELLED for code, _ in codes)
        quantity = int(order.totalQuantity)
        return OrderReport(
            order_ref=order.orderRef,
            symbol=parse_order_ref(order.orderRef)[2],
            quantity=quantity if order.action == "BUY" else -quantity,
            broker_order_id=order.orderId or None,
            perm_id=order.permId or None,
            state=_state(status.status, filled, rejected, acknowledged=bool(order.permId)),
            filled=filled,
            remaining=0.0 if done else quantity - filled,
            avg_fill_price=status.avgFillPrice if filled and status.avgFillPrice else None,
            messages=tuple(f"{code}: {text}" for code, text in codes),
        )


def _richer(trade: Trade, own: dict[int, Trade], unacknowledged: dict[str, Trade]) -> Trade:
    """This connection's own copy of `trade` when it has one (ib_async files reqCompletedOrders' copies among
    its trades too, under their perm id, when it has none)."""
    mine = own.get(trade.order.permId)
    if mine is not None and mine is not trade:
        return mine
    return unacknowledged.get(trade.order.orderRef, trade)


def _not_sent(request: OrderRequest, reason: str) -> OrderReport:
    """The report of an order refused before it was sent: "rejected", `reason` in messages."""
    return OrderReport(
        order_ref=request.order_ref,
        symbol=request.symbol,
        quantity=request.quantity,
        broker_order_id=None,
        perm_id=None,
        state="rejected",
        filled=0.0,
        remaining=0.0,
        avg_fill_price=None,
        messages=(f"not sent: {reason}",),
    )


def _state(status: str, filled: float, rejected: bool, *, acknowledged: bool) -> OrderState:
    """The protocol's state of an IBKR order status. A done order with some shares filled is
    "partially_filled" (IBKR cancels the unfilled rest of an OPG order after the opening auction); "Inactive"
    (not working, e.g. refused by IBKR's checks) counts as rejected; a warning before the acknowledgement
    (ib_async's "ValidationError") leaves the order pending."""
    if rejected or (status == "Inactive" and not filled):
        return "rejected"
    if status == "Filled":
        return "filled"
    if filled > 0:
        return "partially_filled"
    if status in OrderStatus.DoneStates or status == "PendingCancel":
        return "cancelled"
    if status in ("PendingSubmit", "ApiPending") or (status == "ValidationError" and not acknowledged):
        return "pending_submit"
    return "submitted"
