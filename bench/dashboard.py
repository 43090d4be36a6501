"""Benchmark: how long the dashboard's default page takes to render an evaluation with 100,000-step episodes.

Seeds an embedded SQLite database with one 15m walk-forward window of STEPS steps for the agent and the three
baselines (6 symbols; 2.4 M holdings rows), then renders the default page (out-of-sample performance: KPIs,
equity, drawdown, rolling Sharpe, risk metrics) with streamlit's AppTest. `render_seconds_100k_steps` is the
median script run of a session, as the server performs it for every page load or interaction in the browser;
`first_render_seconds` is a fresh AppTest session, which also pays the test harness's own start-up.
Writes bench/results/dashboard.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dashboard_seed import seed_evaluation  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from tt_resources.db.engine import create_engine  # noqa: E402
from tt_resources.db.migrate import upgrade  # noqa: E402

STEPS = 100_000
RUNS = 5


def points_sent(at: AppTest) -> int:
    """Number of x values across every plotly trace on the page (what the browser has to draw)."""
    total = 0
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec)["data"]:
            x = trace.get("x", [])
            total += len(x) if isinstance(x, list) else 0
    return total


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        engine = create_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        seed_evaluation(engine, timeframe="15m", train_steps=500, windows=1, steps_per_window=STEPS)
        seed_seconds = time.perf_counter() - started
        engine.dispose()

        os.environ["DATABASE_URL"] = url
        app = str(ROOT / "tt_dashboard" / "app.py")
        AppTest.from_file(app, default_timeout=600).run()  # pays imports and the exchange calendar build
        at = AppTest.from_file(app, default_timeout=600)
        started = time.perf_counter()
        at.run()
        first = time.perf_counter() - started
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            at.run()
            timings.append(time.perf_counter() - started)
            assert not at.exception, [e.value for e in at.exception]
            assert not at.error, [e.value for e in at.error]
        result = {
            "render_seconds_100k_steps": round(statistics.median(timings), 3),
            "first_render_seconds": round(first, 3),
            "steps_per_episode": STEPS,
            "episodes": 4,
            "charts": len(at.get("plotly_chart")),
            "points_sent": points_sent(at),
            "seed_seconds": round(seed_seconds, 1),
            "backend": "sqlite",
        }
    write_results("dashboard", result)


if __name__ == "__main__":
    main()
