"""A wire-level IB Gateway stand-in for tests: an asyncio TCP server speaking the TWS API as ib_async 2.x does.

Protocol (server version 178): the client opens with b"API\\0" + a length-prefixed "v157..178"; every later
message is a 4-byte big-endian length followed by NUL-terminated text fields. The handshake is answered with
(server version, connection time); START_API with MANAGED_ACCTS and NEXT_VALID_ID; the startup requests
ib_async sends (positions, open/completed orders, account updates, executions) with their END messages;
contract details, head timestamps, historical bars and current time with the real message layouts.

Bars come from a deterministic series (`series`) on the NYSE grid of tt_resources.calendar, served up to the
gateway's clock `now` (closed bars only). Each historical request is checked like IBKR does and violations are
answered with IBKR's error codes and texts: 162 for pacing (identical request within 15 s, a sixth request
per contract in 2 s, the rolling budget when `rolling_budget`, over all client connections), "Time length
exceed max" and "HMDS query returned no data"; 321 for durations over 365 days not given in years and bar
sizes it does not know; 200 for symbols IBKR does not spell that way (class shares: "BRK B", never "BRK.B").
Faults are injectable (`Faults`): gateway restarts, "no data" for chosen spans, several listings, bad bars,
client ids in use, latency and a soft limit on concurrent or fast requests; and the answers of `Refusals`:
queries IBKR cancels on its side (162 "query cancelled", 366), empty bar lists, permission errors, a competing
session, requests lost with 1100/1101 or 2105/2106, connections refused after the handshake. The rolling
budget (`rolling_budget`, on by default) applies to every bar size. Every request lands in
`requests` and every bar sent in `served`, so tests can check what the client sent, when, and what it got.

The order side, as IBKR answers ib_async: placeOrder of MKT orders with time in force OPG (other order types:
387, other times in force: 201; an order id the client id used before: 103), acknowledged with openOrder and
orderStatus (PreSubmitted); reqOpenOrders (the client id's) and reqAllOpenOrders (every client id's) with
openOrderEnd; reqCompletedOrders; cancelOrder (202; 10147 for another client id's or an unknown order);
reqExecutions with its ExecutionFilter (client id 0: all; account, time, symbol, side) as execDetails and
commissionReport, then execDetailsEnd; reqPositions; reqAccountSummary (AccountType, NetLiquidation,
TotalCashValue; at most two open per client: 322) and cancelAccountSummary; reqAccountUpdates; nextValidId
above every order id the client id used. The account is `account` (DU1234567 unless a live-looking one is
given), with `cash` and no positions at the start. Orders fill only when the clock moves (`advance`,
`open_session`): a working OPG order fills at the open of the first session after it arrived, at that
session's daily open of `series`, with IBKR's fixed commission (`Commissions`); positions and cash follow.
Order faults (`Faults`): rejections (201 with a reason) and 399 warnings per symbol, partial fills (the rest
cancelled after the auction), an order accepted and then the socket closed before any answer
(`drop_before_ack`) or left unanswered (`unanswered_orders`), and `restart()` (orders, positions and executions
kept). Every placeOrder lands in `order_log` (with its orderRef and outcome; `refs_sent()`).
Run as `python -m tests.fake_ibgateway` it serves in its own process (see `main`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tt_resources import calendar
from tt_resources.sources.pacing import PacingRules

SERVER_VERSION = 178
ACCOUNT = "DU1234567"
BAR_SIZES = {"1 day": "1d", "1 hour": "1h", "15 mins": "15m"}
MAX_SPAN = {"15m": pd.DateOffset(weeks=1), "1h": pd.DateOffset(months=1), "1d": None}
UNITS = {"S": "seconds", "D": "days", "W": "weeks", "M": "months", "Y": "years"}
NO_DATA = "Historical Market Data Service error message:HMDS query returned no data: {symbol}@SMART Trades"
PACING = "Historical Market Data Service error message:Historical data request pacing violation"
TOO_LONG = "Historical Market Data Service error message:Time length exceed max."
IN_YEARS = (
    "Error validating request.-'bP' : cause - Historical data requests for durations longer than 365 days "
    "must be made in years."
)
BAD_BAR_SIZE = "Error validating request.-'bH' : cause - Historical data bar size setting is invalid."
NOT_FOUND = "No security definition has been found for the request"
CLIENT_ID_IN_USE = "Unable to connect as the client id is already in use. Retry with a unique client id."
QUERY_CANCELLED = "API historical data query cancelled: {req_id}"
QUERY_NOT_FOUND = "No historical data query found for ticker id:{req_id}"
NO_PERMISSIONS = "Historical Market Data Service error message:No market data permissions for NASDAQ STK"
NOT_SUBSCRIBED = "Requested market data is not subscribed."
DELAYED_ONLY = "Requested market data is not subscribed. Displaying delayed market data."
OTHER_IP = "Historical Market Data Service error message:Trading TWS session is connected from a different IP address"
COMPETING = "No market data during competing live session"
NOTICES = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and TWS has been restored- data lost.",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
}


BARRIER_S = 300.0  # longest wait of Faults.answer_after_clients: a bound against hangs only


@dataclass
class Faults:
    """Misbehaviour to inject; counters are consumed as requests arrive."""

    restart_after: int | None = None  # after N historical answers, drop every socket and refuse for restart_s
    restart_s: float = 3.0
    no_data: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)  # symbol -> span
    # whose requests ending inside it get 162 "no data" (a halt)...
    no_data_times: int | None = None  # ...this many times (None: always)
    listings: dict[str, list[str]] = field(default_factory=dict)  # symbol -> primary exchanges it answers
    bad_bars: dict[tuple[str, pd.Timestamp], str] = field(default_factory=dict)  # (symbol, ts) ->
    # "volume" (sent as -1), "wap" (sent as 0) or "high<low"
    all_ids_in_use: bool = False  # every client id is answered with 326
    latency_s: tuple[float, float] = (0.0, 0.0)  # historical answers wait uniform(a, b) seconds
    soft_concurrency: int | None = None  # more historical requests open than this -> 162 pacing
    soft_rate: int | None = None  # more historical requests than this within 1 s -> 162 pacing
    # historical answers wait until this many distinct client ids have connected (at most BARRIER_S seconds):
    # makes clients in several processes overlap however their start-up is staggered
    answer_after_clients: int = 0

    unknown_symbols: set[str] = field(default_factory=set)  # contract details -> error 200
    no_data_symbols: set[str] = field(default_factory=set)  # historical -> 162 "HMDS query returned no data"
    pacing_violations: int = 0  # the next N historical requests get 162 pacing violation
    silent_requests: int = 0  # the next N historical requests are never answered
    silent_symbols: set[str] = field(default_factory=set)  # historical requests never answered, always
    drop_after_bars: int | None = None  # close the connection instead of sending bar number N+1 (once)
    hold_client_id: bool = False  # after that drop the old client id stays in use (error 326)
    refusals: Refusals = field(default_factory=lambda: Refusals())
    # order side
    rejections: dict[str, str] = field(default_factory=dict)  # symbol -> reason: placeOrder is answered 201
    # "Order rejected - reason:<reason>"
    order_warnings: dict[str, str] = field(default_factory=dict)  # symbol -> text of a 399 warning sent
    # before the order's acknowledgement (the order works on)
    partial_fills: dict[str, float] = field(
        default_factory=dict
    )  # symbol -> share of an OPG order's quantity
    # filled at the open (whole shares, rounded down); IBKR cancels the unfilled rest after the auction
    drop_before_ack: int = 0  # the next N placeOrders are accepted, then the socket closes before any answer
    unanswered_orders: int = 0  # the next N placeOrders are accepted and never answered (the socket stays)


@dataclass
class Refusals:
    """IBKR answers other than bars (Faults.refusals); counters are consumed as requests arrive."""

    cancelled: int = 0  # the next N historical requests get 162 "API historical data query cancelled: <id>"
    not_found: int = 0  # ...then the next N get 366 "No historical data query found for ticker id:<id>"
    empty: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)  # symbol -> span whose
    # requests ending inside it get the end message with 0 bars and no error
    permission: dict[str, tuple[int, str]] = field(default_factory=dict)  # symbol -> (code, text) answered
    # to its head timestamp and historical requests, e.g. (354, NOT_SUBSCRIBED)
    session: tuple[int, str] | None = None  # every head timestamp and historical request gets it, e.g.
    # (162, OTHER_IP) or (10197, COMPETING)
    lost: int = 0  # the next N historical requests are never answered; the gateway sends `notices` instead
    notices: tuple[int, ...] = (1100, 1101)
    connections: bool = True  # False: the socket is closed right after the handshake (connection refused)


@dataclass
class Request:
    """One request as the gateway saw it."""

    at: float  # time.monotonic() on arrival
    client_id: int
    kind: str  # historical | head_timestamp | contract | cancel_historical
    symbol: str = ""
    end: str = ""
    duration: str = ""
    bar_size: str = ""
    outcome: str = "ok"  # ok | no_data | pacing | soft_pacing | too_long | invalid | silent | dropped | ...
    bars: int = 0
    listing: tuple[str, str] = ("", "")  # (exchange, currency) asked for (contract requests)


ORDER_REJECTED = "Order rejected - reason:{reason}"
DUPLICATE_ORDER_ID = "Duplicate order id"
UNSUPPORTED_TYPE = "Unsupported order type for this exchange and security type."
OPG_ONLY = "the stand-in takes MKT orders with time in force OPG only"
ORDER_CANCELLED = "Order Canceled - reason:"
CANCEL_NOT_FOUND = "OrderId {order_id} that needs to be cancelled is not found."
TOO_MANY_SUMMARIES = "Maximum number of account summary requests exceeded"
ACCOUNT_TAGS = ("AccountType", "NetLiquidation", "TotalCashValue")
# combo legs, order combo legs, smart combo params; scale sizes; hedgeType: none, in OPEN_ORDER and COMPLETED_ORDER
NO_COMBO_LEGS = (0, 0, 0, "", "", "", "")
EXCHANGE_ZONE = "US/Eastern"  # execution times are sent in the exchange's zone, as TWS set to it sends them


@dataclass(frozen=True)
class Commissions:
    """IBKR's fixed pricing for US stocks, per execution: `per_share`, at least `minimum`, at most
    `max_share` of the trade value (USD)."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_share: float = 0.01

    def of(self, shares: float, price: float) -> float:
        """Commission of `shares` (unsigned) at `price`."""
        return round(min(max(self.per_share * shares, self.minimum), self.max_share * shares * price), 6)


@dataclass
class PlacedOrder:
    """One placeOrder message as the gateway received it, and what it did with it."""

    at: float  # time.monotonic() on arrival
    client_id: int
    order_id: int
    symbol: str  # as IBKR spells it ("BRK B")
    action: str  # BUY | SELL
    quantity: float
    order_type: str
    tif: str
    order_ref: str
    account: str
    outcome: str = "accepted"  # accepted | rejected | duplicate_id | unsupported | unacknowledged


@dataclass
class GatewayOrder:
    """An order the gateway accepted, and its life."""

    placed: PlacedOrder
    perm_id: int
    con_id: int
    placed_at: pd.Timestamp  # the gateway's clock when it arrived
    status: str = "PreSubmitted"  # PreSubmitted | Filled | Cancelled
    filled: float = 0.0
    avg_price: float = 0.0
    completed: str = ""  # completedStatus text once done

    @property
    def working(self) -> bool:
        return self.status == "PreSubmitted"


@dataclass(frozen=True)
class GatewayExecution:
    """One execution of an accepted order, with its commission."""

    exec_id: str
    perm_id: int
    time: pd.Timestamp
    shares: float  # unsigned
    price: float
    commission: float


def series(symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The stand-in's deterministic bars for [start, end): ts, end, session, OHLCV, wap, bar_count."""
    bars = calendar.bar_table(timeframe, start, end)
    x = bars["ts"].to_numpy("datetime64[s]").astype(np.int64) / 86_400.0
    base = 20.0 + zlib.crc32(symbol.encode()) % 300
    phase = zlib.crc32(symbol.encode()) % 97 / 10.0
    close = base * (1.0 + 0.15 * np.sin(x / 9.0 + phase) + 0.05 * np.sin(x * 7.3))
    open_ = base * (1.0 + 0.15 * np.sin((x - 0.01) / 9.0 + phase) + 0.05 * np.sin((x - 0.01) * 7.3))
    volume = 1_000.0 + (bars["ts"].to_numpy("datetime64[s]").astype(np.int64) // 60) % 977
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    return bars.assign(
        open=open_.round(4),
        high=high.round(4),
        low=low.round(4),
        close=close.round(4),
        volume=volume,
        wap=((high + low + close) / 3).round(4),
        bar_count=(volume // 10).astype(np.int64),
    )


def con_id_of(symbol: str, primary: str = "NASDAQ") -> int:
    """The stand-in's conId of a listing."""
    return 10_000 + zlib.crc32(f"{symbol}@{primary}".encode()) % 1_000_000


def contract_data(
    symbol: str, con_id: int, exchange: str = "SMART", currency: str = "USD", primary: str = "NASDAQ"
) -> tuple:
    """CONTRACT_DATA fields after reqId for a common stock listed as asked, in the decoder's order."""
    head = (symbol, "STK", "", 0, "", exchange, currency, symbol, "NMS", symbol, con_id, 0.01, "")
    trading = ("ACTIVETIM,LMT,MKT", "SMART,NYSE,NASDAQ", 1, 0, f"{symbol} INC", primary, "")
    industry = ("Technology", "", "", "US/Eastern", "", "", "", 0)
    tail = (0, "1", "", "", "26", "", "COMMON", 1, 1, 100)  # numSecIds=0, aggGroup .. sizes
    return (*head, *trading, *industry, *tail)


def parse_end(text: str, now: pd.Timestamp) -> pd.Timestamp:
    """IBKR endDateTime: '' (now), 'yyyymmdd-hh:mm:ss' (UTC) or 'yyyymmdd hh:mm:ss <zone>'."""
    if not text:
        return now
    if "-" in text:
        return pd.Timestamp(pd.to_datetime(text, format="%Y%m%d-%H:%M:%S"), tz="UTC")
    day, clock, zone = text.split(" ", 2)
    return (
        pd.Timestamp(pd.to_datetime(day + clock, format="%Y%m%d%H:%M:%S")).tz_localize(zone).tz_convert("UTC")
    )


def order_contract_fields(order: GatewayOrder) -> tuple:
    """The 11 contract fields of openOrder, completedOrder and execDetails: conId, symbol, secType,
    lastTradeDate, strike, right, multiplier, exchange, currency, localSymbol, tradingClass."""
    symbol = order.placed.symbol
    return (order.con_id, symbol, "STK", "", 0.0, "", "", "SMART", "USD", symbol, "NMS")


def open_order_fields(order: GatewayOrder, account: str) -> tuple:
    """OPEN_ORDER fields after the message id for server version 178 (no version field, no faProfile), in the
    decoder's order; values not used by a plain MKT order are empty (the decoder keeps its defaults)."""
    p = order.placed
    head = (p.order_id, *order_contract_fields(order), p.action, p.quantity, p.order_type, "", "", p.tif, "")
    head += (account, "O", 0, p.order_ref, p.client_id, order.perm_id, 0, 0, 0, "", "", "", "", "")
    middle = ("",) * 29 + ("",) * 7  # modelCode .. deltaNeutralAuxPrice; continuousUpdate .. comboLegsDescrip
    legs = NO_COMBO_LEGS
    routing = (
        "",
        "",
        "",
        "",
        0,
        "",
    )  # optOutSmartRouting .. notHeld, no delta-neutral contract, algoStrategy
    state = ("", 0, order.status) + ("",) * 16  # solicited, whatIf, status, margins .. randomizePrice
    tail = (0,) + ("",) * 16 + ("",) * 3 + ("",) * 5  # conditions; adjusted .. usePriceMgmtAlgo; duration ..
    return head + middle + legs + routing + state + tail


def completed_order_fields(order: GatewayOrder) -> tuple:
    """COMPLETED_ORDER fields after the message id for server version 178, in the decoder's order."""
    p = order.placed
    head = (*order_contract_fields(order), p.action, p.quantity, p.order_type, "", "", p.tif, "", p.account)
    head += ("O", 0, p.order_ref, order.perm_id, 0, 0, 0, "", "", "", "")
    middle = ("",) * 23 + ("",) * 5  # modelCode .. deltaNeutralAuxPrice; continuousUpdate .. comboLegsDescrip
    legs = NO_COMBO_LEGS
    routing = ("", "", "", 0, "")  # clearingAccount, clearingIntent, notHeld, no delta-neutral, algoStrategy
    state = ("", order.status, "", "", 0)  # solicited, status, randomizeSize, randomizePrice, no conditions
    done = order.placed_at.tz_convert(EXCHANGE_ZONE).strftime(f"%Y%m%d %H:%M:%S {EXCHANGE_ZONE}")
    tail = ("",) * 6 + (order.filled,) + ("",) * 6 + (done, order.completed) + ("",) * 5
    return head + middle + legs + routing + state + tail


def execution_filter_time(text: str) -> pd.Timestamp:
    """ExecutionFilter.time: 'yyyymmdd-hh:mm:ss' (UTC), 'yyyymmdd hh:mm:ss <zone>' or 'yyyymmdd hh:mm:ss' (the
    gateway's zone, EXCHANGE_ZONE here)."""
    if "-" not in text and text.count(" ") == 1:
        text = f"{text} {EXCHANGE_ZONE}"
    return parse_end(text, pd.Timestamp.now(tz="UTC"))


ORDER_MESSAGES = {  # incoming message id -> handler of the order side
    3: "_place_order",
    4: "_cancel_order",
    5: "_open_orders",
    6: "_account_updates",
    7: "_executions",
    8: "_request_ids",
    16: "_all_open_orders",
    61: "_positions",
    62: "_account_summary",
    63: "_cancel_account_summary",
    99: "_completed_orders",
}


class FakeIBGateway:
    """Run with `start()` (returns the port) and `stop()`; adjust `now`, `faults` and `rules` between calls;
    move the clock with `advance`, `open_session` and `close_session` when orders should fill."""

    def __init__(
        self,
        now: pd.Timestamp,
        *,
        rules: PacingRules | None = None,
        head: pd.Timestamp | None = None,
        faults: Faults | None = None,
        account: str = ACCOUNT,
        cash: float = 1_000_000.0,
        commissions: Commissions | None = None,
    ) -> None:
        self.now = now
        self.account = account  # e.g. a live-looking "U7654321"
        self.cash = cash  # USD
        self.commissions = commissions or Commissions()
        self.positions: dict[str, float] = {}  # IBKR symbol -> shares
        self.costs: dict[str, float] = {}  # IBKR symbol -> average cost per share
        self.order_log: list[PlacedOrder] = []  # every placeOrder received
        self.orders: dict[int, GatewayOrder] = {}  # perm id -> accepted order (kept over restarts)
        self.executions: list[GatewayExecution] = []
        self._summaries: dict[int, set[int]] = {}  # client id -> open account summary request ids
        self.rules = rules or PacingRules()
        self.head = head if head is not None else now - pd.DateOffset(years=5)
        self.faults = faults or Faults()
        self.requests: list[Request] = []
        self.served: dict[tuple[str, str], pd.DataFrame] = {}  # (symbol, timeframe) -> bars sent, by ts
        self.rolling_budget = True  # enforce max_requests per window_s (IBKR: only bars <= 30 s now)
        self.port = 0
        self._open: set[tuple[int, int]] = set()  # (client id, req id) of historical requests not answered
        self._random = np.random.default_rng(0)
        self._clients: dict[int, asyncio.StreamWriter] = {}
        self._held: set[int] = set()
        self._connected: set[int] = set()  # every client id that ever connected
        self._bars_sent = 0
        self._answered = 0
        self._last_second: deque[float] = deque()  # arrivals within the last second (soft rate limit)
        self._recent: deque[tuple[float, str, tuple]] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-ibgateway", daemon=True)
        self._server: asyncio.Server | None = None
        self.restarts: list[float] = []
        self.splits: dict[str, list[tuple]] = {}  # symbol -> (first session date, ratio) (see `split`)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> int:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for writer in list(self._clients.values()):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def drop_connections(self) -> None:
        """Close every client socket now (as a gateway restart would)."""
        for writer in list(self._clients.values()):
            self._loop.call_soon_threadsafe(writer.close)

    async def _restart(self, down_s: float) -> None:
        """IB Gateway's nightly restart: drop every socket, refuse connections for `down_s`, listen again."""
        self._server.close()
        for writer in list(self._clients.values()):
            writer.close()
        self._clients.clear()
        self.restarts.append(time.monotonic())
        await asyncio.sleep(down_s)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def wait_listening(self, bound_s: float = BARRIER_S) -> None:
        """Block until the stand-in accepts connections (a restart over); `bound_s` only guards against hangs."""
        deadline = time.monotonic() + bound_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def violations(self) -> list[Request]:
        """Historical requests the stand-in answered with a pacing violation (its rules or its soft limit)."""
        return [r for r in self.historical() if r.outcome in ("pacing", "soft_pacing")]

    def served_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """Every distinct bar sent for (symbol, timeframe) as sent (bad values included), sorted by ts."""
        return self.served.get((symbol, timeframe), series(symbol, timeframe, self.now, self.now)).copy()

    def historical(self) -> list[Request]:
        """The historical-data requests received so far."""
        return [r for r in self.requests if r.kind == "historical"]

    def expected(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The bars a correct client ends up with for [start, end) (closed bars from the head on)."""
        bars = series(symbol, timeframe, max(start, self.head), end)
        return self.split_adjusted(symbol, bars[bars["end"] <= self.now].reset_index(drop=True))

    def split(self, symbol: str, first_session: str, ratio: float) -> None:
        """`symbol` splits `ratio` new shares for one old (2.0 = 2:1, 0.1 = 1:10) from `first_session`
        (a date) on: once the clock reaches that session, history is served adjusted as IBKR serves it."""
        self.splits.setdefault(symbol, []).append((pd.Timestamp(first_session).date(), ratio))

    def split_adjusted(self, symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
        """`bars` as served at the clock: once a split's first session has come, every bar has its prices
        divided by the ratio and its volume multiplied (bars from that session on trade at the new price,
        older ones are adjusted as IBKR adjusts TRADES history); before it, the series as it is."""
        today = self.now.tz_convert("America/New_York").date()
        for first, ratio in self.splits.get(symbol, ()):
            if today >= first:
                bars = bars.assign(
                    **{c: (bars[c] / ratio).round(4) for c in ("open", "high", "low", "close", "wap")},
                    volume=bars["volume"] * ratio,
                )
        return bars

    # ------------------------------------------------------------------ wire
    @staticmethod
    def _frame(*fields) -> bytes:
        payload = "".join(f"{f}\0" for f in fields).encode()
        return struct.pack(">I", len(payload)) + payload

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_id = -1
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            await self._read(reader)  # "v157..178"
            writer.write(self._frame(SERVER_VERSION, self.now.strftime("%Y%m%d %H:%M:%S UTC")))
            while True:
                fields = await self._read(reader)
                if fields[0] == "71" and not self.faults.refusals.connections:
                    return  # the gateway closes the socket: e.g. this host is not a trusted API client
                if fields[0] == "71":  # START_API: version, clientId, optCapab
                    client_id = int(fields[2])
                    if client_id in self._clients or client_id in self._held or self.faults.all_ids_in_use:
                        writer.write(self._frame(4, 2, -1, 326, CLIENT_ID_IN_USE, ""))
                        await writer.drain()
                        client_id = -1
                        return
                    self._clients[client_id] = writer
                    self._connected.add(client_id)
                    writer.write(self._frame(15, 1, self.account))
                    writer.write(self._frame(9, 1, self._next_order_id(client_id)))
                    writer.write(self._frame(4, 2, -1, 2104, "Market data farm connection is OK:usfarm", ""))
                    writer.write(self._frame(4, 2, -1, 2106, "HMDS data farm connection is OK:ushmds", ""))
                else:
                    self._handle(client_id, writer, fields)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if self._clients.get(client_id) is writer:
                del self._clients[client_id]
                self._summaries.pop(client_id, None)
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> list[str]:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        return (await reader.readexactly(size)).decode().split("\0")[:-1]

    def _handle(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        msg = int(fields[0])
        send = writer.write
        if msg in ORDER_MESSAGES:
            getattr(self, ORDER_MESSAGES[msg])(client_id, writer, fields)
        elif msg == 76:  # reqAccountUpdatesMulti(version, reqId, ...)
            send(self._frame(74, 1, fields[2]))
        elif msg == 49:  # reqCurrentTime
            send(self._frame(49, 1, int(self.now.timestamp())))
        elif msg == 9:  # reqContractDetails(version, reqId, contract...)
            # fields: version, reqId, conId, symbol, secType, lastTrade, strike, right, multiplier, exchange,
            # primaryExchange, currency, ...
            self._contract_details(
                client_id, send, int(fields[2]), fields[4], (fields[10], fields[12]), fields[11]
            )
        elif (
            msg == 87
        ):  # reqHeadTimeStamp(reqId, contract(12), includeExpired, useRTH, whatToShow, formatDate)
            req_id, symbol = int(fields[1]), fields[3]
            self.requests.append(Request(time.monotonic(), client_id, "head_timestamp", symbol))
            refused = self._refused(symbol)
            if symbol in self.faults.unknown_symbols:
                send(self._frame(4, 2, req_id, 200, NOT_FOUND, ""))
            elif refused is not None:
                send(self._frame(4, 2, req_id, *refused, ""))
            else:
                send(self._frame(88, req_id, int(self.head.timestamp())))
        elif msg == 20:  # reqHistoricalData
            self._historical(client_id, writer, fields)
        elif msg == 25:  # cancelHistoricalData(version, reqId)
            self.requests.append(Request(time.monotonic(), client_id, "cancel_historical", end=fields[2]))

    # ------------------------------------------------------------------ order side: clock and book
    def advance(self, to: pd.Timestamp) -> None:
        """Move the gateway's clock to `to`: every working OPG order whose session has opened by then fills at
        that session's open (in part with Faults.partial_fills, the rest cancelled); its owner, if connected,
        gets openOrder, orderStatus, execDetails and commissionReport, every client the new position."""
        if not self._thread.is_alive():  # not started (or stopped): nobody to tell
            self._advance(to)
            return

        async def on_the_loop() -> None:
            self._advance(to)

        asyncio.run_coroutine_threadsafe(on_the_loop(), self._loop).result(BARRIER_S)

    def open_session(self, day) -> pd.Timestamp:
        """advance() to the open of the session on `day` (a date); returns that instant."""
        at = calendar.session_open(day)
        self.advance(at)
        return at

    def close_session(self, day) -> pd.Timestamp:
        """advance() to the close of the session on `day` (its daily bar is served from then on)."""
        at = calendar.sessions(calendar.session_open(day), calendar.session_open(day)).loc[
            pd.Timestamp(day).normalize(), "close"
        ]
        self.advance(at)
        return at

    def restart(self, down_s: float = 0.5) -> None:
        """IB Gateway's restart, now: every socket dropped, connections refused for `down_s`; orders, positions
        and executions kept (wait_listening() blocks until it listens again)."""
        asyncio.run_coroutine_threadsafe(self._restart(down_s), self._loop)

    def mark(self, symbol: str) -> float:
        """`symbol`'s price at the clock: the close of the last session closed, or the open of the session on."""
        bars = series(symbol, "1d", self.now - pd.Timedelta(days=10), self.now + pd.Timedelta(seconds=1))
        last = bars.iloc[-1]
        return float(last["close"] if last["end"] <= self.now else last["open"])

    def net_liquidation(self) -> float:
        """Cash plus the positions at their mark (USD)."""
        return self.cash + sum(shares * self.mark(symbol) for symbol, shares in self.positions.items())

    def refs_sent(self) -> list[str]:
        """The orderRef of every placeOrder received, in arrival order (duplicates show as repeats)."""
        return [placed.order_ref for placed in self.order_log]

    def _advance(self, to: pd.Timestamp) -> None:
        self.now = to
        for order in list(self.orders.values()):
            if order.working:
                opens = calendar.sessions(order.placed_at, order.placed_at + pd.Timedelta(days=10))["open"]
                opened = opens[opens > order.placed_at].iloc[0]
                if opened <= to:
                    self._fill(order, opened)

    def _fill(self, order: GatewayOrder, opened: pd.Timestamp) -> None:
        """Fill `order` at the open of the session opening at `opened` (see advance)."""
        placed = order.placed
        bars = series(placed.symbol, "1d", opened, opened + pd.Timedelta(days=1))
        price = float(bars["open"].iloc[0])
        share = self.faults.partial_fills.get(placed.symbol)
        shares = placed.quantity if share is None else float(int(placed.quantity * share))
        order.filled, order.avg_price = shares, price if shares else 0.0
        if shares == placed.quantity:
            order.status, order.completed = "Filled", "Filled"
        else:
            order.status = "Cancelled"
            order.completed = (
                f"Cancelled: {placed.quantity - shares:g} shares unfilled at the opening auction"
            )
        owner = self._clients.get(placed.client_id)
        frames = self._order_frames(order)
        if shares:
            signed = shares if placed.action == "BUY" else -shares
            commission = self.commissions.of(shares, price)
            execution = GatewayExecution(
                f"{order.perm_id:08x}.{len(self.executions) + 1:08x}.01.01",
                order.perm_id,
                opened,
                shares,
                price,
                commission,
            )
            self.executions.append(execution)
            self._book(placed.symbol, signed, price)
            self.cash -= signed * price + commission
            frames += self._execution_frames(-1, execution)
            for writer in list(self._clients.values()):
                if not writer.is_closing():
                    writer.write(self._position_frame(placed.symbol, order.con_id))
        if owner is not None and not owner.is_closing():
            for frame in frames:
                owner.write(frame)

    def _book(self, symbol: str, signed: float, price: float) -> None:
        """Add `signed` shares bought (> 0) or sold at `price` to the position and its average cost."""
        held = self.positions.get(symbol, 0.0)
        after = held + signed
        if after == 0:
            self.positions.pop(symbol, None)
            self.costs.pop(symbol, None)
            return
        if held == 0 or (held > 0) != (after > 0):
            self.costs[symbol] = price
        elif abs(after) > abs(held):
            self.costs[symbol] = (self.costs[symbol] * abs(held) + price * abs(signed)) / abs(after)
        self.positions[symbol] = after

    def _next_order_id(self, client_id: int) -> int:
        """nextValidId for `client_id`: above every order id it ever used (IBKR keeps them over restarts)."""
        return 1 + max((p.order_id for p in self.order_log if p.client_id == client_id), default=0)

    # ------------------------------------------------------------------ order side: messages
    def _place_order(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 3, orderId, contract(12: conId symbol secType lastTrade strike right multiplier exchange
        # primaryExchange currency localSymbol tradingClass), secIdType, secId, action, totalQuantity,
        # orderType, lmtPrice, auxPrice, tif, ocaGroup, account, openClose, origin, orderRef, transmit, ...
        order_id, symbol = int(fields[1]), fields[3]
        placed = PlacedOrder(
            time.monotonic(),
            client_id,
            order_id,
            symbol,
            action=fields[16],
            quantity=float(fields[17]),
            order_type=fields[18],
            tif=fields[21],
            order_ref=fields[26],
            account=fields[23],
        )
        used = any(p.client_id == client_id and p.order_id == order_id for p in self.order_log)
        self.order_log.append(placed)

        def refuse(code: int, text: str, outcome: str) -> None:
            placed.outcome = outcome
            writer.write(self._frame(4, 2, order_id, code, text, ""))

        if used:  # the stand-in does not modify orders: any id the client id used before is a duplicate
            return refuse(103, DUPLICATE_ORDER_ID, "duplicate_id")
        if placed.order_type != "MKT":
            return refuse(387, UNSUPPORTED_TYPE, "unsupported")
        if placed.tif != "OPG":
            return refuse(201, ORDER_REJECTED.format(reason=OPG_ONLY), "unsupported")
        order = GatewayOrder(placed, 1_000_000 + len(self.orders) + 1, con_id_of(symbol), self.now)
        self.orders[order.perm_id] = order
        reason = self.faults.rejections.get(symbol)
        if reason is not None:
            order.status, order.completed = "Cancelled", f"Rejected: {reason}"
            return refuse(201, ORDER_REJECTED.format(reason=reason), "rejected")
        if self.faults.drop_before_ack > 0:  # accepted; the client never hears of it
            self.faults.drop_before_ack -= 1
            placed.outcome = "unacknowledged"
            writer.close()
            return None
        if self.faults.unanswered_orders > 0:
            self.faults.unanswered_orders -= 1
            placed.outcome = "unacknowledged"
            return None
        warning = self.faults.order_warnings.get(symbol)
        if warning is not None:
            text = f"Order Message:\n{placed.action} {placed.quantity:g} {symbol} SMART\nWarning: {warning}"
            writer.write(self._frame(4, 2, order_id, 399, text, ""))
        for frame in self._order_frames(order):
            writer.write(frame)
        return None

    def _cancel_order(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 4, version, orderId, manualOrderCancelTime: only the client that placed an order may cancel it
        order_id = int(fields[2])
        mine = [
            o
            for o in self.orders.values()
            if o.placed.client_id == client_id and o.placed.order_id == order_id and o.working
        ]
        if not mine:
            writer.write(self._frame(4, 2, order_id, 10147, CANCEL_NOT_FOUND.format(order_id=order_id), ""))
            return
        order = mine[0]
        order.status, order.completed = "Cancelled", "Cancelled by the API"
        for frame in self._order_frames(order)[1:]:
            writer.write(frame)
        writer.write(self._frame(4, 2, order_id, 202, ORDER_CANCELLED, ""))

    def _open_orders(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 5, version: the working orders this client id placed (over every connection it had)
        self._send_open(writer, lambda o: o.placed.client_id == client_id)

    def _all_open_orders(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 16, version: the working orders of every client id
        self._send_open(writer, lambda o: True)

    def _send_open(self, writer: asyncio.StreamWriter, wanted) -> None:
        for order in self.orders.values():
            if order.working and wanted(order):
                for frame in self._order_frames(order):
                    writer.write(frame)
        writer.write(self._frame(53, 1))

    def _completed_orders(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 99, apiOnly: every order done (filled, cancelled, rejected), of every client id
        for order in self.orders.values():
            if not order.working:
                writer.write(self._frame(101, *completed_order_fields(order)))
        writer.write(self._frame(102))

    def _executions(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 7, version, reqId, filter: clientId (0: every client), acctCode, time, symbol, secType, exchange, side
        req_id, by_client, account, since, symbol = int(fields[2]), int(fields[3] or 0), *fields[4:7]
        side = fields[9] if len(fields) > 9 else ""
        start = execution_filter_time(since) if since else None
        for execution in self.executions:
            placed = self.orders[execution.perm_id].placed
            if (
                (by_client and placed.client_id != by_client)
                or (account and account != self.account)
                or (start is not None and execution.time < start)
                or (symbol and symbol != placed.symbol)
                or (side and side != placed.action)
            ):
                continue
            for frame in self._execution_frames(req_id, execution):
                writer.write(frame)
        writer.write(self._frame(55, 1, req_id))

    def _positions(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 61, version
        for symbol in self.positions:
            writer.write(self._position_frame(symbol, con_id_of(symbol)))
        writer.write(self._frame(62, 1))

    def _account_summary(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 62, version, reqId, group, tags: IBKR keeps at most two summary subscriptions open (error 322)
        req_id, tags = int(fields[2]), fields[4].split(",")
        open_ids = self._summaries.setdefault(client_id, set())
        if len(open_ids) >= 2:
            writer.write(self._frame(4, 2, req_id, 322, TOO_MANY_SUMMARIES, ""))
            return
        open_ids.add(req_id)
        for tag, value, currency in self._account_values():
            if tag in tags:
                writer.write(self._frame(63, 1, req_id, self.account, tag, value, currency))
        writer.write(self._frame(64, 1, req_id))

    def _cancel_account_summary(
        self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]
    ) -> None:
        # 63, version, reqId
        self._summaries.get(client_id, set()).discard(int(fields[2]))

    def _account_updates(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 6, version, subscribe, account: the account's values, then accountDownloadEnd
        if fields[2] == "1":
            for tag, value, currency in self._account_values():
                writer.write(self._frame(6, 2, tag, value, currency, self.account))
            writer.write(self._frame(54, 1, fields[3]))

    def _request_ids(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 8, version, numIds
        writer.write(self._frame(9, 1, self._next_order_id(client_id)))

    def _account_values(self) -> list[tuple[str, str, str]]:
        """(tag, value, currency) of ACCOUNT_TAGS: paper accounts are "DU..." and INDIVIDUAL like live ones."""
        return [
            ("AccountType", "INDIVIDUAL", ""),
            ("NetLiquidation", f"{self.net_liquidation():.2f}", "USD"),
            ("TotalCashValue", f"{self.cash:.2f}", "USD"),
        ]

    def _order_frames(self, order: GatewayOrder) -> list[bytes]:
        """openOrder and orderStatus of `order`, as IBKR sends them after a placeOrder, a fill or on request."""
        placed = order.placed
        status = (
            placed.order_id,
            order.status,
            order.filled,
            placed.quantity - order.filled,
            order.avg_price,
            order.perm_id,
            0,  # parentId
            order.avg_price,  # lastFillPrice
            placed.client_id,
            "",  # whyHeld
            0.0,  # mktCapPrice
        )
        return [self._frame(5, *open_order_fields(order, self.account)), self._frame(3, *status)]

    def _execution_frames(self, req_id: int, execution: GatewayExecution) -> list[bytes]:
        """execDetails (req_id -1: live) and its commissionReport."""
        order = self.orders[execution.perm_id]
        placed = order.placed
        when = execution.time.tz_convert(EXCHANGE_ZONE).strftime(f"%Y%m%d %H:%M:%S {EXCHANGE_ZONE}")
        details = (
            req_id,
            placed.order_id,
            *order_contract_fields(order),
            execution.exec_id,
            when,
            self.account,
            "NASDAQ",
            "BOT" if placed.action == "BUY" else "SLD",
            execution.shares,
            execution.price,
            execution.perm_id,
            placed.client_id,
            0,  # liquidation
            execution.shares,  # cumQty
            execution.price,  # avgPrice
            placed.order_ref,
            "",  # evRule
            "",  # evMultiplier
            "",  # modelCode
            1,  # lastLiquidity: added liquidity
            0,  # pendingPriceRevision
        )
        commission = (1, execution.exec_id, execution.commission, "USD", "", "", "")
        return [self._frame(11, *details), self._frame(59, *commission)]

    def _position_frame(self, symbol: str, con_id: int) -> bytes:
        contract = (con_id, symbol, "STK", "", 0.0, "", "", "NASDAQ", "USD", symbol, "NMS")
        shares, cost = self.positions.get(symbol, 0.0), self.costs.get(symbol, 0.0)
        return self._frame(61, 3, self.account, *contract, shares, cost)

    def _contract_details(
        self, client_id: int, send, req_id: int, symbol: str, listing: tuple[str, str], primary: str
    ) -> None:
        self.requests.append(Request(time.monotonic(), client_id, "contract", symbol, listing=listing))
        if symbol in self.faults.unknown_symbols or "." in symbol:  # IBKR spells class shares "BRK B"
            send(self._frame(4, 2, req_id, 200, NOT_FOUND, ""))
            return
        primaries = [p for p in self.faults.listings.get(symbol, ["NASDAQ"]) if p == primary or not primary]
        for listed in primaries:
            # CONTRACT_DATA as serialised for server versions >= 164 (no version field, no mdSizeMultiplier)
            data = contract_data(symbol, con_id_of(symbol, listed), *listing, primary=listed)
            send(self._frame(10, req_id, *data))
        send(self._frame(52, 1, req_id))

    def _historical(self, client_id: int, writer: asyncio.StreamWriter, fields: list[str]) -> None:
        # 20, reqId, contract(12: conId symbol secType lastTrade strike right multiplier exchange primaryExchange
        # currency localSymbol tradingClass), includeExpired, endDateTime, barSize, duration, useRTH,
        # whatToShow, formatDate, keepUpToDate, chartOptions
        req_id, symbol = int(fields[1]), fields[3]
        end_text, bar_size, duration, use_rth, what, fmt = fields[15:21]
        record = Request(time.monotonic(), client_id, "historical", symbol, end_text, duration, bar_size)
        self.requests.append(record)
        faults = self.faults
        key = (client_id, req_id)

        def answer(*frames: bytes) -> None:
            """Send now, or after the injected latency (the request stays open meanwhile)."""
            low, high = faults.latency_s
            delay = float(self._random.uniform(low, high)) if high > 0 else 0.0
            self._open.add(key)

            def send() -> None:
                self._open.discard(key)
                if not writer.is_closing():
                    for frame in frames:
                        writer.write(frame)

            def when_clients_connected(deadline: float) -> None:
                if len(self._connected) >= faults.answer_after_clients or time.monotonic() > deadline:
                    self._loop.call_later(delay, send) if delay > 0 else send()
                else:
                    self._loop.call_later(0.05, when_clients_connected, deadline)

            when_clients_connected(time.monotonic() + BARRIER_S)

        def error(code: int, text: str, outcome: str) -> None:
            record.outcome = outcome
            answer(self._frame(4, 2, req_id, code, text, ""))

        violation = self._pacing_violation(record, (symbol, end_text, duration, bar_size, what, use_rth))
        if faults.pacing_violations > 0 or violation:
            faults.pacing_violations = max(0, faults.pacing_violations - 1)
            return error(162, PACING, "pacing")
        if self._soft_limited(record):
            return error(162, PACING, "soft_pacing")
        refused = self._refused(symbol) or self._dropped_query(req_id)
        if refused is not None:
            return error(*refused, "refused")
        if self._lose(writer):
            record.outcome = "lost"
            return None
        if faults.silent_requests > 0 or symbol in faults.silent_symbols:
            faults.silent_requests = max(0, faults.silent_requests - 1)
            record.outcome = "silent"
            return None
        timeframe = BAR_SIZES.get(bar_size)
        match = re.fullmatch(r"(\d+) ([SDWMY])", duration)
        if timeframe is None or match is None:
            return error(321, BAD_BAR_SIZE, "invalid")
        count, unit = int(match[1]), match[2]
        if unit == "D" and count > 365:
            return error(321, IN_YEARS, "invalid")
        span = pd.DateOffset(**{UNITS[unit]: count})
        end = parse_end(end_text, self.now)
        limit = MAX_SPAN[timeframe]
        if limit is not None and end - span < end - limit:
            return error(162, TOO_LONG, "too_long")
        bars = self.expected(symbol, timeframe, end - span, min(end, self.now))
        halt = faults.no_data.get(symbol)
        if halt is not None and halt[0] <= end <= halt[1] and faults.no_data_times != 0:
            if faults.no_data_times is not None:
                faults.no_data_times -= 1
            bars = bars.iloc[:0]
        if self._answers_empty(symbol, end):
            bars, record.outcome = bars.iloc[:0], "empty"
        elif symbol in faults.no_data_symbols or bars.empty:
            return error(162, NO_DATA.format(symbol=symbol), "no_data")
        if faults.drop_after_bars is not None and self._bars_sent + len(bars) > faults.drop_after_bars:
            faults.drop_after_bars = None
            record.outcome = "dropped"
            if faults.hold_client_id:
                self._held.add(client_id)
            writer.close()
            return None
        if faults.restart_after is not None and self._answered >= faults.restart_after:
            faults.restart_after = None
            record.outcome = "dropped"
            self._restarting = asyncio.ensure_future(self._restart(faults.restart_s))
            return None
        self._answered += 1
        self._bars_sent += len(bars)
        record.bars = len(bars)
        bars = self._spoil(symbol, bars)
        known = self.served.get((symbol, timeframe))
        sent = bars.drop(columns=["end", "session"])
        self.served[(symbol, timeframe)] = (
            sent if known is None else pd.concat([known, sent]).drop_duplicates("ts").sort_values("ts")
        )
        if timeframe == "1d":  # daily bars always come as session dates
            dates = pd.to_datetime(bars["session"]).dt.strftime("%Y%m%d")
        elif fmt == "2":
            dates = (bars["ts"].astype("int64") // 10**9).astype(str)
        else:
            dates = bars["ts"].dt.tz_convert("US/Eastern").dt.strftime("%Y%m%d %H:%M:%S US/Eastern")
        rows = zip(
            dates,
            *(bars[c] for c in ("open", "high", "low", "close", "volume", "wap", "bar_count")),
            strict=True,
        )
        flat = [value for row in rows for value in row]
        start_text = (end - span).strftime("%Y%m%d-%H:%M:%S")
        answer(self._frame(17, req_id, start_text, end.strftime("%Y%m%d-%H:%M:%S"), len(bars), *flat))

    def _refused(self, symbol: str) -> tuple[int, str] | None:
        """The session's or the symbol's refusal (Refusals.session, .permission), or None."""
        refusals = self.faults.refusals
        return refusals.session or refusals.permission.get(symbol)

    def _dropped_query(self, req_id: int) -> tuple[int, str] | None:
        """162 "query cancelled" or 366 while Refusals.cancelled / .not_found last, else None."""
        refusals = self.faults.refusals
        if refusals.cancelled > 0:
            refusals.cancelled -= 1
            return 162, QUERY_CANCELLED.format(req_id=req_id)
        if refusals.not_found > 0:
            refusals.not_found -= 1
            return 366, QUERY_NOT_FOUND.format(req_id=req_id)
        return None

    def _lose(self, writer: asyncio.StreamWriter) -> bool:
        """While Refusals.lost lasts: leave the request unanswered and send Refusals.notices shortly after."""
        refusals = self.faults.refusals
        if refusals.lost <= 0:
            return False
        refusals.lost -= 1

        def notify() -> None:
            for code in refusals.notices:
                if not writer.is_closing():
                    writer.write(self._frame(4, 2, -1, code, NOTICES[code], ""))

        self._loop.call_later(0.05, notify)
        return True

    def _answers_empty(self, symbol: str, end: pd.Timestamp) -> bool:
        """Whether a request for `symbol` ending at `end` gets an empty bar list (Refusals.empty)."""
        span = self.faults.refusals.empty.get(symbol)
        return span is not None and span[0] <= end <= span[1]

    def _spoil(self, symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
        """Bars with the injected bad values: volume -1, WAP 0, high below low."""
        bad = {ts: kind for (name, ts), kind in self.faults.bad_bars.items() if name == symbol}
        if not bad:
            return bars
        bars = bars.copy()
        for ts, kind in bad.items():
            at = bars["ts"] == ts
            if kind == "volume":
                bars.loc[at, "volume"] = -1
            elif kind == "wap":
                bars.loc[at, "wap"] = 0.0
            else:  # high < low
                bars.loc[at, ["high", "low"]] = bars.loc[at, ["low", "high"]].to_numpy()
        return bars

    def _soft_limited(self, record: Request) -> bool:
        """IBKR's soft throttle: too many requests open at once, or too many within a second."""
        f = self.faults
        if f.soft_concurrency is not None and len(self._open) >= f.soft_concurrency:
            return True
        if f.soft_rate is not None:
            recent = sum(
                1 for r in self.historical() if r.at > record.at - 1.0 and r.outcome != "soft_pacing"
            )
            return recent > f.soft_rate
        return False

    def _pacing_violation(self, record: Request, identity: tuple) -> bool:
        """IBKR's three pacing rules over the requests received (violating ones count too)."""
        r = self.rules
        recent = self._recent
        horizon = max(r.window_s if self.rolling_budget else 0.0, r.identical_s, r.per_contract_window_s)
        while recent and recent[0][0] < record.at - horizon:
            recent.popleft()
        in_window = sum(1 for t, _, _ in recent if t > record.at - r.window_s) if self.rolling_budget else 0
        same_contract = sum(
            1 for t, s, _ in recent if s == record.symbol and t > record.at - r.per_contract_window_s
        )
        identical = any(i == identity and t > record.at - r.identical_s for t, _, i in recent)
        recent.append((record.at, record.symbol, identity))
        return in_window >= r.max_requests or same_contract >= r.per_contract or identical


def main() -> None:
    """Serve in this process until stdin closes: prints the port, then writes a JSON summary to --summary.

    `python -m tests.fake_ibgateway --now 2026-11-18T21:30Z --latency 0.5,2 --soft-concurrency 20`: IBKR's
    identical and per-contract rules, the rolling budget only with --rolling-budget (as IBKR for bars of
    1 min and more), a soft limit on open requests and on requests per second."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--now", required=True)
    parser.add_argument("--latency", default="0,0", help="seconds a,b: answers wait uniform(a, b)")
    parser.add_argument("--soft-concurrency", type=int)
    parser.add_argument("--soft-rate", type=int)
    parser.add_argument("--rolling-budget", action="store_true")
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()
    low, high = (float(x) for x in args.latency.split(","))
    gateway = FakeIBGateway(
        pd.Timestamp(args.now),
        faults=Faults(
            latency_s=(low, high), soft_concurrency=args.soft_concurrency, soft_rate=args.soft_rate
        ),
    )
    gateway.rolling_budget = args.rolling_budget
    print(gateway.start(), flush=True)
    sys.stdin.read()  # until the parent closes it
    gateway.stop()
    outcomes: dict[str, int] = {}
    for r in gateway.historical():
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    summary = {
        "historical_requests": len(gateway.historical()),
        "outcomes": outcomes,
        "bars_served": int(sum(len(bars) for bars in gateway.served.values())),
        "clients": sorted({r.client_id for r in gateway.requests}),
    }
    with open(args.summary, "w") as out:
        json.dump(summary, out)


if __name__ == "__main__":
    main()


def pacing_breaks(historical: list[Request], rules: PacingRules) -> list[str]:
    """IBKR's pacing rules broken by `historical` requests (of every client together), read from their
    arrival times: an identical request (symbol, end, duration, bar size) within `rules.identical_s`, or more
    than `rules.max_requests` requests within any `rules.window_s`. One line per break; [] when none."""
    breaks = []
    for a, b in itertools.combinations(historical, 2):
        same = (a.symbol, a.end, a.duration, a.bar_size) == (b.symbol, b.end, b.duration, b.bar_size)
        if same and abs(b.at - a.at) < rules.identical_s:
            breaks.append(f"identical {a.symbol} {a.end} {a.bar_size} {abs(b.at - a.at):.2f} s apart")
    times = sorted(r.at for r in historical)
    for t in times:
        in_window = sum(t - rules.window_s < u <= t for u in times)
        if in_window > rules.max_requests:
            breaks.append(f"{in_window} requests within {rules.window_s} s")
    return breaks
