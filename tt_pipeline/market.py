"""Refreshing (symbol, timeframe) partitions: fetch the missing tail, assess the stored bars, bring the
features up to the last bar. The one implementation behind `tt ingest`, `tt train`, `tt demo` and the
Dagster market_data assets.

The gate: features are computed only for partitions whose stored bars pass every bar-quality rule
(tt_pipeline.quality), so a partition either has features up to its last bar or is reported failed with
the reason; nothing downstream ever sees bars without features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import pandas as pd
import sqlalchemy as sa

from tt_pipeline.quality import BarQuality, assess_bars, content_version
from tt_resources.db.faults import DatabaseFault, with_reconnect
from tt_resources.ingest import PartitionResult, Stored, in_parallel, ingest_after, stored_partitions
from tt_resources.sources.base import MarketDataSource, source_now
from tt_resources.terms import utc
from tt_resources.watchlist import Listing


@dataclass(frozen=True)
class PartitionReport:
    """What one partition's refresh did, in plain values (the CLI's summary row; Dagster metadata).

    status: fresh (nothing to fetch) | updated | checked (not fetched, only assessed) | failed."""

    symbol: str
    timeframe: str
    status: str
    requests: int = 0
    bars_written: int = 0
    pacing_waits: int = 0
    reason: str | None = None  # why it failed: the source's error or the broken bar-quality rules
    quarantined: int = 0  # bars in tt_bar_quarantine (sent by the source, breaking a bar rule)
    holes: int = 0  # open holes: spans the source did not deliver (tt_fetch_hole), retried by later runs
    bars_stored: int | None = None  # the partition's bars in tt_prices after the run (None: not read back)
    holes_given_up: str | None = (
        None  # open holes no longer retried, `start..end` each (`tt ingest --accept-hole`)
    )
    changes: str | None = None  # splits and revisions found in the re-read overlap (tt_corporate_action)
    failed_in: str | None = (
        None  # where a failed one failed: "database", "fetch", "bars" (its rules) or "run"
    )

    def to_metadata(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_metadata(cls, values: dict[str, object]) -> PartitionReport:
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})


@dataclass(frozen=True)
class PartitionOutcome:
    """One partition after a refresh: the fetch (None when not fetched), the stored bars' quality and
    data version, and how many feature rows were (re)written (None when features were not brought up to
    date: not asked for, or the bars fail the quality rules)."""

    symbol: str
    timeframe: str
    fetched: PartitionResult | None
    quality: BarQuality | None  # None: not assessed (the database failed, `fault`)
    bars_stored: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    content_version: str
    features_written: int | None
    fault: str | None = None  # the database fault that ended this partition (tt_resources.db.faults)

    @classmethod
    def faulted(cls, symbol: str, timeframe: str, fault: str) -> PartitionOutcome:
        """A partition a database fault ended after one reconnect attempt: failed, with the fault's line."""
        return cls(symbol, timeframe, None, None, 0, None, None, "", None, fault=fault)

    @property
    def fetch_failed(self) -> bool:
        return self.fetched is not None and self.fetched.status == "failed"

    @property
    def reason(self) -> str | None:
        """Why the partition failed (a database fault, the fetch's error, the bars' quality), or None."""
        if self.fault is not None:
            return self.fault
        if self.fetch_failed:
            return self.fetched.error
        reason = self.quality.reason()
        if reason and self.bars_stored:
            reason += "; its bars are kept, features not updated"  # the CLI adds how many are stored
        return reason

    def report(self) -> PartitionReport:
        fetched = self.fetched
        status = "failed" if self.reason else fetched.status if fetched else "checked"
        return PartitionReport(
            self.symbol,
            self.timeframe,
            status,
            requests=fetched.requests if fetched else 0,
            bars_written=fetched.bars_written if fetched else 0,
            pacing_waits=fetched.pacing_waits if fetched else 0,
            reason=self.reason,
            quarantined=self.quality.quarantined if self.quality else 0,
            holes=fetched.holes_open if fetched else 0,
            holes_given_up=", ".join(f"{h.start:%Y-%m-%d}..{h.end:%Y-%m-%d}" for h in fetched.holes_given_up)
            if fetched and fetched.holes_given_up
            else None,
            changes="; ".join(fetched.changes) if fetched and fetched.changes else None,
            failed_in=self.failed_in,
        )

    @property
    def failed_in(self) -> str | None:
        """Where the partition failed: "database" (a fault), "fetch" (the source) or "bars" (a raw_bars
        rule); None when it did not."""
        if self.fault is not None:
            return "database"
        if self.fetch_failed:
            return "fetch"
        return "bars" if self.reason else None


def refresh_partitions(
    engine: sa.Engine,
    source: MarketDataSource | None,
    listings: Iterable[Listing],
    timeframe: str,
    *,
    features: bool = True,
    start=None,
    end=None,
    now=None,
    hole_attempts: int = 3,
    progress: Callable[[PartitionOutcome], None] | None = None,
) -> list[PartitionOutcome]:
    """Refresh each listing's `timeframe` partition; results in listing order; `progress` is called as each
    one finishes. Up to `source.concurrency` partitions run at once.

    `source` None skips the fetch (assess and featurise what is stored). `now` defaults to the source's
    present (tt_resources.sources.base.source_now). `start`/`end`/`now` and
    `hole_attempts` as in tt_resources.ingest (naive means UTC). A partition's failure never stops the
    others: a lost database connection costs one reconnect attempt, then (or at once for a full disk) the
    partition is failed with the fault's line (tt_resources.db.faults); when the timeframe's stored state
    cannot be read, every partition is failed so."""
    from tt_resources.db.features import feature_marks

    now = utc(now) or source_now(source)
    listings = list(listings)
    try:
        stored = with_reconnect(lambda: stored_partitions(engine, timeframe)) if source else {}
        featured = with_reconnect(lambda: feature_marks(engine, timeframe)) if features else {}
    except DatabaseFault as fault:
        outcomes = [PartitionOutcome.faulted(listing.symbol, timeframe, str(fault)) for listing in listings]
        for outcome in outcomes if progress is not None else ():
            progress(outcome)
        return outcomes

    def refresh(listing: Listing) -> PartitionOutcome:
        try:
            return with_reconnect(lambda: refresh_one(listing))
        except DatabaseFault as fault:
            return PartitionOutcome.faulted(listing.symbol, timeframe, str(fault))

    def refresh_one(listing: Listing) -> PartitionOutcome:
        from tt_resources.db.prices import read_bars

        symbol = listing.symbol
        fetched = None
        if source is not None:
            fetched = ingest_after(
                engine,
                source,
                listing,
                timeframe,
                stored.get(symbol, Stored()),
                start=start,
                end=end,
                now=now,
                hole_attempts=hole_attempts,
            )
        bars = read_bars(engine, [symbol], timeframe)
        quality = assess_partition(engine, symbol, timeframe, bars, now)
        written = None
        if features and quality.ok:
            revised_from = fetched.first_ts if fetched is not None else None
            written = update_features(
                engine, symbol, timeframe, bars, done=featured.get(symbol), revised_from=revised_from
            )
        for other in fetched.repaired if features and fetched is not None else ():
            if other != timeframe:  # a split replaced its bars and deleted its features: all recomputed
                other_bars = read_bars(engine, [symbol], other)
                if assess_partition(engine, symbol, other, other_bars, now).ok:
                    update_features(engine, symbol, other, other_bars, done=None)
        return PartitionOutcome(
            symbol,
            timeframe,
            fetched,
            quality,
            bars_stored=len(bars),
            first_ts=bars["ts"].iloc[0] if len(bars) else None,
            last_ts=bars["ts"].iloc[-1] if len(bars) else None,
            content_version=content_version(bars),
            features_written=written,
        )

    workers = source.concurrency if source is not None else 1
    return in_parallel(refresh, listings, workers=workers, done=progress)


def accept_holes(engine: sa.Engine, specs: Iterable[str]) -> list[str]:
    """Accept each `SYMBOL:TIMEFRAME:FIRST..LAST[:NOTE]` span as empty (tt_resources.db.holes.accept_hole);
    one line per span saying what was accepted. ValueError for a bad spec (nothing accepted)."""
    from tt_resources.db.holes import accept_hole, parse_accepted

    spans = [parse_accepted(spec) for spec in specs]
    lines = []
    for symbol, timeframe, start, end, note in spans:
        n = accept_hole(engine, symbol, timeframe, start, end, note)
        last = end - pd.Timedelta(days=1)
        lines.append(
            f"accepted {symbol} {timeframe} {start:%Y-%m-%d}..{last:%Y-%m-%d} as empty ({note}): {n} hole(s); "
            "coverage counts its bars as expected-empty and no run asks for them again"
        )
    return lines


def assess_partition(
    engine: sa.Engine, symbol: str, timeframe: str, bars: pd.DataFrame, now: pd.Timestamp
) -> BarQuality:
    """The raw_bars rules on one partition's stored `bars`, with its quarantined bars, the holes a user
    accepted and the splits recorded for the symbol."""
    from tt_resources.db.corporate_actions import recorded_splits
    from tt_resources.db.holes import accepted_spans
    from tt_resources.db.prices import quarantined

    return assess_bars(
        bars,
        timeframe,
        now,
        quarantined=len(quarantined(engine, [symbol], timeframe)),
        accepted=accepted_spans(engine, timeframe, symbol),
        splits=recorded_splits(engine, symbol),
    )


def update_features(
    engine: sa.Engine,
    symbol: str,
    timeframe: str,
    bars: pd.DataFrame,
    *,
    done: pd.Timestamp | None,
    revised_from: pd.Timestamp | None = None,
) -> int:
    """Write the feature rows of one partition's `bars` (all its stored bars, sorted by ts) after `done`
    (its latest stored feature row, None: none), and those whose bar was re-fetched (from `revised_from`
    on); returns the rows written. The rows are computed over all the stored bars, so they are the same
    numbers, bit for bit, as one pass over the whole series: Wilder's RSI never forgets its first bar, and a
    limited look-back gave other values (and another dataset version) for the same bars."""
    from tt_resources.db.features import upsert_features
    from tt_rl.features import compute_features

    first_new = 0 if done is None else int(bars["ts"].searchsorted(done, side="right"))
    if revised_from is not None:
        first_new = min(first_new, int(bars["ts"].searchsorted(revised_from, side="left")))
    n_new = len(bars) - first_new
    if n_new:
        rows = compute_features(bars).tail(n_new).assign(symbol=symbol, timeframe=timeframe)
        upsert_features(engine, rows)
    return n_new
