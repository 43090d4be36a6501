"""The evaluation's metadata as a person sees it in Dagster's UI: a real dagster-webserver on an instance where a
tiny ppo_model and its evaluation were materialised, read by headless Chromium without clicking anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from tests.serving import free_port, stop, wait_until_serving
from tests.test_dagster_training import BARS_CONFIG, SYMBOLS, TINY_RL
from tests.test_dashboard_browser import chromium, require_browser
from tt_assets.partitions import range_tags, register_training_timeframe, symbol_ranges

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = "http://dashboard.test:8501"
START_BOUND = 300.0  # seconds, against a hang only

pytestmark = pytest.mark.slow


@pytest.fixture
def trained_instance(tmp_path, monkeypatch) -> tuple[Path, str]:
    """DAGSTER_HOME where market data, a tiny walk-forward ppo_model and its evaluation (1d) were materialised
    through the code location; returns (home, model_id)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name, value in {
        "DAGSTER_HOME": str(home),
        "TT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tt.sqlite'}",
        "TT_SOURCE": "synthetic",
        "TT_DASHBOARD_URL": DASHBOARD,
    }.items():
        monkeypatch.setenv(name, value)
    from tt_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        [key_range] = symbol_ranges(SYMBOLS, "1d")
        job = defs.resolve_job_def
        assert (
            job("market_data_job")
            .execute_in_process(instance=instance, tags=range_tags(key_range), run_config=BARS_CONFIG)
            .success
        )
        register_training_timeframe(instance, "1d")
        trained = job("training_job").execute_in_process(
            instance=instance,
            partition_key="1d",
            run_config={"ops": {"ppo_model": {"config": TINY_RL}}},
        )
        assert trained.success
        [model] = [
            e.event_specific_data.materialization.metadata["model_id"].value
            for e in trained.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key == dg.AssetKey("ppo_model")
        ]
    return home, model


@contextmanager
def webserver(home: Path, log_path: Path) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on `home` and a free port; yields its base URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*command, "-w", str(ROOT / "workspace.yaml")],
            cwd=home,
            env=os.environ | {"DAGSTER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(f"{base}/server_info", server, log_path, bound=START_BOUND)
            yield base
        finally:
            stop(server, grace=30)


def metadata_table(driver, first_header: str) -> list[dict[str, str]]:
    """Rows (header -> cell text) of the table whose first header cell reads `first_header`; [] while it is
    missing or not fully rendered."""
    from selenium.webdriver.common.by import By

    for table in driver.find_elements(By.TAG_NAME, "table"):
        headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, ":scope > thead > tr > th")]
        if headers and headers[0] == first_header:
            rows = [
                [td.text.strip() for td in row.find_elements(By.CSS_SELECTOR, ":scope > td")]
                for row in table.find_elements(By.CSS_SELECTOR, ":scope > tbody > tr")
            ]
            rows = [cells for cells in rows if cells]
            if all(len(cells) == len(headers) for cells in rows):  # else still rendering: the caller waits
                return [dict(zip(headers, cells, strict=True)) for cells in rows]
    return []


def test_evaluation_metadata_reads_formatted_with_an_inline_chart_and_a_dashboard_link(
    trained_instance, tmp_path
):
    require_browser()
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, model_id = trained_instance
    with webserver(home, tmp_path / "webserver.log") as base, chromium(tmp_path / "profile") as driver:
        driver.get(f"{base}/assets/evaluation?view=events&partition=1d")
        wait = WebDriverWait(driver, START_BOUND, ignored_exceptions=(StaleElementReferenceException,))
        rows = wait.until(lambda d: metadata_table(d, "Policy"))
        driver.save_screenshot(str(tmp_path / "evaluation.png"))

        agent = next(r for r in rows if r["Policy"] == "PPO agent")
        assert re.fullmatch(r"-?\d+\.\d %", agent["Total return"]), agent
        assert re.fullmatch(r"-?\d+\.\d\d", agent["Sharpe"]), agent
        assert "Cash" in [r["Policy"] for r in rows]
        assert not re.search(r"\bnan\b", driver.find_element(By.TAG_NAME, "body").text, re.IGNORECASE)

        charts = driver.find_elements(By.CSS_SELECTOR, "img[src^='data:image/svg+xml']")
        assert charts and all(
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", c) > 0
            for c in charts
        )
        assert f"?model={model_id}" in driver.find_element(By.TAG_NAME, "body").text
        # the dashboard's address is the definition's metadata: the setting of the code location shown
        driver.get(f"{base}/assets/evaluation?view=overview")
        wait.until(
            lambda d: f"{DASHBOARD}/" in {a.get_attribute("href") for a in d.find_elements(By.TAG_NAME, "a")}
        )
        # the owner and the bars' freshness policy (its deadline) are on the asset's page
        driver.get(f"{base}/assets/raw_bars?view=overview")
        wait.until(
            lambda d: "Deadline: At 35 minutes past the hour" in d.find_element(By.TAG_NAME, "body").text
        )
        assert "Owners\ntt-platform" in driver.find_element(By.TAG_NAME, "body").text
