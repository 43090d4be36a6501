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
  median of later visits); `max_section_switch_seconds` is the slowest of all;
- `after_registration_first_render_seconds`: a new session right after NEW_MODELS more evaluated models were
  registered (as a retraining writes them; ROUNDS times, median and max): the default page then shows the
  newest model, whose answers nobody has asked for yet; `after_registration_known_model_seconds`: a new
  session on the model shown before (its answers stay cached: other models' rows do not invalidate them).
Page loads also report the CPU seconds the server and the browser spent (`*_cpu_seconds`): on this shared
2-core machine the wall times grow with the load average, reported as `load_average_1m` (before and after).
AppTest (no browser): `render_seconds_100k_steps` is the median script run of the default page on one 15m
window of 100,000 steps for the agent and the baselines (6 symbols; 2.4 M holdings rows).
Targets (issues 18 and 24): first render <= 3 s, also right after new models were registered; <= 10 s on a
cold server; section switches <= 1 s (`targets`). Writes bench/results/dashboard.json.
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
from tt_resources.terms import ORACLE, POLICY_NAMES  # noqa: E402
from tt_resources.watchlist import load_watchlist  # noqa: E402

STEPS = 100_000
RUNS = 5
DEMO_SYMBOLS = 25  # tt_cli.demo.DEFAULT_SYMBOLS
NEW_MODELS = 2  # models registered before each after-registration page load
ROUNDS = 2
TARGETS = {
    "first_render_seconds": 3.0,
    "after_registration_first_render_seconds": 3.0,
    "cold_first_render_seconds": 10.0,
    "max_section_switch_seconds": 1.0,
}
DEMO_SEED = {"train_steps": 1_000, "windows": 2, "steps_per_window": 112}  # a demo-like evaluation
DEMO_MODEL = "ppo-1d-seed"
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
    seed_evaluation(engine, symbols=symbols, model_id=DEMO_MODEL, **DEMO_SEED)
    engine.dispose()
    return time.perf_counter() - started


def register_models(url: str, first: int, count: int) -> None:
    """`count` more evaluated models (retrained-<first>, ...) on the demo's symbols, as a retraining writes
    them: each newer than the last, so the latest is the dashboard's default."""
    engine = create_engine(url)
    symbols = load_watchlist(limit=DEMO_SYMBOLS).symbols
    for k in range(first, first + count):
        seed_evaluation(
            engine, symbols=symbols, model_id=f"retrained-{k}", seed=k, with_prices=False, **DEMO_SEED
        )
    engine.dispose()


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process's children: (the streamlit server, the browser)."""
    import psutil

    server = browser = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            used = child.cpu_times()
            is_server = "streamlit" in " ".join(child.cmdline())
        except psutil.Error:  # a browser helper that just exited
            continue
        if is_server:
            server += used.user + used.system
        else:
            browser += used.user + used.system
    return server, browser


def timed_load(driver, address: str) -> dict[str, float]:
    """load_page of `address` with the CPU seconds the server and the browser spent on it."""
    server, browser = cpu_seconds()
    drawn, complete = load_page(driver, address)
    server_after, browser_after = cpu_seconds()
    return {
        "drawn": drawn,
        "complete": complete,
        "server_cpu": server_after - server,
        "browser_cpu": browser_after - browser,
    }


def summary(name: str, loads: list[dict[str, float]]) -> dict:
    """Median figures of `loads` as <name>_seconds, <name>_max_seconds, <name>_complete_seconds and the
    CPU seconds."""
    median = {key: round(statistics.median(load[key] for load in loads), 3) for key in loads[0]}
    return {
        f"{name}_seconds": median["drawn"],
        f"{name}_max_seconds": round(max(load["drawn"] for load in loads), 3),
        f"{name}_complete_seconds": median["complete"],
        f"{name}_server_cpu_seconds": median["server_cpu"],
        f"{name}_browser_cpu_seconds": median["browser_cpu"],
    }


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


def browser_figures(url: str, tmp: Path, registrations: bool) -> dict:
    """Page loads and section switches of the dashboard on `url` in headless Chromium; with `registrations`,
    also the page loads right after new models were registered."""
    with serve_dashboard(url, tmp / "streamlit.log") as base, chromium(tmp / "profile") as driver:
        driver.get("about:blank")  # the browser's own start is not the page's
        cold = timed_load(driver, base)
        loads = [timed_load(driver, base) for _ in range(RUNS)]
        first_visit = {section: switch(driver, section) for section in SECTIONS}
        later = {section: [] for section in SECTIONS}
        for _ in range(RUNS):
            for section in SECTIONS:
                later[section].append(switch(driver, section))
        after, known = [], []
        for round_ in range(ROUNDS if registrations else 0):
            register_models(url, round_ * NEW_MODELS, NEW_MODELS)
            after.append(timed_load(driver, base))  # the newest model: nothing cached for it yet
            known.append(timed_load(driver, f"{base}/?model={DEMO_MODEL}"))
    switches = {
        section: {"first": round(first_visit[section], 3), "median": round(statistics.median(t), 3)}
        for section, t in later.items()
    }
    result = {
        "cold_first_render_seconds": round(cold["drawn"], 3),
        "cold_complete_seconds": round(cold["complete"], 3),
        "cold_server_cpu_seconds": round(cold["server_cpu"], 3),
        "cold_browser_cpu_seconds": round(cold["browser_cpu"], 3),
        **summary("first_render", loads),
        "section_switch_seconds": switches,
        "max_section_switch_seconds": round(max(max(first_visit.values()), *map(max, later.values())), 3),
    }
    if after:
        result |= {"new_models_per_round": NEW_MODELS, "rounds": ROUNDS}
        result |= summary("after_registration_first_render", after)
        result |= summary("after_registration_known_model", known)
    return result


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
    policies = [p for p in POLICY_NAMES if p != ORACLE]  # perfect foresight: net worth overflows here
    seed_evaluation(
        engine, timeframe="15m", train_steps=500, windows=1, steps_per_window=STEPS, policies=policies
    )
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
        result["load_average_1m_before"] = round(os.getloadavg()[0], 2)
        result |= browser_figures(url, tmp, registrations=not args.database_url)
        if not args.skip_long:
            result |= long_episode_figures(tmp)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    result["targets"] = TARGETS
    result["met"] = {name: result[name] <= limit for name, limit in TARGETS.items() if name in result}
    write_results("dashboard", result)


if __name__ == "__main__":
    main()
