"""Historical bars from Interactive Brokers through ib_async's async API.

The source shares one process-wide event loop in a daemon thread, so its blocking calls work from any
caller (scripts, Dagster ops, worker threads, notebooks) without nest_asyncio. Per partition it:
1. qualifies the listing's contract once (memory, then tt_contracts, then reqContractDetails under IBKR's
   spelling of the symbol, e.g. BRK.B -> "BRK B", on the listing's exchange and currency); several listings
   are narrowed to its primary exchange (or its exchange when that is not SMART), else the symbol fails
   naming them; error 200 -> SymbolNotFound;
2. asks once for the head timestamp (earliest TRADES bar; cached in tt_contracts.head_ts);
3. walks *forward* from max(start, head) in chunks of IBKR's step table (1d: "1 Y", 1h: "1 M", 15m: "1 W"; a
   shorter "N D" for the last chunk) with explicit UTC endDateTime and formatDate=2, yielding each chunk as it
   arrives (so the caller stores it before the next request); a chunk answered "HMDS query returned no data",
   or with an empty bar list, is yielded as a hole (status no_data) and the walk goes on.
Every request passes the shared pacing budget (tt_resources.sources.pacing) and is logged to tt_fetch_log
(through the recorder, tt_resources.db.ibkr_records). How each IBKR answer is handled:
- 162 pacing violation: retried when the budget lets it (at most `pacing_attempts` in a row);
- no answer within `request_timeout_s` (cancelled first), 162 "API historical data query cancelled" and 366
  "No historical data query found" (IBKR dropped the query on its side): retried with bounded exponential
  backoff, at most `max_attempts`;
- 1101 (connectivity restored, data lost) and 2106 after 2105 (HMDS farm broken, then OK): the requests in
  flight are cancelled and sent again at once (as soon as the budget allows), not after the timeout;
- permission errors (354, 10089, 10090, 10167, 10168, 162 "No market data permissions"): the partition fails
  naming the cause; the symbol's other partitions fail with it without asking again (so does a failed head
  timestamp lookup: it is asked once per symbol and run);
- account-wide conditions (10197 / 162 competing live session or TWS connected from another IP address, no
  gateway listening or one refusing the first connection after `max_attempts` tries, a gateway that went away
  mid-run and stayed away for `reconnect_s`): the source stops, this and every later partition fail at once
  with the same one line, no further request and no further reconnect window;
- a lost or refused connection mid-run is re-established with backoff, one `reconnect_s` window shared by
  every partition (IB Gateway's nightly restart), resuming the same chunk.
Client ids client_id, +1, ... (IB_CLIENT_IDS of them) are tried in turn, so processes and Celery workers
connecting at once each get their own (the gateway, the one authority on ids in use, answers 326 for a taken
one); when every one answers 326 the partition fails at once naming them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pandas as pd
from ib_async import IB, Contract, ContractDetails, RequestError, Stock
from ib_async import util as ib_util

from tt_resources import calendar, ib_fence
from tt_resources.db.ibkr_records import IbkrRecorder
from tt_resources.sources.base import Chunk, SourceError, SourceStats, SymbolNotFound, empty_bars
from tt_resources.sources.pacing import PacingBudget
from tt_resources.sources.settings import IbkrSettings
from tt_resources.terms import SOURCE_BAR_COLUMNS, aware_utc
from tt_resources.timeframes import get_timeframe
from tt_resources.watchlist import Listing

# IBKR's step table: the longest request per bar size, as a walking offset and as a duration string
CHUNKS: dict[str, tuple[pd.DateOffset, str]] = {
    "1d": (pd.DateOffset(years=1), "1 Y"),
    "1h": (pd.DateOffset(months=1), "1 M"),
    "15m": (pd.DateOffset(weeks=1), "1 W"),
}


# error codes of a missing market-data permission, and of conditions of the whole account or session
PERMISSION_CODES = frozenset({354, 10089, 10090, 10167, 10168})
ACCOUNT_CODES = frozenset({10197})
ACCOUNT_TEXTS = ("competing live session", "different ip address")
RESEND_CODES = frozenset({1101})  # connectivity restored, data lost: requests in flight are lost
FARM_BROKEN, FARM_OK = 2105, 2106  # HMDS data farm connection broken / OK again


class PacingViolation(SourceError):
    """IBKR answered error 162 'pacing violation'."""


class RequestTimedOut(SourceError):
    """No answer within the request timeout (the request was cancelled), or IBKR dropped the query on its side
    (162 "query cancelled", 366); worth retrying after a backoff."""


class RequestLost(SourceError):
    """The gateway reported that requests in flight were lost (1101, 2106 after 2105); send again at once."""


class NoPermission(SourceError):
    """The account may not have this listing's market data (354, 10089, 10167, 162 "No market data
    permissions", ...)."""


class AccountUnavailable(SourceError):
    """A condition of the whole account or gateway (competing session, no gateway): every partition fails."""


class GatewayUnreachable(ConnectionError):
    """The gateway refused or dropped the connection (e.g. its nightly restart); worth retrying."""


class ClientIdsInUse(SourceError):
    """Every client id tried was answered with error 326."""


def duration_for(timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """IBKR duration string covering [start, end): the chunk label when the span fills it, else whole days.

    Spans of a year or more are always given as "1 Y" chunks, so a daily request never asks for > 365 D.
    """
    offset, label = CHUNKS[timeframe]
    if start <= end - offset:
        return label
    return f"{max(1, math.ceil((end - start) / pd.Timedelta(days=1)))} D"


def chunk_plan(
    timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> list[tuple[pd.Timestamp, pd.Timestamp, str]]:
    """The (chunk start, endDateTime, duration) requests that cover [start, end), oldest first."""
    offset = CHUNKS[timeframe][0]
    plan, chunk_start = [], start
    while chunk_start < end:
        chunk_end = min(chunk_start + offset, end)
        plan.append((chunk_start, chunk_end, duration_for(timeframe, chunk_start, chunk_end)))
        chunk_start = chunk_end
    return plan


def ib_end(ts: pd.Timestamp) -> str:
    """endDateTime in IBKR's explicit-UTC form 'yyyymmdd-hh:mm:ss'."""
    return ts.tz_convert("UTC").strftime("%Y%m%d-%H:%M:%S")


def ib_symbol(symbol: str) -> str:
    """IBKR's spelling of a watchlist symbol: class shares take a space, BRK.B -> 'BRK B'."""
    return symbol.replace(".", " ")


def pick_listing(symbol: str, details: list[ContractDetails], exchange: str, primary: str) -> ContractDetails:
    """The one listing meant when IBKR answers several: the watchlist's primary exchange, else its exchange
    when that is not SMART; SourceError naming every listing when that does not single one out."""
    if len(details) == 1:
        return details[0]
    wanted = primary or ("" if exchange == "SMART" else exchange)
    matches = [d for d in details if wanted and wanted in (d.contract.primaryExchange, d.contract.exchange)]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(
        f"{d.contract.primaryExchange or d.contract.exchange} (conId {d.contract.conId})" for d in details
    )
    hint = f"none or several on {wanted}" if wanted else "set primary_exchange for it in the watchlist"
    raise SourceError(f"{symbol}: IBKR lists {len(details)} contracts: {listed}; {hint}")


_loop_lock = threading.Lock()


@cache
def _ib_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for ib_async, running in a daemon thread.

    ib_async binds itself to the first loop it sees (util.getLoop is cached), so every IbkrSource in the process
    shares this one loop; blocking callers submit coroutines to it and wait.
    """
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="ib-async-loop", daemon=True).start()

    async def claim() -> bool:
        return ib_util.getLoop() is asyncio.get_running_loop()

    if not asyncio.run_coroutine_threadsafe(claim(), loop).result():
        raise SourceError("ib_async is already bound to another event loop in this process")
    return loop


def run_on_ib_loop[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the ib_async loop and wait for its result (callable from any thread but that loop's)."""
    with _loop_lock:
        loop = _ib_loop()
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def connect_client(settings: IbkrSettings, *, readonly: bool) -> tuple[IB, int]:
    """A connection under the first free client id of client_id, client_id + 1, ... (client_id_attempts of them)
    and that id. GatewayUnreachable when the gateway refuses or drops the connection; ClientIdsInUse when every
    id tried is answered with 326."""
    s = settings
    ids = list(range(s.client_id, s.client_id + s.client_id_attempts))
    for client_id in ids:
        ib = await open_client(settings, client_id, readonly=readonly)
        if ib is not None:
            return ib, client_id
    raise ClientIdsInUse(
        f"IB Gateway at {s.host}:{s.port}: error 326 (client id already in use) for client ids "
        f"{', '.join(map(str, ids))}; close those API sessions or choose a free id (IB_CLIENT_ID for market "
        "data, IB_TRADING_CLIENT_ID for trading)"
    )


async def open_client(settings: IbkrSettings, client_id: int, *, readonly: bool) -> IB | None:
    """A new connection as `client_id` (`readonly`: no order messages at start-up); None when the gateway answers
    326 (id in use); GatewayUnreachable when it refuses or drops the connection."""
    s = settings
    ib = IB()
    ib.RaiseRequestErrors = True
    codes: list[int] = []
    closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_error(req_id: int, code: int, message: str, contract) -> None:
        codes.append(code)

    def on_api_error(message: str) -> None:
        if not closed.done():
            closed.set_result(message)

    ib.errorEvent += on_error
    api_errors = ib_fence.api_errors(ib)
    api_errors += on_api_error
    connecting = asyncio.ensure_future(
        ib.connectAsync(s.host, s.port, client_id, timeout=s.connect_timeout_s, readonly=readonly)
    )
    try:
        await asyncio.wait({connecting, closed}, return_when=asyncio.FIRST_COMPLETED)
        if 326 in codes:
            return None
        if not connecting.done():  # the gateway closed the socket before the API was ready
            raise GatewayUnreachable(f"connection closed by the gateway: {closed.result()}")
        try:
            connecting.result()
        except (OSError, TimeoutError) as exc:
            if 326 in codes:
                return None
            raise GatewayUnreachable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        return ib
    finally:
        api_errors -= on_api_error
        if not connecting.done() or connecting.exception() is not None or 326 in codes:
            connecting.cancel()
            ib.disconnect()


@dataclass
class _Call:
    """What one blocking call did: its counters and its tt_fetch_log rows."""

    stats: SourceStats = field(default_factory=SourceStats)
    log: list[dict] = field(default_factory=list)
    written: int = 0  # log rows already in tt_fetch_log


class IbkrSource:
    """MarketDataSource backed by IB Gateway/TWS. Every request passes `budget` (shared through its database);
    `recorder` (None: nothing recorded) keeps contracts, head timestamps and the request log."""

    name = "ibkr"

    def __init__(
        self,
        settings: IbkrSettings,
        *,
        budget: PacingBudget | None = None,
        recorder: IbkrRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.budget = budget or PacingBudget()
        self.recorder = recorder
        self.concurrency = (
            self.budget.rules.concurrency
        )  # partitions worth fetching at once (ingest's workers)
        self.stats = SourceStats()
        self.client_id = self.settings.client_id  # the id of the current connection
        self._ib: IB | None = None
        self._connecting: asyncio.Lock | None = None
        self._contracts: dict[str, Contract] = {}
        self._heads: dict[str, pd.Timestamp | None] = {}  # asked this run (None: IBKR has none)
        # symbol -> why it cannot be fetched this run (unknown, several listings, no permission)
        self._refused: dict[str, SourceError] = {}
        self._stopped: AccountUnavailable | None = None  # set once: every later partition fails with it
        self._ever_connected = False
        self._down_since: float | None = None  # the shared reconnect window's start
        self._in_flight: set[asyncio.Future] = set()  # resolved when the gateway reports them lost
        self._farm_broken = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def fetch_chunks(self, listing: Listing, timeframe: str, start, end) -> Iterator[Chunk]:
        """The bars of [start, end) chunk by chunk, oldest first, each as soon as it arrived (see module doc).

        A chunk IBKR answers with "no data" has status no_data; a failure ends the walk with one chunk of
        status failed spanning the rest of the window, whose reason is one line naming the symbol."""
        symbol, tf = listing.symbol, get_timeframe(timeframe).name
        start, end = aware_utc(start, "start"), aware_utc(end, "end")
        call = _Call()
        if self._stopped is not None:
            yield self._chunk_done(
                call, Chunk(start, end, empty_bars(), call.stats, "failed", str(self._stopped))
            )
            return
        try:
            contract = self._run(call, self._contract(listing, tf, call))
            head = self._run(call, self._head(contract, symbol, tf, call))
        except SourceError as exc:
            yield self._chunk_done(call, Chunk(start, end, empty_bars(), call.stats, "failed", str(exc)))
            return
        first = max(start, head) if head is not None else start
        lookups = call.stats  # the contract and head requests count with the first chunk
        for chunk_start, chunk_end, duration in chunk_plan(tf, first, end):
            call, lookups = _Call(stats=lookups), SourceStats()
            try:
                bars = self._run(call, self._request(contract, symbol, tf, chunk_end, duration, call))
                frame = None if bars is None else _bars_frame(bars, tf)
            except SourceError as exc:
                failed = Chunk(chunk_start, end, empty_bars(), call.stats, "failed", str(exc))
                yield self._chunk_done(call, failed)
                return
            if frame is None or frame.empty:
                reason = (
                    f"IBKR error 162: {call.log[-1]['message']}"
                    if frame is None
                    else "IBKR answered with an empty bar list"
                )
                yield self._chunk_done(
                    call, Chunk(chunk_start, chunk_end, empty_bars(), call.stats, "no_data", reason)
                )
                continue
            frame = frame[(frame["ts"] >= chunk_start) & (frame["ts"] < chunk_end)].reset_index(drop=True)
            yield self._chunk_done(call, Chunk(chunk_start, chunk_end, frame, call.stats))

    def fetch(self, listing: Listing, timeframe: str, start, end) -> pd.DataFrame:
        """Bars of `listing` starting in [start, end), stitched from every chunk; SourceError on a failure."""
        frames = []
        for chunk in self.fetch_chunks(listing, timeframe, start, end):
            if chunk.status == "failed":
                raise SourceError(chunk.reason)
            frames.append(chunk.bars)
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_bars()
        bars = pd.concat(frames).drop_duplicates("ts").sort_values("ts").reset_index(drop=True)
        return bars[list(SOURCE_BAR_COLUMNS)]

    def close(self) -> None:
        """Disconnect from the gateway (idempotent)."""
        if self._ib is not None:
            ib, self._ib = self._ib, None
            _ib_loop().call_soon_threadsafe(ib.disconnect)

    # ------------------------------------------------------------------ bookkeeping
    def _run[T](self, call: _Call, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the ib loop; `call`'s log rows are written whatever happens. An account-wide failure
        stops the source (see module doc)."""
        try:
            return run_on_ib_loop(coro)
        except AccountUnavailable as exc:
            self._stopped = self._stopped or exc
            raise self._stopped from None
        finally:
            self._flush_log(call)

    def _chunk_done(self, call: _Call, chunk: Chunk) -> Chunk:
        with self._lock:
            self.stats.add(call.stats)
            self.stats.bars += len(chunk.bars)
        return chunk

    def _flush_log(self, call: _Call) -> None:
        """Write `call`'s request log rows not yet written to tt_fetch_log (one transaction)."""
        rows, call.written = call.log[call.written :], len(call.log)
        if self.recorder is not None:
            self.recorder.log_requests(rows)

    def _log_row(self, call: _Call, symbol: str, timeframe: str, request: str, **fields) -> dict:
        row = dict.fromkeys(("end_ts", "duration", "bar_size", "error_code", "message"))
        row.update(symbol=symbol, timeframe=timeframe, source=self.name, request=request, bars=0, **fields)
        call.log.append(row)
        return row

    # ------------------------------------------------------------------ connection
    async def _connect(self, call: _Call) -> IB:
        """The connected IB client; (re)connects, moving to the next client id when one is in use (326).

        GatewayUnreachable when the gateway refuses or drops the connection; ClientIdsInUse when every id
        tried is in use."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._ib is not None and self._ib.isConnected():
                return self._ib
            if self._ib is not None:
                call.stats.reconnects += 1
                self._ib.disconnect()
                self._ib = None
            ib, self.client_id = await connect_client(self.settings, readonly=True)
            self._ib = ib
            self._ever_connected, self._down_since, self._farm_broken = True, None, False
            ib.errorEvent += self._on_notice
            return ib

    def _on_notice(self, req_id: int, code: int, message: str, contract) -> None:
        """The connection's error and notice messages not tied to a failed request (see module doc): lost
        requests are sent again; a permission warning IBKR leaves the request open for (10167) ends it."""
        if code == FARM_BROKEN:
            self._farm_broken = True
        elif code in RESEND_CODES or (code == FARM_OK and self._farm_broken):
            self._farm_broken = False
            for waiter in self._in_flight:
                if not waiter.done():
                    waiter.set_result(f"IBKR {code}: {message}")
        elif code in PERMISSION_CODES and req_id > 0 and self._ib is not None:
            ib_fence.fail_request(self._ib, req_id, RequestError(req_id, code, message))

    # ------------------------------------------------------------------ requests
    async def _attempts(self, describe: str, attempt: Callable[[IB], Awaitable], call: _Call):
        """Run `attempt` until it answers: pacing violations retry after the budget's pause (at most
        `pacing_attempts`), timeouts and queries IBKR dropped with exponential backoff, lost requests at once
        (at most `max_attempts` of those together); a connection lost mid-run with backoff within the shared
        `reconnect_s` window, a first connection refused `max_attempts` times stops the source."""
        s = self.settings
        pacing = timeouts = refused = 0
        while True:
            if self._stopped is not None:
                raise self._stopped
            try:
                answer = await attempt(await self._connect(call))
            except PacingViolation as exc:
                pacing += 1
                if pacing >= s.pacing_attempts:
                    raise SourceError(f"{describe}: {pacing} pacing violations in a row ({exc})") from None
                call.stats.retries += 1
                continue  # the shared budget holds the next send until IBKR's pause is over
            except (RequestTimedOut, RequestLost) as exc:
                timeouts += 1
                if timeouts >= s.max_attempts:
                    raise SourceError(f"{describe} failed after {timeouts} attempts: {exc}") from None
                delay = 0.0 if isinstance(exc, RequestLost) else s.backoff_s * 2 ** (timeouts - 1)
            except ConnectionError as exc:  # GatewayUnreachable, or the socket dropped mid-request
                refused += 1
                self._gateway_down(exc, refused)
                delay = s.backoff_s * 2 ** min(refused - 1, 10)
            else:
                return answer
            call.stats.retries += 1
            await asyncio.sleep(min(delay, s.backoff_max_s))

    def _gateway_down(self, exc: ConnectionError, refused: int) -> None:
        """Raise AccountUnavailable when the gateway is to be given up: the first connection of the run
        refused `max_attempts` times (30 s of backoff with the defaults), or a gateway away for longer than
        the `reconnect_s` window that every partition shares."""
        s = self.settings
        where = f"IB Gateway at {s.host}:{s.port}"
        self._down_since = self._down_since if self._down_since is not None else time.monotonic()
        down_s = time.monotonic() - self._down_since
        if not self._ever_connected and (refused >= s.max_attempts or down_s >= s.reconnect_s):
            raise AccountUnavailable(
                f"{where}: no API connection after {refused} attempt(s) ({exc}); start IB Gateway or TWS with "
                "the API enabled on that port (IB_HOST, IB_PORT)"
            )
        if down_s >= s.reconnect_s:
            raise AccountUnavailable(f"{where} unreachable for {s.reconnect_s:g} s ({exc})")

    async def _send(
        self,
        log: dict,
        start: Callable[[], Awaitable],
        call: _Call,
        *,
        paced: tuple | None = None,
        cancel: Callable[[], None] | None = None,
    ):
        """Pace (when `paced` is the request's identity), send via `start`, await the answer; log it."""
        ticket = None
        if paced is not None:
            ticket, waited = await self.budget.acquire(paced, log["symbol"])
            call.stats.pacing_waits += waited > 0
        call.stats.requests += 1
        began = time.monotonic()
        log.update(requested_at=datetime.now(UTC), outcome="ok")
        lost = asyncio.get_running_loop().create_future()
        self._in_flight.add(lost)
        try:
            request = asyncio.ensure_future(start())
            await asyncio.wait(
                {request, lost}, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not request.done():
                request.cancel()
                if cancel is not None:
                    cancel()
                if lost.done():
                    log.update(outcome="lost", message=lost.result())
                    raise RequestLost(f"sent again after {lost.result()}")
                call.stats.timeouts += 1
                log["outcome"] = "timeout"
                raise RequestTimedOut(f"no answer within {self.settings.request_timeout_s:g} s")
            return request.result()
        except RequestError as exc:
            log.update(error_code=exc.code, message=exc.message, outcome=_outcome(exc))
            text = f"IBKR error {exc.code}: {exc.message}"
            if log["outcome"] == "pacing":
                call.stats.pacing_waits += 1
                raise PacingViolation(text) from None
            if log["outcome"] == "cancelled":
                raise RequestTimedOut(text) from None
            if log["outcome"] == "permission":
                raise NoPermission(
                    f"{log['symbol']}: no market data permission at IBKR ({text}); subscribe to this listing's "
                    "market data in IBKR's Account Management, or remove it from the watchlist"
                ) from None
            if log["outcome"] == "account":
                raise AccountUnavailable(
                    f"IBKR refuses market data to this session ({text}); close the other session "
                    "(TWS, mobile or web) logged in with this user, then run again"
                ) from None
            raise
        except ConnectionError as exc:
            log.update(outcome="disconnected", message=str(exc))
            raise
        finally:
            self._in_flight.discard(lost)
            log["latency_s"] = time.monotonic() - began
            if ticket is not None:
                answered = log["outcome"] in ("ok", "no_data", "not_found")
                await self.budget.done(
                    ticket, "pacing" if log["outcome"] == "pacing" else "ok" if answered else "error"
                )

    # ------------------------------------------------------------------ contracts
    async def _contract(self, listing: Listing, timeframe: str, call: _Call) -> Contract:
        """The qualified contract: memory, tt_contracts, or one reqContractDetails (stored)."""
        symbol = listing.symbol
        if symbol in self._refused:
            raise self._refused[symbol]
        if symbol in self._contracts:
            return self._contracts[symbol]
        stored = await asyncio.to_thread(self._stored_contract, symbol)
        if stored is not None:
            return stored
        exchange, currency, primary = listing.exchange, listing.currency, listing.primary_exchange

        async def attempt(ib: IB):
            log = self._log_row(call, symbol, timeframe, "contract")
            asked = Stock(ib_symbol(symbol), exchange, currency, primaryExchange=primary)
            try:
                details = await self._send(log, lambda: ib.reqContractDetailsAsync(asked), call)
            except RequestError as exc:
                details, reason = [], f"IBKR error {exc.code}: {exc.message}"
            else:
                reason = "no contract details"
            log["bars"] = len(details)
            if not details:
                self._refused[symbol] = SymbolNotFound(
                    f"{symbol}: not found at IBKR as {asked.symbol!r} ({reason})"
                )
                raise self._refused[symbol]
            try:
                return pick_listing(symbol, details, exchange, primary)
            except SourceError as exc:
                self._refused[symbol] = exc
                raise

        details = await self._attempts(f"{symbol} contract lookup", attempt, call)
        self._contracts[symbol] = contract = details.contract
        if self.recorder is not None:
            record = {
                "symbol": symbol,
                "con_id": contract.conId,
                "sec_type": contract.secType,
                "exchange": contract.exchange,
                "primary_exchange": contract.primaryExchange,
                "currency": contract.currency,
                "local_symbol": contract.localSymbol,
                "trading_class": contract.tradingClass,
                "long_name": details.longName,
                "time_zone": details.timeZoneId,
                "qualified_at": pd.Timestamp.now(tz="UTC"),
            }
            await asyncio.to_thread(self.recorder.save_contract, record)
        return contract

    def _stored_contract(self, symbol: str) -> Contract | None:
        """The contract (and head timestamp) an earlier process stored in tt_contracts, or None."""
        row = self.recorder.contract(symbol) if self.recorder is not None else None
        if row is None:
            return None
        if row["head_ts"] is not None:
            self._heads[symbol] = pd.Timestamp(row["head_ts"])
        self._contracts[symbol] = Contract(
            conId=row["con_id"],
            symbol=ib_symbol(symbol),
            secType=row["sec_type"],
            exchange=row["exchange"],
            primaryExchange=row["primary_exchange"] or "",
            currency=row["currency"],
            localSymbol=row["local_symbol"] or "",
            tradingClass=row["trading_class"] or "",
        )
        return self._contracts[symbol]

    async def _head(
        self, contract: Contract, symbol: str, timeframe: str, call: _Call
    ) -> pd.Timestamp | None:
        """Earliest TRADES bar IBKR has for `contract` (asked once, cached in tt_contracts.head_ts); None when
        IBKR has none. Asked once per run whatever the answer: a refusal is remembered for the symbol."""
        if symbol in self._heads:
            return self._heads[symbol]
        s = self.settings

        async def attempt(ib: IB):
            log = self._log_row(call, symbol, timeframe, "head_timestamp")
            try:
                head = await self._send(
                    log,
                    lambda: ib.reqHeadTimeStampAsync(contract, s.what_to_show, s.use_rth, 2),
                    call,
                    paced=("head", contract.conId),
                )
            except RequestError:
                return None  # IBKR has no head for it: the walk then starts at the window start
            return pd.Timestamp(head).tz_convert("UTC")

        try:
            head = await self._attempts(f"{symbol} head timestamp", attempt, call)
        except NoPermission as exc:
            self._refused[symbol] = exc
            raise
        self._heads[symbol] = head
        if self.recorder is not None and head is not None:
            await asyncio.to_thread(self.recorder.save_head, symbol, head)
        return head

    # ------------------------------------------------------------------ bars
    async def _request(
        self, contract: Contract, symbol: str, timeframe: str, end: pd.Timestamp, duration: str, call: _Call
    ) -> list | None:
        """One historical request (with retries): its bars, or None when IBKR says "HMDS query returned no
        data"."""
        s = self.settings
        end_text, bar_size = ib_end(end), get_timeframe(timeframe).ib_bar_size

        async def attempt(ib: IB):
            req_id = ib_fence.new_request_id(ib)

            def start() -> asyncio.Future:
                return ib_fence.request_historical_bars(
                    ib,
                    req_id,
                    contract,
                    end=end_text,
                    duration=duration,
                    bar_size=bar_size,
                    what_to_show=s.what_to_show,
                    use_rth=s.use_rth,
                )

            log = self._log_row(
                call, symbol, timeframe, "historical", end_ts=end, duration=duration, bar_size=bar_size
            )
            try:
                bars = await self._send(
                    log,
                    start,
                    call,
                    paced=(contract.conId, end_text, duration, bar_size, s.what_to_show),
                    cancel=lambda: ib_fence.cancel_historical_bars(ib, req_id),
                )
            except RequestError as exc:
                if log["outcome"] == "no_data":
                    return None
                raise SourceError(f"{symbol} {timeframe}: IBKR error {exc.code}: {exc.message}") from None
            log["bars"] = len(bars)
            return list(bars)

        return await self._attempts(
            f"{symbol} {timeframe} historical request (end {end_text}, {duration})", attempt, call
        )


def _outcome(exc: RequestError) -> str:
    """tt_fetch_log outcome of an IBKR error answer: pacing | no_data | cancelled (IBKR dropped the query) |
    permission | account (the whole session is refused) | not_found | error. Error 162 stands for several
    conditions, told apart by its text."""
    code, text = exc.code, exc.message.lower()
    if code == 162 and "pacing violation" in text:
        return "pacing"
    if code == 162 and "returned no data" in text:
        return "no_data"
    if code == 366 or (code == 162 and "query cancelled" in text):
        return "cancelled"
    if code in PERMISSION_CODES or (code == 162 and "no market data permissions" in text):
        return "permission"
    if code in ACCOUNT_CODES or (code == 162 and any(t in text for t in ACCOUNT_TEXTS)):
        return "account"
    return "not_found" if code == 200 else "error"


def _bars_frame(bars: list, timeframe: str) -> pd.DataFrame:
    """ib_async BarData -> bars frame sorted by ts; daily bars (session dates) start at the session open.

    IBKR's "unknown" markers become NaN: volume -1, WAP 0 (or below), bar count -1. No bars: an empty frame."""
    if not bars:
        return empty_bars()
    dates = [b.date for b in bars]
    if timeframe == "1d":
        opens = calendar.nyse().schedule["open"].reindex(pd.DatetimeIndex(dates))
        if opens.isna().any():
            raise SourceError(
                f"IBKR sent a daily bar for {opens.index[opens.isna()][0].date()}, not an NYSE session"
            )
        ts = (
            pd.DatetimeIndex(opens.to_numpy()).tz_localize("UTC") if opens.dt.tz is None else opens.to_numpy()
        )
    else:
        ts = pd.DatetimeIndex(dates).tz_convert("UTC")
    frame = pd.DataFrame(
        {
            "ts": ts,
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [float(b.volume) for b in bars],
            "wap": [b.average for b in bars],
            "bar_count": [float(b.barCount) for b in bars],
        }
    )
    frame["volume"] = frame["volume"].where(frame["volume"] >= 0)
    frame["wap"] = frame["wap"].where(frame["wap"] > 0)
    frame["bar_count"] = frame["bar_count"].where(frame["bar_count"] >= 0)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)
