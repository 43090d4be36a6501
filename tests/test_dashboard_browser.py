"""The dashboard in a real browser: `streamlit run` on a free loopback port, headless Chromium via Selenium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dashboard_seed import seed_evaluation

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

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_dashboard(database_url: str, log_path: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run `streamlit run tt_dashboard/app.py` against `database_url`; yield its base URL once healthy."""
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
    env = os.environ | {"DATABASE_URL": database_url}
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                        if response.read() == b"ok":
                            break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"streamlit did not start: {log_path.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.3)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


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


@pytest.fixture
def browser_available() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI") == "true":
            pytest.fail(
                "chromium and chromium-driver are required in CI (apt-get install chromium chromium-driver)"
            )
        pytest.skip("chromium / chromedriver not installed")


def test_dashboard_renders_in_headless_chromium(sqlite_engine, tmp_path, browser_available):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seeded = seed_evaluation(sqlite_engine)
    url = sqlite_engine.url.render_as_string(hide_password=False)
    with serve_dashboard(url, tmp_path / "streamlit.log") as base, chromium(tmp_path / "profile") as driver:
        driver.get(base)
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= 3)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Risk metrics"))
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
        for text in (
            "TensorTrade P&L",
            "Out-of-sample",
            "Equity curve",
            "Drawdown",
            "Net worth",
            "Total return",
        ):
            assert text in body, text
        assert seeded.model_id in driver.page_source
        assert "train | test" in driver.page_source

        tab = driver.find_element(By.XPATH, "//button[contains(., 'Data freshness')]")
        tab.click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Partitions that need attention"))
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
