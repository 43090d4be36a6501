"""Benchmark: how fast the dashboard renders, in a real browser on a demo-like database and, with AppTest, for
100,000-step episodes.

Browser (`streamlit run` + headless Chromium via Selenium, as tests/test_dashboard_browser.py drives them), on a
database like `make demo`'s (25 watchlist symbols, a 1d evaluation of 2 test windows after ~4 years of training
bars, a logged training episode; the full watchlist's partitions in the freshness table), or on an existing
database given with --database-url (e.g. make demo's `sqlite:///data/tt.sqlite`):
- `cold_first_render_seconds`: the first page load after the server started (pays the server's imports);
- `first_render_seconds`: median page load of a new browser session on the running server (what a user
  opening the dashboard waits for), until the KPIs, the Performance tab's three charts and risk tables are
  drawn; `first_render_complete_seconds`: until the script has also filled the other tabs;
- `section_switch_seconds`: per section, the click on its tab until that section is drawn (first visit and
  median of later visits); `max_section_switch_seconds` is the slowest of all.
AppTest (no browser): `render_seconds_100k_steps` is the median script run of the default page on one 15m
window of 100,000 steps for the agent and the baselines (6 symbols; 2.4 M holdings rows).
Targets (issue 18): first render <= 3 s, section switches <= 1 s. Writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
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
from test_dashboard_browser import CHROMEDRIVER, CHROMIUM, chromium, serve_dashboard  # noqa: E402

from tt_resources.db.engine import create_engine  # noqa: E402
from tt_resources.db.migrate import upgrade  # noqa: E402
from tt_resources.watchlist import load_watchlist  # noqa: E402

STEPS = 100_000
RUNS = 5
DEMO_SYMBOLS = 25  # tt_cli.demo.DEFAULT_SYMBOLS
SECTIONS = {  # section -> text that shows it is drawn
    "Holdings & attribution": "Weights over time",
    "Trades": "Largest trades",
    "Data freshness": "Partitions",
    "Performance": "Risk metrics per test window",
}
READY_JS = """
const [needle, charts, finished] = arguments;
if (finished && document.querySelector("[data-testid='stStatusWidget']")) return false;  // script running
const fresh = [...document.querySelectorAll("[data-testid='stElementContainer']")]
    .filter(e => e.getAttribute("data-stale") !== "true");
const text = fresh.map(e => e.innerText).join("\\n");
const drawn = document.querySelectorAll(".js-plotly-plot .main-svg").length;
return text.includes(needle) && drawn >= charts;
"""


def seed_demo_like(url: str) -> float:
    """A database like make demo's; returns the seconds seeding took."""
    engine = create_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    symbols = load_watchlist(limit=DEMO_SYMBOLS).symbols
    seed_evaluation(engine, symbols=symbols, train_steps=1_000, windows=2, steps_per_window=112)
    engine.dispose()
    return time.perf_counter() - started


def until_ready(driver, needle: str, charts: int = 0, finished: bool = True, timeout: float = 120) -> None:
    """Wait until `needle` shows in the page's visible, current (not stale) elements with `charts` plotly
    charts drawn, and (`finished`) no script runs."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script(READY_JS, needle, charts, finished)
    )


def load_page(driver, base: str) -> tuple[float, float]:
    """A new session: seconds until the default view (KPIs, the Performance tab's charts and risk tables) is
    drawn, and until the script has also filled the other tabs."""
    started = time.perf_counter()
    driver.get(base)
    until_ready(driver, "Risk metrics per test window", charts=3, finished=False)
    drawn = time.perf_counter() - started
    until_ready(driver, "Risk metrics per test window", charts=3)
    return drawn, time.perf_counter() - started


def switch(driver, section: str) -> float:
    """Click a section's tab; seconds until it is drawn."""
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.XPATH, f"//*[@role='tab'][normalize-space()='{section}']")
    started = time.perf_counter()
    button.click()
    until_ready(driver, SECTIONS[section])
    return time.perf_counter() - started


def browser_figures(url: str, tmp: Path) -> dict:
    """Page loads and section switches of the dashboard on `url` in headless Chromium."""
    with serve_dashboard(url, tmp / "streamlit.log") as base, chromium(tmp / "profile") as driver:
        cold, cold_complete = load_page(driver, base)
        loads, completes = zip(*(load_page(driver, base) for _ in range(RUNS)), strict=True)
        first_visit = {section: switch(driver, section) for section in SECTIONS}
        later = {section: [] for section in SECTIONS}
        for _ in range(RUNS):
            for section in SECTIONS:
                later[section].append(switch(driver, section))
    switches = {
        section: {"first": round(first_visit[section], 3), "median": round(statistics.median(t), 3)}
        for section, t in later.items()
    }
    return {
        "cold_first_render_seconds": round(cold, 3),
        "cold_complete_seconds": round(cold_complete, 3),
        "first_render_seconds": round(statistics.median(loads), 3),
        "first_render_max_seconds": round(max(loads), 3),
        "first_render_complete_seconds": round(statistics.median(completes), 3),
        "section_switch_seconds": switches,
        "max_section_switch_seconds": round(max(max(first_visit.values()), *map(max, later.values())), 3),
    }


def points_sent(at) -> int:
    """Number of x values across every plotly trace on the page (what the browser has to draw)."""
    total = 0
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec)["data"]:
            x = trace.get("x", [])
            total += len(x) if isinstance(x, list) else 0
    return total


def long_episode_figures(tmp: Path) -> dict:
    """AppTest script runs of the default page on 100,000-step episodes."""
    from streamlit.testing.v1 import AppTest

    url = f"sqlite:///{tmp / 'long.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    seed_evaluation(engine, timeframe="15m", train_steps=500, windows=1, steps_per_window=STEPS)
    seed_seconds = time.perf_counter() - started
    engine.dispose()
    os.environ["DATABASE_URL"] = url
    at = AppTest.from_file(str(ROOT / "tt_dashboard" / "app.py"), default_timeout=600)
    at.run()
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        at.run()
        timings.append(time.perf_counter() - started)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
    return {
        "render_seconds_100k_steps": round(statistics.median(timings), 3),
        "steps_per_episode": STEPS,
        "charts": len(at.get("plotly_chart")),
        "points_sent": points_sent(at),
        "seed_seconds_100k_steps": round(seed_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="measure this database instead of a seeded demo-like one")
    parser.add_argument("--skip-long", action="store_true", help="skip the 100,000-step AppTest figure")
    args = parser.parse_args()
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        sys.exit("bench/dashboard.py: chromium and chromedriver are required (scripts/ensure_services.sh)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        url = args.database_url or f"sqlite:///{tmp / 'demo.sqlite'}"
        result = {
            "database": "given" if args.database_url else "demo-like (seeded)",
            "backend": url.split(":")[0],
        }
        if not args.database_url:
            result["seed_seconds"] = round(seed_demo_like(url), 1)
        result |= browser_figures(url, tmp)
        if not args.skip_long:
            result |= long_episode_figures(tmp)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    write_results("dashboard", result)


if __name__ == "__main__":
    main()
