"""`make dev` as a user runs it: on a temporary DAGSTER_HOME it starts the webserver without Dagster's misleading
"will not be used" note or a beta/preview/supersession warning, and a signal stops it with every process it
started, also when it was started in the background by a non-interactive shell (SIGINT ignored)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("will not be used", "BetaWarning", "PreviewWarning", "SupersessionWarning")
START_BOUND = 600.0  # seconds, against a hang only (a loaded 2-core machine starts the services in ~60 s)
STOP_BOUND = 120.0

pytestmark = pytest.mark.slow


def like_a_background_job() -> None:
    """What `make dev &` in a non-interactive shell gets: SIGINT ignored (POSIX), in its own session here so
    the test can signal the group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def session(leader: int) -> list[psutil.Process]:
    """Live processes of the session led by `leader` (make and everything it started)."""
    out = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == leader and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return out


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda make: os.killpg(make.pid, signal.SIGINT), id="ctrl-c-to-the-process-group"),
        pytest.param(lambda make: make.send_signal(signal.SIGTERM), id="sigterm-to-make"),
    ],
)
def test_make_dev_serves_quietly_and_a_signal_stops_every_process(tmp_path, stop):
    port = free_port()
    log = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONWARNINGS", "MAKEFLAGS")}
    env.update(DAGSTER_HOME=str(tmp_path / "dagster_home"), TT_DATA_DIR=str(tmp_path / "data"))
    with log.open("w") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "dev", f"DEV_ARGS=--port {port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=like_a_background_job,
        )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/server_info", make, log, bound=START_BOUND)
        started = session(make.pid)
        assert any("dagster_webserver" in " ".join(p.cmdline()) for p in started)
        stop(make)
        _, alive = psutil.wait_procs(started, timeout=STOP_BOUND)
        assert alive == [], [" ".join(p.cmdline())[:120] for p in alive]
        assert session(make.pid) == []  # nor any started after the webserver answered
    finally:
        for process in session(make.pid):
            process.kill()
        make.wait(timeout=STOP_BOUND)
    output = log.read_text()
    assert "Serving dagster-webserver" in output
    assert [line for line in output.splitlines() if any(word in line for word in NOISE)] == []
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()  # the project's instance settings were used
