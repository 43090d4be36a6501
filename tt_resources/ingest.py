"""Incremental ingest of bars into tt_prices, one (symbol, timeframe) partition at a time.

A partition's target is the latest bar that has closed by `now` (or by `end`) on the NYSE calendar. The
planner (`plan_spans`) asks the source for, oldest first:
- the **head** [start, first stored bar) when `start` is earlier than the partition's first bar (backfill);
- every open **hole** (tt_fetch_hole) with fewer than `hole_attempts` failed fetches;
- the **tail** [overlap, target]: the stored bars of the last OVERLAP_SESSIONS sessions are fetched again
  and compared with what is stored (tt_resources.splits.compare_overlap) - or, for an empty partition, the
  timeframe's default history (3 years 1d, 2 years 1h, 1 year 15m) unless `start` says otherwise.
A re-read bar that changed is a **revision** (recorded in tt_corporate_action, the new values stored); every
re-read bar changed by one split ratio in price with volume inverse is a **split**: recorded, and the
symbol's stored history in every timeframe is fetched again and replaced, one transaction per partition
(`_Walk.repair`), so no reader sees a half-adjusted series.
No span: the partition is fresh and nothing is requested. Each chunk the source delivers is stored in its own
transaction as it arrives (bars that break a bar rule go to tt_bar_quarantine, the others to tt_prices), so a
failure never discards what was received; a "no data" chunk becomes a hole, a span walked to its end closes
the holes inside it that were not recorded again, and a backfill that fails part-way leaves its remainder
as a hole. Failures are caught per
partition and reported in its result (`ingest_after`), except a database fault (tt_resources.db.faults),
which the caller retries once after reconnecting; tt_pipeline.market.refresh_partitions runs many
partitions, up to the source's `concurrency` at once, and always finishes the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tt_resources import bar_grid, calendar
from tt_resources.db.corporate_actions import record_change
from tt_resources.db.faults import database_fault
from tt_resources.db.holes import Hole, open_holes, record_hole, resolve_holes
from tt_resources.db.prices import (
    high_water_marks,
    read_bars,
    replace_quarantine,
    split_invalid,
    upsert_price_bars,
    window_counts,
)
from tt_resources.db.schema import features, prices, quarantine
from tt_resources.sources.base import Chunk, MarketDataSource, SourceStats
from tt_resources.splits import Change, compare_overlap, ratio_text
from tt_resources.terms import utc
from tt_resources.timeframes import TIMEFRAME_NAMES, get_timeframe
from tt_resources.watchlist import Listing

log = logging.getLogger(__name__)

# The tail re-reads the stored bars of the last two sessions (the last stored bar's and the one before). A
# split adjusts every bar before it, so one re-read bar shows it; two sessions give every timeframe more than
# one bar (a split changes all of them by one ratio, a revised closing print only some), cover the bars a
# source revises after the close (late prints, the consolidated volume of the day before), and keep a daily
# run's tail inside one IBKR request of every timeframe (1 W for 15m bars).
OVERLAP_SESSIONS = 2


@dataclass(frozen=True)
class PartitionResult:
    """What one partition's ingest did. status: fresh (no request needed) | updated | failed."""

    symbol: str
    timeframe: str
    status: str
    requests: int = 0
    bars_fetched: int = 0
    bars_written: int = 0  # inserted + updated rows
    first_ts: pd.Timestamp | None = None  # first and last bar fetched (None when nothing was)
    last_ts: pd.Timestamp | None = None
    pacing_waits: int = 0
    error: str | None = None
    quarantined: int = 0  # bars the source sent that break a bar rule (kept in tt_bar_quarantine)
    holes_found: int = 0  # spans the source did not deliver in this run
    holes_open: int = 0  # the partition's open holes after this run
    holes_given_up: tuple[Hole, ...] = ()  # open holes no longer retried (hole_attempts fetches failed)
    changes: tuple[str, ...] = ()  # splits and revisions found in the re-read overlap, one line each
    repaired: tuple[str, ...] = ()  # timeframes of the symbol whose history was replaced after a split


@dataclass(frozen=True)
class Stored:
    """What a partition holds before the run: its first and last bar (None: empty) and its open holes."""

    first_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    holes: tuple[Hole, ...] = ()


@dataclass(frozen=True)
class Span:
    """A span [start, end) to ask the source for. kind: history (empty partition) | backfill | hole | tail."""

    start: pd.Timestamp
    end: pd.Timestamp
    kind: str
    hole: Hole | None = None


def stored_partitions(engine: sa.Engine, timeframe: str) -> dict[str, Stored]:
    """symbol -> Stored for every partition of `timeframe` with bars or open holes; two queries."""
    marks = high_water_marks(engine, timeframe)
    holes: dict[str, list[Hole]] = {}
    for hole in open_holes(engine, timeframe):
        holes.setdefault(hole.symbol, []).append(hole)
    stored = {
        row.symbol: Stored(row.first_ts, row.last_ts, tuple(holes.get(row.symbol, ())))
        for row in marks.itertuples()
    }
    for symbol, found in holes.items():
        stored.setdefault(symbol, Stored(holes=tuple(found)))
    return stored


def plan_spans(
    timeframe: str,
    stored: Stored,
    target: pd.Timestamp,
    *,
    start: pd.Timestamp | None = None,
    hole_attempts: int = 3,
    exchange: str = calendar.DEFAULT_EXCHANGE,
) -> list[Span]:
    """The spans to fetch (see module doc), oldest first; [] when the partition is fresh."""
    tf = get_timeframe(timeframe)
    window_end = target + pd.Timedelta(seconds=1)  # exclusive: the target bar is the last one asked for
    holes = [(utc(h.start), utc(h.end), h) for h in stored.holes]
    last = utc(stored.last_ts)
    starts = [t for t in (utc(stored.first_ts), *(s for s, _, _ in holes)) if t is not None]
    if not starts:  # nothing stored, nothing missing: a first walk
        return [Span(start or window_end - tf.default_history, window_end, "history")]
    spans = [Span(s, e, "hole", h) for s, e, h in holes if h.attempts < hole_attempts]
    first = min(starts)
    if start is not None and start < first and len(calendar.expected_bar_starts(tf.name, start, first)):
        spans.append(Span(start, first, "backfill"))
    # the tail starts where earlier walks reached: the last stored bar (asked again, to catch a revision)
    # or the end of a hole after it
    hole_end = max((e for _, e, _ in holes if last is None or e > last), default=None)
    if hole_end is not None and hole_end < window_end:
        spans.append(Span(hole_end, window_end, "tail"))
    elif hole_end is None and last < target:
        spans.append(Span(max(first, overlap_start(last, exchange)), window_end, "tail"))
    return sorted(spans, key=lambda span: span.start)


def overlap_start(last: pd.Timestamp, exchange: str = calendar.DEFAULT_EXCHANGE) -> pd.Timestamp:
    """The open of the first of the OVERLAP_SESSIONS sessions ending with the one of the bar at `last`."""
    opens = calendar.expected_bar_starts(
        "1d", last - pd.Timedelta(days=21), last + pd.Timedelta(1, "ns"), exchange
    )
    return opens[-OVERLAP_SESSIONS] if len(opens) >= OVERLAP_SESSIONS else last


def in_parallel[T, R](
    work: Callable[[T], R], items: Sequence[T], *, workers: int, done: Callable[[R], None] | None = None
) -> list[R]:
    """work(item) for every item, `workers` at a time in threads; results in item order; `done` is called
    in the caller's thread as each one finishes. The first exception stops the rest and propagates."""
    if workers <= 1 or len(items) <= 1:
        results = []
        for item in items:
            results.append(work(item))
            if done is not None:
                done(results[-1])
        return results
    pool = ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="ingest")
    try:
        futures = [pool.submit(work, item) for item in items]
        for future in as_completed(futures):
            if done is not None:
                done(future.result())
        return [future.result() for future in futures]
    finally:
        pool.shutdown(cancel_futures=True)


def ingest_after(
    engine: sa.Engine,
    source: MarketDataSource,
    listing: Listing,
    timeframe: str,
    stored: Stored,
    *,
    start=None,
    end=None,
    now=None,
    hole_attempts: int = 3,
) -> PartitionResult:
    """Bring one partition that holds `stored` up to the latest closed bar, backfilling before its first bar
    to `start` and retrying its open holes that failed fewer than `hole_attempts` fetches (see module doc);
    the callers that handle many partitions read `stored` for all of them at once (stored_partitions)."""
    symbol = listing.symbol
    tf = get_timeframe(timeframe)
    now = utc(now) or pd.Timestamp.now(tz="UTC")
    target = calendar.last_closed_bar(tf.name, min(now, utc(end) or now))
    if target is None:
        return PartitionResult(symbol, tf.name, "fresh", last_ts=utc(stored.last_ts))
    spans = plan_spans(
        tf.name, stored, target, start=utc(start), hole_attempts=hole_attempts, exchange=listing.calendar
    )
    given_up = tuple(h for h in stored.holes if h.attempts >= hole_attempts)
    if not spans:
        return PartitionResult(
            symbol,
            tf.name,
            "fresh",
            last_ts=utc(stored.last_ts),
            holes_open=len(stored.holes),
            holes_given_up=given_up,
        )
    walk = _Walk(engine, source.name, listing, tf.name, utc(stored.last_ts))
    error = None
    try:
        for span in spans:
            error = walk.span(source.fetch_chunks(listing, tf.name, span.start, span.end), span)
            if error is not None or walk.split is not None:
                break
        if walk.split is not None:
            error = walk.repair(source, listing, now=min(now, utc(end) or now))
    except Exception as exc:  # one partition's failure must not stop the others
        if database_fault(exc) is not None:
            raise  # the caller reconnects once, then fails the partition (tt_pipeline.market)
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if error is not None:
        log.warning("ingest %s %s failed: %s", symbol, tf.name, error)
    holes = open_holes(engine, tf.name, symbol)
    used = walk.stats
    return PartitionResult(
        symbol,
        tf.name,
        "failed" if error is not None else "updated",
        requests=used.requests,
        bars_fetched=walk.fetched,
        bars_written=walk.written,
        first_ts=walk.first_ts,
        last_ts=walk.last_ts,
        pacing_waits=used.pacing_waits,
        error=error,
        quarantined=walk.quarantined,
        holes_found=walk.holes_found,
        holes_open=len(holes),
        holes_given_up=tuple(h for h in holes if h.attempts >= hole_attempts),
        changes=tuple(walk.changes),
        repaired=tuple(walk.repaired),
    )


class SplitFound(Exception):
    """A re-read chunk shows a split: its transaction is rolled back and the history repaired instead."""

    def __init__(self, change: Change) -> None:
        super().__init__(change.evidence)
        self.change = change


class _Walk:
    """Stores one partition's chunks as they arrive, compares the re-read overlap with the stored bars, and
    keeps the counts of the walk. `stored_last`: the partition's last bar before the walk (None: empty)."""

    def __init__(
        self,
        engine: sa.Engine,
        source: str,
        listing: Listing,
        timeframe: str,
        stored_last: pd.Timestamp | None,
    ) -> None:
        self.engine, self.source, self.timeframe = engine, source, timeframe
        self.symbol, self.exchange = listing.symbol, listing.calendar
        self.stored_last = stored_last
        self.stats = SourceStats()
        self.fetched = self.written = self.quarantined = self.holes_found = 0
        self.first_ts: pd.Timestamp | None = None
        self.last_ts: pd.Timestamp | None = None
        self.split: Change | None = None
        self.changes: list[str] = []
        self.repaired: list[str] = []

    def span(self, chunks: Iterable[Chunk], span: Span) -> str | None:
        """Store every chunk of `span`; the failure reason when the walk failed, else None."""
        repeats = span.hole.attempts + 1 if span.hole is not None else 1
        recorded = set()
        for chunk in chunks:
            self.stats.add(chunk.stats)
            try:
                with self.engine.begin() as conn:
                    self._chunk(conn, chunk, span, repeats, recorded)
            except SplitFound as found:
                self.split = found.change
                getattr(chunks, "close", lambda: None)()  # the rest of the span comes with the repair
                return None
            if chunk.status == "failed":
                return chunk.reason
        with self.engine.begin() as conn:  # walked to its end: what is still missing was recorded again
            resolve_holes(conn, self.symbol, self.timeframe, span.start, span.end, keep=recorded)
        return None

    def _chunk(self, conn: sa.Connection, chunk: Chunk, span: Span, repeats: int, recorded: set) -> None:
        """Store one chunk's bars, or record it as a hole."""
        if chunk.status == "ok":
            self._store(conn, chunk)
        elif chunk.status == "no_data":
            if len(calendar.expected_bar_starts(self.timeframe, chunk.start, chunk.end)):
                record_hole(conn, self.symbol, self.timeframe, chunk.start, chunk.end, chunk.reason, repeats)
                recorded.add((chunk.start, chunk.end))
                self.holes_found += 1
        elif span.kind in ("backfill", "hole"):  # failed: the rest of the span stays to be fetched
            hole = span.hole
            start, end = (hole.start, hole.end) if hole is not None else (chunk.start, span.end)
            record_hole(conn, self.symbol, self.timeframe, start, end, chunk.reason, repeats)
            self.holes_found += hole is None

    def _store(self, conn: sa.Connection, chunk: Chunk) -> None:
        """The chunk's valid bars into tt_prices, its invalid ones into the quarantine. Bars off the exchange's
        grid reject the chunk (bar_grid.conform raises, nothing of the chunk is written)."""
        conformed = bar_grid.conform(chunk.bars, self.symbol, self.timeframe, exchange=self.exchange)
        if self.stored_last is not None and len(conformed) and conformed["ts"].iloc[0] <= self.stored_last:
            self._compare(conn, conformed)
        bars = conformed.assign(symbol=self.symbol, timeframe=self.timeframe)
        good, rejected = split_invalid(bars)
        written = upsert_price_bars(conn, good, source=self.source)
        self.quarantined += replace_quarantine(
            conn, self.symbol, self.timeframe, chunk.start, chunk.end, rejected, source=self.source
        )
        self._count(conformed, written.inserted + written.updated)

    def _count(self, bars: pd.DataFrame, written: int) -> None:
        self.fetched += len(bars)
        self.written += written
        if len(bars):
            first, last = bars["ts"].iloc[0], bars["ts"].iloc[-1]
            self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
            self.last_ts = last if self.last_ts is None else max(self.last_ts, last)

    def _compare(self, conn: sa.Connection, served: pd.DataFrame) -> None:
        """Compare the re-read bars with the stored ones: a revision is recorded (and stored by the caller),
        a split raises SplitFound."""
        end = self.stored_last + pd.Timedelta(seconds=1)
        stored = read_bars(conn, [self.symbol], self.timeframe, served["ts"].iloc[0], end)
        change = compare_overlap(stored, served)
        if change is None:
            return
        if change.kind == "split":
            raise SplitFound(change)
        record_change(
            conn, self.symbol, self.timeframe, change, source=self.source, first_session=change.first_ts
        )
        self.changes.append(f"revision: {change.evidence}")
        log.warning("%s %s: %s", self.symbol, self.timeframe, self.changes[-1])

    def repair(self, source: MarketDataSource, listing: Listing, *, now: pd.Timestamp) -> str | None:
        """After a split: record it, then fetch the symbol's stored history in every timeframe again and
        replace each partition in one transaction; the first partition's failure, else None (a partition
        that failed keeps its bars, and the next run finds the split there again)."""
        change = self.split
        first_session = calendar.expected_bar_starts(
            "1d",
            self.stored_last + pd.Timedelta(1, "ns"),
            self.stored_last + pd.Timedelta(days=21),
            self.exchange,
        )[0]
        with self.engine.begin() as conn:
            record_change(
                conn, self.symbol, self.timeframe, change, source=self.source, first_session=first_session
            )
        text = f"split {ratio_text(change.ratio)} (first session {first_session:%Y-%m-%d} or later)"
        log.warning(
            "%s %s: %s: %s; fetching its history again", self.symbol, self.timeframe, text, change.evidence
        )
        marks = window_counts(self.engine, [self.symbol], TIMEFRAME_NAMES, None, None)
        replaced, failures = [], []
        order = {name: i for i, name in enumerate(TIMEFRAME_NAMES)}
        for mark in sorted(marks.itertuples(), key=lambda mark: order[mark.timeframe]):
            target = calendar.last_closed_bar(mark.timeframe, now, self.exchange)
            error = self._replace(
                source, listing, mark.timeframe, utc(mark.first_ts), target + pd.Timedelta(seconds=1)
            )
            if error is None:
                replaced.append(mark.timeframe)
                self.repaired.append(mark.timeframe)
            else:
                failures.append(f"{mark.timeframe}: {error}")
        self.changes.append(
            f"{text}: history fetched again and replaced ({', '.join(replaced) or 'none'})"
            + (f"; not replaced, retried next run: {'; '.join(failures)}" if failures else "")
        )
        return f"{text}: {failures[0]}" if failures else None

    def _replace(
        self,
        source: MarketDataSource,
        listing: Listing,
        timeframe: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> str | None:
        """Fetch [start, end) of (symbol, timeframe) and make it the partition's bars (its features deleted, to
        be recomputed) in one transaction; the failure reason (nothing replaced), else None."""
        chunks = []
        for chunk in source.fetch_chunks(listing, timeframe, start, end):
            self.stats.add(chunk.stats)
            if chunk.status == "failed":
                return chunk.reason
            chunks.append(chunk)
        served = [
            bar_grid.conform(c.bars, self.symbol, timeframe, exchange=self.exchange)
            for c in chunks
            if c.status == "ok"
        ]
        if not served:
            return "the source served no bar of the stored history"
        bars = pd.concat(served, ignore_index=True)
        good, rejected = split_invalid(bars.assign(symbol=self.symbol, timeframe=timeframe))
        partition = {"symbol": self.symbol, "timeframe": timeframe}
        with self.engine.begin() as conn:
            for table in (prices, features, quarantine):
                conn.execute(sa.delete(table).where(*(table.c[k] == v for k, v in partition.items())))
            written = upsert_price_bars(conn, good, source=self.source)
            replace_quarantine(conn, self.symbol, timeframe, start, end, rejected, source=self.source)
            for chunk in chunks:
                if chunk.status == "no_data" and len(
                    calendar.expected_bar_starts(timeframe, chunk.start, chunk.end)
                ):
                    record_hole(conn, self.symbol, timeframe, chunk.start, chunk.end, chunk.reason)
        if timeframe == self.timeframe:
            self._count(bars, written.inserted + written.updated)
        return None
