"""IBKR historical-data pacing: one budget shared by every process and worker that uses the same database.

IBKR's rules (https://interactivebrokers.github.io/tws-api/historical_limitations.html):
- never the identical request (contract, end, duration, bar size, data type) within 15 s;
- "six or more requests for the same contract within two seconds" is a violation: at most 5 per 2 s;
- at most 50 historical requests open at once;
- strict mode: at most 60 requests in any 10 minutes. IBKR now applies this only to bars of 30 s or less
  and throttles heavy use of larger bars softly, so the **adaptive** mode (default for bars >= 1 min) drops it
  and instead bounds the requests in flight with additive increase / multiplicative decrease (AIMD): each
  answered request adds 1/limit (about +1 per round of answers, up to `concurrency`), a pacing violation
  halves the limit and pauses every sender for `backoff_s` (doubling with each violation in a row, at most
  `backoff_max_s`) - once per round: violations of requests sent before the last halving only count. In
  strict mode a violation pauses every sender for the whole window.
- **hard rule fallback** (adaptive mode): when IBKR still answers a pacing violation while the limit is already
  down to one request in flight, it enforces the hard rule after all (IBKR does so for some accounts and for
  heavy users). Every sender then waits the whole window out and keeps to the strict rules (at most
  `max_requests` per `window_s`, violations pause a whole window) until the budget has been idle for a window
  after that pause: the run finishes at IBKR's hard pace with nothing lost, and the next run tries adaptive
  again. The switch is the row `hard` of tt_ib_pacing (paused_until: the window's end; decreased_at: when it
  was made), so every process sharing the database switches with it.

The budget lives in the database (tt_ib_request: one row per paced request; tt_ib_pacing: the adaptive limit
and the pause), so it holds across processes on one machine and across machines sharing PostgreSQL. A
request may be sent only when a transaction that holds the budget's lock (PostgreSQL: an advisory
transaction lock; SQLite: BEGIN IMMEDIATE) finds every rule satisfied *now* on the database's clock and
records it; otherwise the caller sleeps for the time the rules name and asks again. The rules count a
request at its answer (or now, while in flight), an instant never earlier than the one IBKR saw, so a
sender that was slow between reserving and sending cannot break them. Rows in flight carry a lease
(`lease_s`), so a crashed process never holds the budget for longer than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from tt_resources.db.schema import ib_pacing, ib_requests
from tt_resources.sources.settings import PacingRules

LOCK_KEY = 0x7474_6962  # PostgreSQL advisory lock id of the pacing budget ("ttib")
HARD = "hard"  # tt_ib_pacing row of the adaptive mode's switch to the hard rule
log = logging.getLogger(__name__)
POLL_S = 0.1  # how long a sender waits when only the in-flight limit stops it (plus up to 50 % jitter)


@dataclass(frozen=True)
class Sent:
    """A recorded request: when it was sent (epoch s), its identity and contract, whether still in flight."""

    at: float
    identity: str
    contract: str
    in_flight: bool


def wait_needed(
    rules: PacingRules,
    now: float,
    history: list[Sent],
    identity: str,
    contract: str,
    *,
    limit: int,
    paused_until: float,
) -> float:
    """Seconds until `identity` on `contract` may be sent given the `history` (0: send now).

    `limit` is the in-flight bound (the adaptive limit, or `rules.concurrency`); when only it stops the
    request the answer is POLL_S, since the free slot depends on when an answer arrives."""
    r = rules
    wait = max(0.0, paused_until - now)
    same = sorted(s.at for s in history if s.contract == contract and s.at > now - r.per_contract_window_s)
    if len(same) >= r.per_contract:
        wait = max(wait, same[-r.per_contract] + r.per_contract_window_s + r.margin_s - now)
    last_identical = max((s.at for s in history if s.identity == identity), default=None)
    if last_identical is not None:
        wait = max(wait, last_identical + r.identical_s + r.margin_s - now)
    if r.mode == "strict":
        recent = sorted(s.at for s in history if s.at > now - r.window_s)
        if len(recent) >= r.max_requests:
            wait = max(wait, recent[-r.max_requests] + r.window_s + r.margin_s - now)
    if wait <= 0 and sum(s.in_flight for s in history) >= limit:
        return POLL_S
    return max(0.0, wait)


def _sent(row, now: float) -> Sent:
    """A ledger row as the rules see it. The instant a request reached IBKR lies between its reservation and
    its answer, so the rules count it at its answer (`done_at`), or `now` while it is in flight: never
    earlier than it really was, however late the sender was after reserving."""
    in_flight = row.done_at is None and row.lease_until >= now
    at = now if in_flight else row.done_at if row.done_at is not None else row.lease_until
    return Sent(at, row.identity, row.contract, in_flight)


def identity_of(request: Hashable) -> str:
    """A request's identity as stored: a short hash of its repr."""
    return hashlib.sha1(repr(request).encode()).hexdigest()[:40]


class PacingBudget:
    """The shared budget on `engine` (tt_ib_request, tt_ib_pacing); `acquire` before sending, `release` after.

    Without an engine, a private in-memory SQLite database holds the budget (one process only)."""

    def __init__(self, engine: sa.Engine | None = None, rules: PacingRules | None = None) -> None:
        self.rules = rules or PacingRules()
        if engine is None:
            engine = sa.create_engine(
                "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
            )
            ib_requests.metadata.create_all(engine, tables=[ib_requests, ib_pacing])
        self.engine = engine
        self._postgres = engine.url.get_backend_name() == "postgresql"
        self._local = threading.Lock()  # one transaction per process at a time (SQLite's StaticPool too)
        self._condition: asyncio.Condition | None = None
        self._flying = 0  # this process's requests between acquire and done
        self._limit = max(1, self.rules.concurrency // 4)  # the in-flight limit last read

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _locked(self) -> Iterator[tuple[sa.Connection, float]]:
        """A transaction holding the budget's lock, and the database clock's now (epoch seconds)."""
        with self._local, self.engine.connect() as conn:
            if self._postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                now = conn.execute(sa.text("SELECT extract(epoch from clock_timestamp())")).scalar_one()
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                now = time.time()
            yield conn, float(now)
            conn.commit()

    def _state(self, conn: sa.Connection) -> tuple[sa.RowMapping, sa.RowMapping | None]:
        """The mode's adaptive state (created on first use: limit starts at a quarter of the bound), and the
        adaptive mode's switch to the hard rule when it is in force (see module doc); one query."""
        modes = [self.rules.mode, HARD] if self.rules.mode == "adaptive" else [self.rules.mode]
        rows = conn.execute(sa.select(ib_pacing).where(ib_pacing.c.mode.in_(modes))).mappings().all()
        by_mode = {row["mode"]: row for row in rows}
        row = by_mode.get(self.rules.mode)
        if row is None:
            start = max(1.0, self.rules.concurrency / 4)
            conn.execute(
                sa.insert(ib_pacing).values(
                    mode=self.rules.mode,
                    concurrency=start,
                    paused_until=0.0,
                    decreased_at=0.0,
                    streak=0,
                    violations=0,
                )
            )
            row = (
                conn.execute(sa.select(ib_pacing).where(ib_pacing.c.mode == self.rules.mode)).mappings().one()
            )
        return row, by_mode.get(HARD)

    def try_reserve(self, identity: str, contract: str) -> tuple[int | None, float, int]:
        """(ticket, 0, in-flight limit) when the request was recorded as sent now; (None, seconds to wait,
        limit) otherwise."""
        r = self.rules
        with self._locked() as (conn, now):
            state, hard = self._state(conn)
            rules = dataclasses.replace(r, mode="strict") if hard is not None else r
            counted_at = sa.func.coalesce(ib_requests.c.done_at, ib_requests.c.lease_until)
            conn.execute(sa.delete(ib_requests).where(counted_at < now - rules.horizon_s))
            rows = conn.execute(
                sa.select(
                    ib_requests.c.identity,
                    ib_requests.c.contract,
                    ib_requests.c.done_at,
                    ib_requests.c.lease_until,
                ).where(counted_at >= now - rules.horizon_s)
            ).all()
            history = [_sent(row, now) for row in rows]
            idle = not any(sent.at > now - r.window_s for sent in history)
            if hard is not None and idle and now >= hard["paused_until"] + r.window_s:
                conn.execute(sa.delete(ib_pacing).where(ib_pacing.c.mode == HARD))  # idle for a window
                hard, rules = None, r
            limit = r.concurrency if rules.mode == "strict" else int(state["concurrency"])
            paused_until = max(state["paused_until"], hard["paused_until"] if hard is not None else 0.0)
            wait = wait_needed(
                rules, now, history, identity, contract, limit=limit, paused_until=paused_until
            )
            if wait > 0:
                return None, wait, limit
            ticket = conn.execute(
                sa.insert(ib_requests)
                .values(identity=identity, contract=contract, sent_at=now, lease_until=now + r.lease_s)
                .returning(ib_requests.c.id)
            ).scalar_one()
            return ticket, 0.0, limit

    def release(self, ticket: int, outcome: str) -> None:
        """Record the answer of `ticket`: ok (AIMD increase), pacing (decrease and pause) or error."""
        r = self.rules
        with self._locked() as (conn, now):
            conn.execute(
                sa.update(ib_requests).where(ib_requests.c.id == ticket).values(done_at=now, outcome=outcome)
            )
            state, hard = self._state(conn)
            where = ib_pacing.c.mode == r.mode
            if outcome == "pacing":
                sent_at = conn.execute(sa.select(ib_requests.c.sent_at).where(ib_requests.c.id == ticket))
                stale = sent_at.scalar_one() < state["decreased_at"]  # sent under the limit already halved
                persists = r.mode == "adaptive" and not stale and state["concurrency"] <= 1.0
                if hard is not None or persists:
                    self._to_hard_rule(conn, now, hard)
                if hard is not None or persists or stale:  # counted only
                    conn.execute(sa.update(ib_pacing).where(where).values(violations=state["violations"] + 1))
                    return
                streak = state["streak"] + 1
                pause = (
                    r.window_s
                    if r.mode == "strict"
                    else min(r.backoff_max_s, r.backoff_s * 2 ** (streak - 1))
                )
                conn.execute(
                    sa.update(ib_pacing)
                    .where(where)
                    .values(
                        concurrency=max(1.0, state["concurrency"] / 2),
                        paused_until=max(state["paused_until"], now + pause),
                        decreased_at=now,
                        streak=streak,
                        violations=state["violations"] + 1,
                    )
                )
            elif outcome == "ok":
                grown = min(float(r.concurrency), state["concurrency"] + 1.0 / state["concurrency"])
                conn.execute(sa.update(ib_pacing).where(where).values(concurrency=grown, streak=0))

    def _to_hard_rule(self, conn: sa.Connection, now: float, hard: sa.RowMapping | None) -> None:
        """Switch every sender to the hard rule (or, already switched, start its window again): no request
        until a whole window has passed."""
        r = self.rules
        values = {"paused_until": now + r.window_s, "decreased_at": now}
        if hard is not None:
            conn.execute(sa.update(ib_pacing).where(ib_pacing.c.mode == HARD).values(**values))
            return
        log.warning(
            "IBKR pacing violations persist with one request in flight: every process keeps to the hard rule "
            "(%d requests per %g s) from now on, after waiting %g s",
            r.max_requests,
            r.window_s,
            r.window_s,
        )
        conn.execute(
            sa.insert(ib_pacing).values(
                mode=HARD, concurrency=float(r.concurrency), streak=0, violations=0, **values
            )
        )

    def hard_rule_since(self) -> float | None:
        """When the adaptive mode switched every process to the hard rule (epoch s), None when it has not."""
        with self._locked() as (conn, _):
            hard = self._state(conn)[1]
            return None if hard is None else float(hard["decreased_at"])

    async def acquire(self, request: Hashable, contract: Hashable) -> tuple[int, float]:
        """Wait until `request` on `contract` may be sent and record it; returns (ticket, seconds waited).

        Senders of this process first wait here for one of `limit` local slots (the in-flight limit last
        read), so only they ask the database; the others wait without a query."""
        identity, name = identity_of(request), str(contract)[:32]
        slots = self._slots()
        async with slots:
            await slots.wait_for(lambda: self._flying < self._limit)
            self._flying += 1
        waited = 0.0
        try:
            while True:
                ticket, wait, self._limit = await asyncio.to_thread(self.try_reserve, identity, name)
                if ticket is not None:
                    return ticket, waited
                wait = wait * (1.0 + random.random() / 2) if wait == POLL_S else wait
                waited += wait
                await asyncio.sleep(wait)
        except BaseException:
            await self._free()
            raise

    async def done(self, ticket: int, outcome: str) -> None:
        """`release` from the event loop, then free the local slot."""
        try:
            await asyncio.to_thread(self.release, ticket, outcome)
        finally:
            await self._free()

    def _slots(self) -> asyncio.Condition:
        """The local slots' condition (made on the event loop that uses the budget)."""
        if self._condition is None:
            self._condition = asyncio.Condition()
        return self._condition

    async def _free(self) -> None:
        slots = self._slots()
        async with slots:
            self._flying -= 1
            slots.notify_all()

    def violations(self) -> int:
        """Pacing violations recorded in this mode so far (every process)."""
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(ib_pacing.c.violations).where(ib_pacing.c.mode == self.rules.mode))
            return int(count.scalar() or 0)
