"""Market-data benchmark: synthetic generation speed, end-to-end ingest speed per backend, IBKR chunk-plan size.

Writes bench/results/market_data.json; `python bench/market_data.py [section ...]` measures only those sections
and keeps the others' last figures. Sections:
- synthetic: all 150 symbols x (3 y of 1d, 2 y of 1h, 1 y of 15m), bars and bars/s (target: under 20 s);
- ingest: `refresh_partitions` (fetch and store, no features) of 25 synthetic symbols x 3 timeframes into a fresh SQLite file and a fresh PostgreSQL
  database (bars/s), then a second run (every partition fresh, zero requests);
- via_dagster: the full watchlist (150 symbols x 3 timeframes, synthetic source) through Dagster end to end,
  the path `tt demo` and `tt ingest --via-dagster` take (market_data_job range runs in-process against a
  fresh DAGSTER_HOME and a fresh embedded SQLite database: raw_bars, the checks, features), a first run and a
  second (nothing new) run; target: the first under 60 s;
- event_log: the pooled event log (tt_assets.dagster_fence.PooledSqliteEventLogStorage, the CLI's instance's)
  against Dagster's own SqliteEventLogStorage: EVENT_LOG_SYMBOLS symbols x 3 timeframes through Dagster as in
  via_dagster, a first and a nothing-new run on fresh storage per variant, the variants alternated
  EVENT_LOG_ROUNDS times (the machine is shared, so CPU seconds of this process are the figure to compare; wall
  seconds and load beside them);
- ibkr_chunk_plan: historical requests the chunk plan issues for 150 symbols vs IBKR's step-table minimum, and
  the requests the real IbkrSource actually sent to the fake gateway for two symbols.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from report import RESULTS_DIR, write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_ibgateway import FakeIBGateway  # noqa: E402
from tests.refreshing import fetch_results  # noqa: E402
from tests.scratch import scratch_postgres  # noqa: E402
from tt_resources import calendar  # noqa: E402
from tt_resources.db.engine import create_engine  # noqa: E402
from tt_resources.db.migrate import upgrade  # noqa: E402
from tt_resources.sources import make_source  # noqa: E402
from tt_resources.sources.ibkr import CHUNKS, chunk_plan  # noqa: E402
from tt_resources.sources.pacing import PacingRules  # noqa: E402
from tt_resources.sources.settings import IbkrSettings, SourceSettings  # noqa: E402
from tt_resources.sources.synthetic import SyntheticSource  # noqa: E402
from tt_resources.timeframes import TIMEFRAMES  # noqa: E402
from tt_resources.watchlist import Listing  # noqa: E402

SYMBOLS = [Listing(f"S{i:03d}") for i in range(150)]
INGEST_SYMBOLS = SYMBOLS[:25]
PG_ADMIN_URL = os.environ.get("TT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NOW = pd.Timestamp.now(tz="UTC").floor("min")


def window(timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The default first-ingest window [end - history, end) ending after the last closed bar."""
    end = calendar.last_closed_bar(timeframe, NOW) + pd.Timedelta(seconds=1)
    return end - TIMEFRAMES[timeframe].default_history, end


def bench_synthetic() -> dict:
    source = SyntheticSource(seed=7, clock=lambda: NOW)
    began = time.perf_counter()
    bars = {tf: sum(len(source.fetch(s, tf, *window(tf))) for s in SYMBOLS) for tf in TIMEFRAMES}
    seconds = time.perf_counter() - began
    total = sum(bars.values())
    return {"symbols": len(SYMBOLS), "bars": bars, "total_bars": total, "seconds": round(seconds, 2),
            "bars_per_s": round(total / seconds), "target_seconds": 20}  # fmt: skip


def bench_ingest(url: str) -> dict:
    engine = create_engine(url)
    upgrade(engine)
    source = SyntheticSource(seed=7, clock=lambda: NOW)
    began = time.perf_counter()
    first = fetch_results(engine, source, INGEST_SYMBOLS, list(TIMEFRAMES), now=NOW)
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    second = fetch_results(engine, source, INGEST_SYMBOLS, list(TIMEFRAMES), now=NOW)
    fresh_seconds = time.perf_counter() - began
    engine.dispose()
    written = sum(r.bars_written for r in first)
    return {
        "partitions": len(first),
        "bars_written": written,
        "seconds": round(seconds, 2),
        "bars_per_s": round(written / seconds),
        "second_run_fresh": sum(r.status == "fresh" for r in second),
        "second_run_requests": sum(r.requests for r in second),
        "second_run_seconds": round(fresh_seconds, 2),
    }


def bench_postgres() -> dict | None:
    try:
        with scratch_postgres(PG_ADMIN_URL, "tt_bench") as url:
            return bench_ingest(url)
    except sa.exc.OperationalError as exc:
        print(f"postgres skipped: {str(exc.orig).splitlines()[0]}")
        return None


def bench_via_dagster() -> dict:
    """The watchlist's 150 symbols x 3 timeframes through market_data_job, twice, on fresh storage."""
    from tt_cli.common import market_config
    from tt_cli.pipeline import ViaDagster
    from tt_resources.watchlist import load_watchlist

    symbols = load_watchlist(limit=150).symbols
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("DATABASE_URL", "TT_SOURCE"):
            os.environ.pop(name, None)
        os.environ.update(TT_DATA_DIR=tmp, DAGSTER_HOME=f"{tmp}/dagster_home")
        engine = create_engine(f"sqlite:///{tmp}/tt.sqlite")
        upgrade(engine)
        pipeline = ViaDagster(engine, market_config("synthetic"))
        figures = {"symbols": len(symbols), "load_before": round(os.getloadavg()[0], 2)}
        for run in ("first", "second"):
            began, cpu = time.perf_counter(), time.process_time()
            reports = pipeline.refresh(symbols, list(TIMEFRAMES), progress=lambda report: None)
            seconds = time.perf_counter() - began
            statuses = sorted({r.status for r in reports})
            figures[run] = {
                "partitions": len(reports),
                "statuses": {status: sum(r.status == status for r in reports) for status in statuses},
                "bars_written": sum(r.bars_written for r in reports),
                "seconds": round(seconds, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "load_after": round(os.getloadavg()[0], 2),
            }
        figures["first"]["bars_per_s"] = round(figures["first"]["bars_written"] / figures["first"]["seconds"])
        figures.update(
            runs=len(pipeline.run_ids),
            checks_passed=pipeline.checks_passed,
            checks_total=pipeline.checks_total,
            target_seconds=60,
        )
        pipeline.instance.dispose()
        engine.dispose()
    return figures


EVENT_LOG_SYMBOLS = 30
EVENT_LOG_ROUNDS = 3


def refresh_twice(symbols: list[str], variant: str) -> dict:
    """A first and a nothing-new refresh of `symbols` x TIMEFRAMES through Dagster on fresh storage, the
    instance's event log `pooled` (the CLI's) or `dagster` (Dagster's default): CPU and wall seconds of each."""
    import dagster as dg

    from tt_cli.pipeline import ViaDagster

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(TT_DATA_DIR=tmp, DAGSTER_HOME=f"{tmp}/dagster_home")
        engine = create_engine(f"sqlite:///{tmp}/tt.sqlite")
        upgrade(engine)
        pipeline = ViaDagster(engine, "synthetic")
        if variant == "dagster":
            pipeline.instance.dispose()
            pipeline.instance = dg.DagsterInstance.get()
        figures = {"variant": variant, "event_log": type(pipeline.instance.event_log_storage).__name__}
        for run in ("first", "second"):
            load = os.getloadavg()[0]
            began, cpu = time.perf_counter(), time.process_time()
            reports = pipeline.refresh(symbols, list(TIMEFRAMES), progress=lambda report: None)
            figures[run] = {
                "cpu_seconds": round(time.process_time() - cpu, 2),
                "seconds": round(time.perf_counter() - began, 2),
                "load_before": round(load, 2),
                "partitions": len(reports),
            }
        pipeline.instance.dispose()
        engine.dispose()
    return figures


def bench_event_log() -> dict:
    """Pooled vs Dagster's event log, alternated (after one untimed warm-up that imports everything)."""
    from statistics import median

    from tt_resources.watchlist import load_watchlist

    for name in ("DATABASE_URL", "TT_SOURCE"):
        os.environ.pop(name, None)
    symbols = load_watchlist(limit=EVENT_LOG_SYMBOLS).symbols
    refresh_twice(symbols[:1], "pooled")
    rounds = []
    for n in range(EVENT_LOG_ROUNDS):
        for variant in ("pooled", "dagster") if n % 2 == 0 else ("dagster", "pooled"):
            rounds.append(refresh_twice(symbols, variant))
            print(json.dumps(rounds[-1]), flush=True)
    medians = {
        variant: {
            f"{run}_{figure}": median(r[run][figure] for r in rounds if r["variant"] == variant)
            for run in ("first", "second")
            for figure in ("cpu_seconds", "seconds")
        }
        for variant in ("pooled", "dagster")
    }
    saved = {
        figure: round(1 - medians["pooled"][figure] / medians["dagster"][figure], 3)
        for figure in medians["pooled"]
    }
    return {"symbols": len(symbols), "rounds": rounds, "medians": medians, "pooled_saves": saved}


def step_table_minimum(timeframe: str) -> int:
    """How many of IBKR's longest requests (1 Y / 1 M / 1 W) it takes to reach back over the default window."""
    start, end = window(timeframe)
    offset = CHUNKS[timeframe][0]
    return next(n for n in range(1, 1000) if end - n * offset <= start)


def bench_chunk_plan() -> dict:
    planned = {tf: len(SYMBOLS) * len(chunk_plan(tf, *window(tf))) for tf in TIMEFRAMES}
    minimum = {tf: len(SYMBOLS) * step_table_minimum(tf) for tf in TIMEFRAMES}
    # the real client against the fake gateway for two symbols (shortened pacing windows)
    rules = PacingRules(max_requests=1000, window_s=1.0, identical_s=0.1, per_contract=100, margin_s=0.05)
    gateway = FakeIBGateway(NOW, rules=rules, head=NOW - pd.DateOffset(years=10))
    gateway.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/plan.sqlite")
            upgrade(engine)
            settings = SourceSettings(
                "ibkr", ibkr=IbkrSettings(port=gateway.port, client_id=31), pacing=rules
            )
            source = make_source(settings, engine)
            try:
                fetch_results(engine, source, [Listing("AAPL"), Listing("MSFT")], list(TIMEFRAMES), now=NOW)
            finally:
                source.close()
            engine.dispose()
    finally:
        gateway.stop()
    sent = {
        tf: sum(r.bar_size == TIMEFRAMES[tf].ib_bar_size for r in gateway.historical()) for tf in TIMEFRAMES
    }
    return {"symbols": len(SYMBOLS), "planned_requests": planned, "step_table_minimum": minimum,
            "planned_total": sum(planned.values()), "fake_gateway_two_symbols_sent": sent}  # fmt: skip


def bench_ingest_sqlite() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return bench_ingest(f"sqlite:///{tmp}/bench.sqlite")


SECTIONS = {
    "synthetic_generation": bench_synthetic,
    "ingest_sqlite": bench_ingest_sqlite,
    "ingest_postgres": bench_postgres,
    "ibkr_chunk_plan": bench_chunk_plan,
    "via_dagster": bench_via_dagster,
    "event_log": bench_event_log,
}


def main(names: list[str]) -> None:
    """Measure the named sections (default: all); the other sections keep their last figures."""
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    path = RESULTS_DIR / "market_data.json"
    results = json.loads(path.read_text()) if names and path.exists() else {}
    for name, bench in SECTIONS.items():
        if not names or name in names:
            figures = bench()  # None: skipped (PostgreSQL unreachable)
            stamp = {"measured_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")}
            results[name] = None if figures is None else {**figures, **stamp}
    results.pop("measured_at", None)
    write_results("market_data", results)


if __name__ == "__main__":
    main(sys.argv[1:])
