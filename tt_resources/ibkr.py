"""Historical bars from Interactive Brokers through ib_async's async API.

The source owns a private event loop in a daemon thread, so its blocking `fetch` works from any caller
(scripts, Dagster ops, notebooks) without nest_asyncio. Per partition it:
1. qualifies the contract once (memory, then tt_contracts, then reqContractDetails; error 200 -> SymbolNotFound);
2. asks once for the head timestamp (earliest TRADES bar; cached in tt_contracts.head_ts);
3. walks backwards from `end` in chunks of IBKR's step table (1d: "1 Y", 1h: "1 M", 15m: "1 W"; a shorter
   "N D" for the oldest chunk or a short tail) with explicit UTC endDateTime and formatDate=2, de-duplicating on
   bar start and stopping at the head timestamp, at `start` or at "HMDS query returned no data".
Every request passes the process-wide pacing throttle (tt_resources.pacing), is retried with bounded
exponential backoff on pacing violations (error 162), timeouts (cancelled first) and disconnects (reconnected,
with a new client id when the old one is still held), and is logged to tt_fetch_log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pandas as pd
import sqlalchemy as sa
from ib_async import IB, BarDataList, Contract, Stock
from ib_async import util as ib_util
from ib_async.wrapper import RequestError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from tt_resources import calendar, config
from tt_resources.db.bulk import insert_frame, upsert_frame
from tt_resources.db.schema import contracts, fetch_log
from tt_resources.pacing import PacingRules, PacingThrottle, shared_throttle
from tt_resources.sources import SourceError, SourceStats, SymbolNotFound, empty_bars
from tt_resources.terms import SOURCE_BAR_COLUMNS, aware_utc
from tt_resources.timeframes import get_timeframe
from tt_resources.watchlist import DEFAULTS as WATCHLIST_DEFAULTS

DEFAULT_LISTING = (WATCHLIST_DEFAULTS["exchange"], WATCHLIST_DEFAULTS["currency"])  # (exchange, currency)

# IBKR's step table: the longest request per bar size, as a walking offset and as a duration string
CHUNKS: dict[str, tuple[pd.DateOffset, str]] = {
    "1d": (pd.DateOffset(years=1), "1 Y"),
    "1h": (pd.DateOffset(months=1), "1 M"),
    "15m": (pd.DateOffset(weeks=1), "1 W"),
}


class PacingViolation(SourceError):
    """IBKR answered error 162 'pacing violation'."""


class RequestTimedOut(SourceError):
    """No answer within the request timeout (the request was cancelled)."""


@dataclass(frozen=True)
class IbkrSettings:
    """Connection and retry settings (seconds)."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_attempts: int = 5  # per request, over pacing violations, timeouts and disconnects
    backoff_s: float = 2.0  # first pacing backoff; doubles up to backoff_max_s
    backoff_max_s: float = 120.0
    client_id_attempts: int = 3  # client ids tried on (re)connect: client_id, client_id + 1, ...
    what_to_show: str = "TRADES"
    use_rth: bool = True

    @classmethod
    def from_env(cls, **overrides) -> IbkrSettings:
        """IB_HOST, IB_PORT, IB_CLIENT_ID, IB_TIMEOUT_S (request timeout) from the settings, then
        `overrides`."""
        env = config.settings()
        values = {
            "host": env.ib_host,
            "port": env.ib_port,
            "client_id": env.ib_client_id,
            "request_timeout_s": env.ib_timeout_s,
        }
        return cls(**{**values, **overrides})


def duration_for(timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """IBKR duration string covering [start, end): the chunk label when the span fills it, else whole days.

    Spans of a year or more are always given as "1 Y" chunks, so a daily request never asks for > 365 D.
    """
    offset, label = CHUNKS[timeframe]
    if start <= end - offset:
        return label
    return f"{max(1, math.ceil((end - start) / pd.Timedelta(days=1)))} D"


def chunk_plan(timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, str]]:
    """The (endDateTime, duration) requests that cover [start, end) when IBKR fills every chunk."""
    offset = CHUNKS[timeframe][0]
    plan, chunk_end = [], end
    while chunk_end > start:
        plan.append((chunk_end, duration_for(timeframe, start, chunk_end)))
        chunk_end = chunk_end - offset
    return plan


def ib_end(ts: pd.Timestamp) -> str:
    """endDateTime in IBKR's explicit-UTC form 'yyyymmdd-hh:mm:ss'."""
    return ts.tz_convert("UTC").strftime("%Y%m%d-%H:%M:%S")


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


class IbkrSource:
    """MarketDataSource backed by IB Gateway/TWS. `engine` (optional) receives tt_contracts and tt_fetch_log."""

    name = "ibkr"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4002,
        client_id: int = 17,
        *,
        engine: sa.Engine | None = None,
        throttle: PacingThrottle | None = None,
        settings: IbkrSettings | None = None,
        listings: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.listings = dict(listings or {})  # symbol -> (exchange, currency); others: SMART, USD
        self.settings = dataclasses.replace(
            settings or IbkrSettings(), host=host, port=int(port), client_id=int(client_id)
        )
        self.engine = engine
        self.throttle = throttle or shared_throttle(PacingRules.from_env())
        self.stats = SourceStats()
        self.client_id = self.settings.client_id  # the id of the current connection
        self._ib: IB | None = None
        self._contracts: dict[str, Contract] = {}
        self._heads: dict[str, pd.Timestamp | None] = {}
        self._unknown: dict[str, str] = {}
        self._log: list[dict] = []

    @classmethod
    def from_env(cls, **options) -> IbkrSource:
        """Settings from IB_HOST / IB_PORT / IB_CLIENT_ID / IB_TIMEOUT_S; `options` override (engine,
        throttle and listings go to the constructor)."""
        engine, throttle = options.pop("engine", None), options.pop("throttle", None)
        listings = options.pop("listings", None)
        s = IbkrSettings.from_env(**options)
        return cls(
            s.host, s.port, s.client_id, engine=engine, throttle=throttle, settings=s, listings=listings
        )

    # ------------------------------------------------------------------ public
    def fetch(self, symbol: str, timeframe: str, start, end) -> pd.DataFrame:
        """Bars of `symbol` starting in [start, end), stitched from as many chunk requests as needed."""
        tf = get_timeframe(timeframe)
        start, end = aware_utc(start, "start"), aware_utc(end, "end")
        try:
            bars = run_on_ib_loop(self._fetch(symbol, tf.name, start, end))
        finally:
            self._flush_log()
        self.stats.bars += len(bars)
        return bars

    def bind(self, engine: sa.Engine) -> None:
        """Record contracts and requests in `engine` unless the source was built with an engine already."""
        if self.engine is None:
            self.engine = engine

    def close(self) -> None:
        """Disconnect from the gateway (idempotent)."""
        if self._ib is not None:
            ib, self._ib = self._ib, None
            _ib_loop().call_soon_threadsafe(ib.disconnect)

    # ------------------------------------------------------------------ event loop
    async def _connect(self) -> IB:
        """The connected IB client; (re)connects, moving to the next client id when one is refused."""
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        if self._ib is not None:
            self.stats.reconnects += 1
            self._ib.disconnect()
        s = self.settings
        errors = []
        for client_id in range(s.client_id, s.client_id + s.client_id_attempts):
            ib = IB()
            ib.RaiseRequestErrors = True
            try:
                await ib.connectAsync(s.host, s.port, client_id, timeout=s.connect_timeout_s, readonly=True)
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors.append(f"client id {client_id}: {type(exc).__name__} {exc}".strip())
                continue
            self._ib, self.client_id = ib, client_id
            return ib
        raise SourceError(f"cannot connect to IB Gateway at {s.host}:{s.port}: {'; '.join(errors)}")

    # ------------------------------------------------------------------ requests
    async def _attempts(self, describe: str, attempt: Callable[[IB], Awaitable]):
        """Run `attempt` with bounded retries on pacing violations, timeouts and disconnects."""
        s = self.settings

        def count_retry(state: RetryCallState) -> None:
            self.stats.retries += 1

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((PacingViolation, RequestTimedOut, ConnectionError)),
            stop=stop_after_attempt(s.max_attempts),
            wait=wait_exponential(multiplier=s.backoff_s, max=s.backoff_max_s),
            before_sleep=count_retry,
            reraise=True,
        )
        try:
            async for retry in retrying:
                with retry:
                    return await attempt(await self._connect())
        except (PacingViolation, RequestTimedOut, ConnectionError) as exc:
            raise SourceError(f"{describe} failed after {s.max_attempts} attempts: {exc}") from None
        return None

    async def _send(
        self,
        log: dict,
        start: Callable[[], Awaitable],
        *,
        paced: tuple | None = None,
        cancel: Callable[[], None] | None = None,
    ):
        """Pace (when `paced` is the request's identity), send via `start`, await the answer; log it."""
        if paced is not None:
            waited = await self.throttle.wait(paced, log["symbol"])
            self.stats.pacing_waits += waited > 0
        self.stats.requests += 1
        began = time.monotonic()
        log.update(requested_at=datetime.now(UTC), outcome="ok")
        self._log.append(log)
        try:
            return await asyncio.wait_for(start(), self.settings.request_timeout_s)
        except TimeoutError:
            if cancel is not None:
                cancel()
            self.stats.timeouts += 1
            log["outcome"] = "timeout"
            raise RequestTimedOut(f"no answer within {self.settings.request_timeout_s:g} s") from None
        except RequestError as exc:
            log.update(error_code=exc.code, message=exc.message, outcome=_outcome(exc))
            if log["outcome"] == "pacing":
                self.stats.pacing_waits += 1
                raise PacingViolation(f"IBKR error 162: {exc.message}") from None
            raise
        except ConnectionError as exc:
            log.update(outcome="disconnected", message=str(exc))
            raise
        finally:
            log["latency_s"] = time.monotonic() - began

    def _log_row(self, symbol: str, timeframe: str, request: str, **fields) -> dict:
        row = dict.fromkeys(("end_ts", "duration", "bar_size", "error_code", "message"))
        return {**row, "symbol": symbol, "timeframe": timeframe, "source": self.name, "request": request,
                "bars": 0, **fields}  # fmt: skip

    def _flush_log(self) -> None:
        """Write the buffered request log to tt_fetch_log (one transaction) and clear it."""
        rows, self._log = self._log, []
        if self.engine is not None and rows:
            frame = pd.DataFrame(rows)
            frame["error_code"] = frame["error_code"].astype("Int64")
            insert_frame(self.engine, fetch_log, frame)

    # ------------------------------------------------------------------ contracts
    async def _contract(self, symbol: str, timeframe: str) -> Contract:
        """The qualified contract: memory, tt_contracts, or one reqContractDetails (stored)."""
        if symbol in self._unknown:
            raise SymbolNotFound(self._unknown[symbol])
        if symbol in self._contracts:
            return self._contracts[symbol]
        if self.engine is not None:
            with self.engine.connect() as conn:
                row = (
                    conn.execute(sa.select(contracts).where(contracts.c.symbol == symbol)).mappings().first()
                )
            if row is not None:
                self._heads[symbol] = None if row["head_ts"] is None else pd.Timestamp(row["head_ts"])
                self._contracts[symbol] = Contract(
                    conId=row["con_id"],
                    symbol=symbol,
                    secType=row["sec_type"],
                    exchange=row["exchange"],
                    primaryExchange=row["primary_exchange"] or "",
                    currency=row["currency"],
                    localSymbol=row["local_symbol"] or "",
                    tradingClass=row["trading_class"] or "",
                )
                return self._contracts[symbol]

        async def attempt(ib: IB):
            log = self._log_row(symbol, timeframe, "contract")
            try:
                exchange, currency = self.listings.get(symbol, DEFAULT_LISTING)
                details = await self._send(
                    log, lambda: ib.reqContractDetailsAsync(Stock(symbol, exchange, currency))
                )
            except RequestError as exc:
                details, reason = [], f"IBKR error {exc.code}: {exc.message}"
            else:
                reason = "no contract details"
            if not details:
                self._unknown[symbol] = f"{symbol}: not found at IBKR ({reason})"
                raise SymbolNotFound(self._unknown[symbol])
            log["bars"] = len(details)
            return details[0]

        details = await self._attempts(f"{symbol} contract lookup", attempt)
        self._contracts[symbol] = contract = details.contract
        if self.engine is not None:
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
            upsert_frame(self.engine, contracts, pd.DataFrame([record]), ["symbol"])
        return contract

    async def _head(self, contract: Contract, symbol: str, timeframe: str) -> pd.Timestamp | None:
        """Earliest TRADES bar IBKR has for `contract` (asked once, cached in tt_contracts.head_ts)."""
        if self._heads.get(symbol) is not None:
            return self._heads[symbol]
        s = self.settings

        async def attempt(ib: IB):
            log = self._log_row(symbol, timeframe, "head_timestamp")
            try:
                head = await self._send(
                    log,
                    lambda: ib.reqHeadTimeStampAsync(contract, s.what_to_show, s.use_rth, 2),
                    paced=("head", symbol),
                )
            except RequestError:
                return None  # IBKR has no head for it: the chunk walk stops at "no data" instead
            return pd.Timestamp(head).tz_convert("UTC")

        self._heads[symbol] = head = await self._attempts(f"{symbol} head timestamp", attempt)
        if self.engine is not None and head is not None:
            with self.engine.begin() as conn:
                conn.execute(sa.update(contracts).where(contracts.c.symbol == symbol).values(head_ts=head))
        return head

    # ------------------------------------------------------------------ bars
    async def _chunk(self, contract: Contract, symbol: str, timeframe: str, end: pd.Timestamp, duration: str):
        """One historical request (with retries); [] when IBKR says "HMDS query returned no data"."""
        s = self.settings
        end_text, bar_size = ib_end(end), get_timeframe(timeframe).ib_bar_size

        async def attempt(ib: IB):
            req_id = ib.client.getReqId()

            def start() -> asyncio.Future:
                future = ib.wrapper.startReq(req_id, contract, container=BarDataList())
                ib.client.reqHistoricalData(
                    req_id, contract, end_text, duration, bar_size, s.what_to_show, s.use_rth, 2, False, []
                )
                return future

            log = self._log_row(
                symbol, timeframe, "historical", end_ts=end, duration=duration, bar_size=bar_size
            )
            try:
                bars = await self._send(
                    log,
                    start,
                    paced=(symbol, end_text, duration, bar_size),
                    cancel=lambda: ib.client.cancelHistoricalData(req_id),
                )
            except RequestError as exc:
                if log["outcome"] == "no_data":
                    return []
                raise SourceError(f"{symbol} {timeframe}: IBKR error {exc.code}: {exc.message}") from None
            log["bars"] = len(bars)
            return list(bars)

        return await self._attempts(
            f"{symbol} {timeframe} historical request (end {end_text}, {duration})", attempt
        )

    async def _fetch(
        self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        contract = await self._contract(symbol, timeframe)
        head = await self._head(contract, symbol, timeframe)
        start = max(start, head) if head is not None else start
        offset = CHUNKS[timeframe][0]
        frames, chunk_end = [], end
        while chunk_end > start:
            bars = await self._chunk(
                contract, symbol, timeframe, chunk_end, duration_for(timeframe, start, chunk_end)
            )
            if not bars:
                break
            frame = _bars_frame(bars, timeframe)
            frames.append(frame)
            earliest = frame["ts"].iloc[0]
            if earliest >= chunk_end:
                break
            boundary = chunk_end - offset
            # IBKR normally fills the whole chunk; if bars the calendar expects are missing, resume at the earliest
            gap = calendar.expected_bar_starts(timeframe, max(boundary, start), earliest)
            chunk_end = earliest if len(gap) else boundary
        if not frames:
            return empty_bars()
        bars = pd.concat(frames).drop_duplicates("ts", keep="first").sort_values("ts")
        bars = bars[(bars["ts"] >= start) & (bars["ts"] < end)]
        return bars.reset_index(drop=True)[list(SOURCE_BAR_COLUMNS)]


def _outcome(exc: RequestError) -> str:
    """tt_fetch_log outcome of an IBKR error answer."""
    if exc.code == 162 and "pacing violation" in exc.message.lower():
        return "pacing"
    if exc.code == 162 and "returned no data" in exc.message:
        return "no_data"
    return "not_found" if exc.code == 200 else "error"


def _bars_frame(bars: list, timeframe: str) -> pd.DataFrame:
    """ib_async BarData -> bars frame sorted by ts; daily bars (session dates) start at the session open."""
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
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)
