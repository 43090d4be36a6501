"""Trading loop benchmark: the 150-symbol watchlist, from a session's stored bars to all its market-on-open
orders submitted through IbkrBroker (the real ib_async client) to the IB Gateway stand-in
(tests/fake_ibgateway.py, in this process), and the target computation alone.

Set-up (not timed): the stand-in's 1d bars of the watchlist's first --symbols symbols stored with their
features in a temporary SQLite file (or, with --postgres, a scratch PostgreSQL database: TT_BENCH_PG_URL, an
admin URL, default the local cluster as user postgres), a tiny PPO production model trained on them and
promoted. Timed: loading the policy (torch, SB3, the model; once per process; also in a fresh process); `compute_target` (best and
median of --repeats); one `trade_session` after the session's close with trading enabled: connect,
reconcile, target, orders, limits, submission at TT_TRADING_ORDERS_PER_S (default 40 a second, under IBKR's
50 messages a second). Targets: orders <= 60 s, target <= 2 s. Writes bench/results/trading.json.

    python bench/trading.py [--symbols 150] [--repeats 5] [--postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_ibgateway import FakeIBGateway  # noqa: E402
from tests.scratch import scratch_postgres  # noqa: E402
from tests.trading_world import production_model, store_bars  # noqa: E402
from tt_resources.db import create_engine, upgrade  # noqa: E402
from tt_resources.watchlist import load_watchlist  # noqa: E402

SESSION = dt.date(2026, 11, 18)  # decided on this close, orders for the next open
PG_ADMIN_URL = os.environ.get("TT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


COLD_LOAD = """
import sys, time
started = time.perf_counter()
from tt_pipeline.trading.target import policy_of
from tt_resources.db import create_engine, registry
policy_of(registry.model(create_engine(sys.argv[1]), sys.argv[2]))
print(time.perf_counter() - started)
"""


def cold_policy_load(url: str, model_id: str) -> float:
    """Seconds a fresh process takes to import the loop and load the policy (torch, SB3, the model)."""
    done = subprocess.run(
        [sys.executable, "-c", COLD_LOAD, url, model_id], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    from tt_pipeline.trading.session import session_close, trade_session
    from tt_pipeline.trading.target import compute_target, policy_of
    from tt_resources.brokers.ibkr import IbkrBroker
    from tt_resources.config import Settings
    from tt_resources.db import registry
    from tt_resources.db import trading as db
    from tt_resources.sources.settings import IbkrSettings

    symbols = load_watchlist(ROOT / "data" / "tensorwatchlist.csv", limit=args.symbols).symbols
    with ExitStack() as stack:
        if args.postgres:
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, "tt_bench_trading"))
        else:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/tt.sqlite"
        engine = create_engine(url)
        upgrade(engine)
        model_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        started = time.perf_counter()
        store_bars(engine, symbols, SESSION)
        model_id = production_model(engine, model_dir, symbols, SESSION)
        db.record_promotion(
            engine, timeframe="1d", model_id=model_id, who="bench", reason="bench", forced=True
        )
        setup_s = time.perf_counter() - started

        started = time.perf_counter()
        policy = policy_of(registry.model(engine, model_id))
        load_s = time.perf_counter() - started
        cold_s = cold_policy_load(url, model_id)
        target_s = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            target = compute_target(engine, policy, SESSION, None)
            target_s.append(time.perf_counter() - started)

        close = session_close(SESSION)
        gateway = FakeIBGateway(close)
        gateway.start()
        stack.callback(gateway.stop)
        env = Settings(tt_trading_enabled=True)
        started = time.perf_counter()
        broker = IbkrBroker(IbkrSettings(port=gateway.port, client_id=51, request_timeout_s=30.0))
        stack.callback(broker.close)
        connect_s = time.perf_counter() - started
        run = trade_session(
            engine, SESSION, broker=broker, now=(close + pd.Timedelta(minutes=5)).to_pydatetime(), env=env
        )
        orders_s = time.perf_counter() - started
        arrivals = [p.at for p in gateway.order_log]
        busiest = max((sum(t <= u < t + 1.0 for u in arrivals) for t in arrivals), default=0)
        refs = gateway.refs_sent()
        engine.dispose()

    result = {
        "database": "postgresql" if args.postgres else "sqlite",
        "symbols": len(symbols),
        "session": str(SESSION),
        "setup_s": round(setup_s, 1),
        "policy_load_s": round(load_s, 2),  # torch already imported by the training above
        "policy_load_cold_s": round(cold_s, 2),  # a fresh process: torch, SB3 and the model
        "target": {
            "repeats": args.repeats,
            "best_s": round(min(target_s), 3),
            "median_s": round(statistics.median(target_s), 3),
            "target_s": 2.0,
            "invested_symbols": sum(1 for w in target.weights.values() if w > 0),
            "gross_weight": round(sum(target.weights.values()), 4),
        },
        "orders": {
            "wall_s": round(orders_s, 2),
            "connect_s": round(connect_s, 2),
            "target_s": 60.0,
            "planned": len(run.orders),
            "sent": len(run.sent),
            "received_by_gateway": len(refs),
            "duplicate_refs": len(refs) - len(set(refs)),
            "rejected": len(run.rejected),
            "breaches": [b.line for b in run.breaches],
            "orders_per_s_setting": env.tt_trading_orders_per_s,
            "busiest_second_orders": busiest,
            "lines": run.lines,
        },
    }
    write_results("trading", result)


if __name__ == "__main__":
    main()
