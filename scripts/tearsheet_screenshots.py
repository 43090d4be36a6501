"""Screenshots of the tear sheet for the docs: the dashboard's "Tear sheet" tab (docs/tearsheet.png) and the top
of the HTML report (docs/tearsheet_report.png), on a demo-like seeded database (tests/dashboard_seed.py) in a
temporary directory, in headless Chromium.

    .venv/bin/python scripts/tearsheet_screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from dashboard import READY_JS  # noqa: E402 (bench/dashboard.py)
from dashboard_seed import seed_evaluation  # noqa: E402
from test_dashboard_browser import chromium, serve_dashboard  # noqa: E402

from tt_resources.db.engine import create_engine  # noqa: E402
from tt_resources.db.migrate import upgrade  # noqa: E402
from tt_resources.watchlist import load_watchlist  # noqa: E402

DOCS = ROOT / "docs"


def wait(driver, needle: str, charts: int = 0, timeout: float = 180) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(READY_JS, needle, charts, True)
    )


def main() -> None:
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TT_DATA_DIR"] = str(tmp)
        url = f"sqlite:///{tmp / 'tt.sqlite'}"
        engine = create_engine(url)
        upgrade(engine)
        symbols = load_watchlist(limit=25).symbols
        seeded = seed_evaluation(
            engine, symbols=symbols, train_steps=400, windows=3, steps_per_window=80, seeds=(0, 1)
        )
        from tt_pipeline.tearsheet_report import write_report

        report = write_report(engine, seeded.model_id, "screenshot")
        with chromium(tmp / "profile") as driver:
            driver.get(report.as_uri())
            wait_report = time.monotonic() + 60
            while not driver.execute_script("return document.querySelectorAll('.main-svg').length >= 4"):
                if time.monotonic() > wait_report:
                    raise SystemExit("the report's figures did not draw")
                time.sleep(0.2)
            driver.save_screenshot(str(DOCS / "tearsheet_report.png"))
        with serve_dashboard(url, tmp / "streamlit.log") as base, chromium(tmp / "profile2") as driver:
            driver.get(base)
            wait(driver, "Risk metrics per test window", charts=3)
            driver.find_element(By.XPATH, "//*[@role='tab'][normalize-space()='Tear sheet']").click()
            driver.find_element(By.XPATH, "//*[contains(text(), 'Build the tear sheet')]").click()
            wait(driver, "Worst drawdowns", charts=8)
            driver.set_window_size(1600, 2300)
            heading = driver.find_element(By.XPATH, "//*[@role='tablist']")
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
            time.sleep(1.0)
            driver.save_screenshot(str(DOCS / "tearsheet.png"))
    print(f"wrote {DOCS / 'tearsheet.png'} and {DOCS / 'tearsheet_report.png'}")


if __name__ == "__main__":
    main()
