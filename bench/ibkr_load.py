"""IBKR first-load benchmark: the whole watchlist x (1d 3 y, 1h 2 y, 15m 1 y) through the real IbkrSource and
ib_async client against the IB Gateway stand-in (tests/fake_ibgateway.py) running in its own process.

The stand-in answers each historical request after a uniform random latency (default 0.5-2 s), enforces
IBKR's identical-request (15 s) and per-contract (a sixth in 2 s) rules over every connection, and a soft
limit: a request arriving while --soft-concurrency requests are open, or beyond --soft-rate in one second,
gets error 162 pacing violation. Adaptive mode is measured (bounded concurrency, AIMD); strict mode's wall
time is computed from its rule (60 requests per 10 minutes) for the same number of requests, and so is the
cost of adaptive mode's hard-rule fallback (a whole window's wait, then that rule) had the load needed it;
`hard_rule_fallback.switched` says whether it did (it must not against this stand-in's soft limit).
Figures: wall time, requests, pacing violations (recovered = the partition still completed; unrecovered =
a partition failed), bars served by the stand-in vs stored. Writes bench/results/ibkr_load.json.

    python bench/ibkr_load.py [--quick] [--concurrency 24] [--latency 0.5,2] [--soft-concurrency 20]

--split-repair: instead, what a split costs for one symbol (section `split_repair`): its default histories
(1d 3 y, 1h 2 y, 15m 1 y) are stored, the stand-in (in this process, same latency and rules) then serves them
split-adjusted 2:1, and the next run finds the split in the 1d overlap and fetches all three histories again;
requests and wall time of that run. Writes bench/results/ibkr_split_repair.json.

--quick: the first 6 watchlist symbols. The database is a scratch PostgreSQL database (TT_BENCH_PG_URL, an
admin URL, default the local cluster as user postgres) or, with --sqlite, a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.refreshing import fetch_results  # noqa: E402
from tests.scratch import scratch_postgres  # noqa: E402
from tt_resources.db import create_engine, upgrade  # noqa: E402
from tt_resources.db.schema import fetch_log, prices  # noqa: E402
from tt_resources.sources import make_source  # noqa: E402
from tt_resources.sources.pacing import PacingRules  # noqa: E402
from tt_resources.sources.settings import IbkrSettings, SourceSettings  # noqa: E402
from tt_resources.timeframes import TIMEFRAME_NAMES  # noqa: E402
from tt_resources.watchlist import load_watchlist  # noqa: E402

NOW = pd.Timestamp("2026-11-18 21:30", tz="UTC")  # the stand-in's clock: a Wednesday after the close
PG_ADMIN_URL = os.environ.get("TT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGET_S = 30 * 60


def stand_in(stack: ExitStack, args, summary: Path) -> int:
    """Start the stand-in process; its port. It stops and writes `summary` when the stack closes."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_ibgateway",
            "--now",
            NOW.isoformat(),
            "--latency",
            args.latency,
            "--soft-concurrency",
            str(args.soft_concurrency),
            "--soft-rate",
            str(args.soft_rate),
            "--summary",
            str(summary),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def stop() -> None:
        proc.stdin.close()
        proc.wait(timeout=120)

    stack.callback(stop)
    return int(proc.stdout.readline())


def database(stack: ExitStack, sqlite: bool) -> sa.Engine:
    url = (
        f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/load.sqlite"
        if sqlite
        else stack.enter_context(scratch_postgres(PG_ADMIN_URL, "tt_bench_ibkr"))
    )
    engine = create_engine(url)
    upgrade(engine)
    stack.callback(engine.dispose)
    return engine


def run(args) -> dict:
    listings = load_watchlist().listings[: 6 if args.quick else None]
    rules = PacingRules(mode="adaptive", concurrency=args.concurrency)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        summary = Path(tmp) / "gateway.json"
        with ExitStack() as serving:
            port = stand_in(serving, args, summary)
            engine = database(stack, args.sqlite)
            settings = SourceSettings("ibkr", ibkr=IbkrSettings(port=port, client_id=71), pacing=rules)
            source = make_source(settings, engine)
            began = time.monotonic()
            try:
                results = fetch_results(engine, source, listings, list(TIMEFRAME_NAMES), now=NOW)
            finally:
                source.close()
            wall_s = time.monotonic() - began
        served = json.loads(summary.read_text())
        switched = source.budget.hard_rule_since() is not None
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(prices)).scalar_one()
            logged = dict(
                conn.execute(
                    sa.select(fetch_log.c.outcome, sa.func.count())
                    .where(fetch_log.c.request == "historical")
                    .group_by(fetch_log.c.outcome)
                ).all()
            )
    failed = [r for r in results if r.status == "failed"]
    historical = sum(logged.values())
    violations = served["outcomes"].get("pacing", 0) + served["outcomes"].get("soft_pacing", 0)
    strict = PacingRules(mode="strict")
    strict_s = historical / strict.max_requests * strict.window_s
    return {
        "symbols": len(listings),
        "timeframes": list(TIMEFRAME_NAMES),
        "stand_in": {
            "latency_s": args.latency,
            "soft_concurrency": args.soft_concurrency,
            "soft_rate_per_s": args.soft_rate,
            "outcomes": served["outcomes"],
        },
        "adaptive": {
            "concurrency_max": args.concurrency,
            "wall_s": round(wall_s, 1),
            "wall_min": round(wall_s / 60, 2),
            "requests_total": source.stats.requests,
            "historical_requests": historical,
            "requests_per_s": round(historical / wall_s, 2),
            "pacing_violations": violations,
            "violations_recovered": violations if not failed else None,
            "violations_unrecovered": sum("pacing" in (r.error or "") for r in failed),
            "partitions": len(results),
            "partitions_failed": len(failed),
            "bars_served": served["bars_served"],
            "bars_stored": stored,
            "bars_lost": served["bars_served"] - stored,
            "meets_target": wall_s <= TARGET_S and not failed and served["bars_served"] == stored,
        },
        "strict_computed": {
            "rule": f"{strict.max_requests} requests per {strict.window_s:g} s",
            "historical_requests": historical,
            "wall_s": round(strict_s),
            "wall_h": round(strict_s / 3600, 1),
        },
        "hard_rule_fallback": {
            "switched": switched,
            "cost_if_switched_at_start_s": round(strict.window_s + strict_s),
            "daily_tail_update_s": round(len(results) / strict.max_requests * strict.window_s),
        },
        "failed": [f"{r.symbol} {r.timeframe}: {r.error}" for r in failed[:10]],
    }


def split_repair(args) -> dict:
    """The split-repair figures (see the module doc): requests and seconds of the run that finds the split."""
    from tests.fake_ibgateway import FakeIBGateway, Faults
    from tt_resources.db.corporate_actions import recorded_actions
    from tt_resources.watchlist import Listing

    after = NOW + pd.Timedelta(days=7)  # a week later; the split's first session is the one after NOW
    low, high = (float(x) for x in args.latency.split(","))
    gateway = FakeIBGateway(NOW, faults=Faults(latency_s=(low, high)))
    gateway.rolling_budget = False  # as IBKR for bars of 1 min and more (and as the stand-in process)
    gateway.split("SPLT", "2026-11-19", 2.0)
    port = gateway.start()
    with ExitStack() as stack:
        stack.callback(gateway.stop)
        engine = database(stack, args.sqlite)
        rules = PacingRules(mode="adaptive", concurrency=args.concurrency)
        settings = SourceSettings("ibkr", ibkr=IbkrSettings(port=port, client_id=72), pacing=rules)
        source = make_source(settings, engine)
        stack.callback(source.close)
        began = time.monotonic()
        fetch_results(engine, source, [Listing("SPLT")], list(TIMEFRAME_NAMES), now=NOW)
        first_s, first_requests = time.monotonic() - began, len(gateway.historical())
        gateway.now = after
        began = time.monotonic()
        results = fetch_results(engine, source, [Listing("SPLT")], list(TIMEFRAME_NAMES), now=after)
        repair_s = time.monotonic() - began
        actions = recorded_actions(engine)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(prices)).scalar_one()
    return {
        "split_repair": {
            "symbol_timeframes": list(TIMEFRAME_NAMES),
            "first_load_requests": first_requests,
            "first_load_s": round(first_s, 1),
            "repair_requests": len(gateway.historical()) - first_requests,
            "repair_s": round(repair_s, 1),
            "bars_replaced": stored,
            "corporate_actions": len(actions),
            "statuses": [f"{r.timeframe}: {r.status}" for r in results],
            "bound": "one request in flight per partition walk: (1d 4 + 1h 25 + 15m 54 chunks) x 0.5-2 s answer latency, plus the 1d tail that found the split",
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the first 6 watchlist symbols only")
    parser.add_argument("--concurrency", type=int, default=24, help="requests in flight at most (< 50)")
    parser.add_argument("--latency", default="0.5,2", help="stand-in answer latency, uniform a,b seconds")
    parser.add_argument("--soft-concurrency", type=int, default=20, help="stand-in: open requests allowed")
    parser.add_argument("--soft-rate", type=int, default=30, help="stand-in: requests allowed per second")
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead of PostgreSQL")
    parser.add_argument("--split-repair", action="store_true", help="one symbol's split repair (see above)")
    args = parser.parse_args()
    if args.split_repair:
        write_results("ibkr_split_repair", split_repair(args))
        return
    result = run(args)
    write_results("ibkr_load_quick" if args.quick else "ibkr_load", result)


if __name__ == "__main__":
    main()
