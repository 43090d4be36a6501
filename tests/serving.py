"""Local servers the tests start (Streamlit, dagster-webserver, `make dev`): a free port, waiting until one
answers, stopping one. Waits are bounded against hangs only; a server that exits early fails at once."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    url: str,
    server: subprocess.Popen,
    log: Path,
    *,
    bound: float,
    accept: Callable[[bytes], bool] = lambda body: True,
    poll: float = 0.5,
) -> None:
    """Return once GET `url` answers with a body `accept` takes; AssertionError with the log's tail when
    `server` exits first or `bound` seconds pass (a hang)."""
    deadline = time.monotonic() + bound
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if accept(response.read()):
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")
        time.sleep(poll)


def stop(server: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    server.terminate()
    try:
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
