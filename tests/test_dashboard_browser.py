"""The dashboard in a real browser: `streamlit run` on a free loopback port, headless Chromium via Selenium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from dashboard_seed import DAGSTER_RUN_ID, INITIAL_NET_WORTH, SYMBOLS, SeededEvaluation, seed_evaluation
from serving import free_port, stop, wait_until_serving

from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import upgrade
from tt_resources.db.schema import episodes, evals
from tt_resources.terms import EQUAL_WEIGHT, METRICS, ORACLE, POLICY_LABELS, POLICY_NAMES
from tt_resources.timeframes import TIMEFRAME_NAMES

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1400",
)

UNFETCHED = "ZZZ"  # on the test watchlist, never fetched
DAGSTER_URL = "http://dagster.example:3000"
DOLLARS = r"\$\d{1,3}(,\d{3})*\.\d{2}"  # e.g. $110,369.55
WINDOW_HEADER = ("Fold", "Seed", "Test from", "Test to", "Policy", *(m.label for m in METRICS))
PARTITIONS_HEADER = (
    "Symbol",
    "Timeframe",
    "Status",
    "Last bar (UTC)",
    "Bars",
    "Coverage",
    "Last fetch",
    "Message",
)

pytestmark = pytest.mark.slow


@contextmanager
def serve_dashboard(
    database_url: str, log_path: Path, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run `streamlit run tt_dashboard/app.py` against `database_url` (and `env`); yield its base URL once
    healthy."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "tt_dashboard" / "app.py"),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    env = os.environ | (env or {}) | {"DATABASE_URL": database_url}
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(
                f"{base}/_stcore/health", server, log_path, bound=timeout, accept=lambda body: body == b"ok"
            )
            yield base
        finally:
            stop(server, grace=10)


@contextmanager
def chromium(profile: Path):
    """Headless Chromium driven by Selenium with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def browser_required() -> bool:
    """`make test` (TT_REQUIRE_BROWSER=1, after scripts/ensure_services.sh installed chromium) and CI fail when
    the browser is missing; elsewhere the browser tests skip."""
    return os.environ.get("CI") == "true" or os.environ.get("TT_REQUIRE_BROWSER") == "1"


def require_browser() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if browser_required():
            pytest.fail(
                "chromium and chromium-driver are required (scripts/ensure_services.sh installs them: "
                "apt-get install chromium chromium-driver)"
            )
        pytest.skip("chromium / chromedriver not installed")


@dataclass(frozen=True)
class Served:
    """A dashboard served on a seeded SQLite database and a browser on it."""

    base: str
    driver: object
    seeded: SeededEvaluation
    url: str  # the database's


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """One seeded database (the watchlist: the seeded symbols and UNFETCHED), one `streamlit run` and one
    headless Chromium for the module's tests."""
    require_browser()
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'tt.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    seeded = seed_evaluation(engine)
    engine.dispose()
    watchlist = tmp / "watchlist.csv"
    watchlist.write_text("symbol\n" + "\n".join([*SYMBOLS, UNFETCHED]) + "\n")
    env = {"TT_WATCHLIST": str(watchlist), "TT_DAGSTER_URL": DAGSTER_URL}
    with serve_dashboard(url, tmp / "streamlit.log", env=env) as base, chromium(tmp / "profile") as driver:
        yield Served(base, driver, seeded, url)


def open_page(served: Served, query: str = "") -> None:
    """Load the dashboard in a fresh session and wait until the equity chart and the KPIs are drawn."""
    from selenium.webdriver.common.by import By

    driver = served.driver
    driver.get(served.base + query)
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= 3)
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricValue']"))


def wait(driver, seconds: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds)


def choose(driver, label: str, option: str) -> None:
    """Pick `option` (its shown text) in the selectbox labelled `label`."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"input[role='combobox'][aria-label='{label}']").click()
    wait(driver).until(
        lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "[role='option']") if o.text.strip() == option]
    )[0].click()


GRIDS_JS = """
return [...document.querySelectorAll("[data-testid='stDataFrame'] table[role='grid']")].map(t => ({
    header: [...t.querySelectorAll("thead th")].map(e => e.textContent),
    rows: [...t.querySelectorAll("tbody tr")].map(r => [...r.querySelectorAll("td")].map(e => e.textContent)),
}));
"""


def grids(driver) -> list[pd.DataFrame]:
    """Every st.dataframe on the page as a frame of its cells' text, read in one script so a re-render cannot
    interleave (the grid's accessible table: raw values, the rows in view)."""
    return [pd.DataFrame(g["rows"], columns=g["header"]) for g in driver.execute_script(GRIDS_JS)]


def grid_with(driver, *columns: str) -> pd.DataFrame:
    """The first grid whose header is `columns`, once it is on the page."""
    found = wait(driver).until(lambda d: [g for g in grids(d) if list(g.columns) == list(columns)])
    return found[0]


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_dashboard_renders_in_headless_chromium(served, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    open_page(served)
    driver = served.driver
    expected = ("TensorTrade P&L", "Out-of-sample", "Equity curve", "Drawdown", "Net worth", "Total return")
    # Streamlit draws the page element by element (the charts' titles last): wait until every text is there
    try:
        wait(driver).until(lambda d: all(text in body_text(d) for text in (*expected, "Risk metrics")))
    except TimeoutException:
        body = body_text(driver)
        pytest.fail(f"never shown: {[text for text in expected if text not in body]}")
    driver.save_screenshot(str(tmp_path / "dashboard.png"))
    assert "train | test" in driver.page_source
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000


def test_kpis_show_dollars_with_cents(served):
    from selenium.webdriver.common.by import By

    open_page(served)
    labels = [e.text for e in served.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricLabel']")]
    shown = [e.text for e in served.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMetricValue']")]
    kpis = dict(zip(labels, shown, strict=True))
    assert re.fullmatch(DOLLARS, kpis["Net worth"]), kpis
    assert re.fullmatch(DOLLARS, kpis["Costs paid"]), kpis


def test_one_test_window_shows_its_risk_metrics(served):
    open_page(served)
    choose(served.driver, "Episode", "fold 1 test · PPO agent (40 bars)")
    wait(served.driver).until(lambda d: "Risk metrics: test window 1" in body_text(d))
    table = grid_with(served.driver, *WINDOW_HEADER)
    assert table["Fold"].tolist() == ["1"] * len(POLICY_NAMES)
    assert sorted(table["Policy"]) == sorted(POLICY_LABELS[p] for p in POLICY_NAMES)


def test_freshness_lists_every_registered_partition_in_watchlist_order(served):
    from selenium.webdriver.common.by import By

    open_page(served)
    served.driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Data freshness']").click()
    table = grid_with(served.driver, *PARTITIONS_HEADER)
    expected = [(s, t) for t in TIMEFRAME_NAMES for s in (*SYMBOLS, UNFETCHED)]
    assert list(table[["Symbol", "Timeframe"]].itertuples(index=False, name=None)) == expected
    assert table.set_index(["Symbol", "Timeframe"]).loc[(UNFETCHED, "1d"), "Status"] == "no data"


def test_the_model_links_back_to_its_dagster_run(served):
    from selenium.webdriver.common.by import By

    open_page(served, f"/?model={served.seeded.model_id}")
    hrefs = [a.get_attribute("href") for a in served.driver.find_elements(By.CSS_SELECTOR, "a[href]")]
    assert f"{DAGSTER_URL}/runs/{DAGSTER_RUN_ID}" in hrefs
    assert f"{DAGSTER_URL}/assets/ppo_model" in hrefs


def shown_kpis(driver) -> dict[str, tuple[str, str]]:
    """KPI label -> (value, delta text; "" without a delta), read in one script."""
    return {
        k["label"]: (k["value"], k["delta"])
        for k in driver.execute_script(
            """return [...document.querySelectorAll("[data-testid='stMetric']")].map(m => ({
                label: m.querySelector("[data-testid='stMetricLabel']").innerText.trim(),
                value: m.querySelector("[data-testid='stMetricValue']").innerText.trim(),
                delta: (m.querySelector("[data-testid='stMetricDelta']") || {innerText: ""}).innerText.trim(),
            }));"""
        )
    }


def stored_kpis(url: str, policy: str, fold: int) -> dict[str, str]:
    """The KPIs of `policy`'s test episode of `fold` as the dashboard formats them, from tt_eval (the fold's
    row) and tt_episode (its final net worth)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(evals).where(evals.c.policy == policy, evals.c.fold == fold, evals.c.seed == -1)
            ).one()
            net_worth = conn.execute(
                sa.select(episodes.c.final_net_worth).where(episodes.c.episode_id == row.episode_id)
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "Net worth": f"${net_worth:,.2f}",
        "Total return": f"{row.total_return:.2%}",
        "Sharpe (ann.)": f"{row.sharpe:.2f}",
        "Max drawdown": f"{row.max_drawdown:.2%}",
        "Costs paid": f"${row.costs * INITIAL_NET_WORTH:,.2f}",
    }


def test_a_baseline_episode_shows_that_baselines_numbers_and_turnover_in_percent(served):
    """Issue 24, observations 2 and 3 in the browser: picking the equal-weight episode of a test window shows
    equal weight's KPIs from tt_eval/tt_episode (not the oracle's, the first policy on that window), with no
    edge over itself; the turnover axis of its activity chart reads in percent, not dollars."""
    from selenium.webdriver.common.by import By

    open_page(served)
    driver = served.driver
    fold = 1
    label = f"fold {fold} test · {POLICY_LABELS[EQUAL_WEIGHT]} ({served.seeded.steps_per_window} bars)"
    choose(driver, "Episode", label)
    wait(driver).until(lambda d: f"Risk metrics: test window {fold}" in body_text(d))
    expected = stored_kpis(served.url, EQUAL_WEIGHT, fold)
    oracle = stored_kpis(served.url, ORACLE, fold)
    assert expected["Total return"] != oracle["Total return"]  # the seed tells the two apart
    shown = shown_kpis(driver)  # drawn before the window's risk table
    assert {label: value for label, (value, _) in shown.items()} == expected
    assert shown["Total return"][1] == ""  # equal weight is not compared with itself

    driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Holdings & attribution']").click()
    ticks = wait(driver).until(
        lambda d: d.execute_script(
            """const plot = [...document.querySelectorAll(".js-plotly-plot")].find(
                   p => (p.querySelector(".gtitle") || {}).textContent === "Turnover and costs over time");
               return plot && [...plot.querySelectorAll(".y2tick text")].map(t => t.textContent);"""
        )
    )
    assert ticks and all(re.fullmatch(r"\d+(\.\d+)?%", t) for t in ticks), ticks
