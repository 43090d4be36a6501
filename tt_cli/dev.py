"""`tt dev` (= `make dev`): `dagster dev` on the project's persistent instance, quiet, and stoppable.

- Instance: DAGSTER_HOME is prepared as `tt demo` prepares it (tt_assets.launch.ensure_dagster_home: the
  project's dagster.yaml copied there), so the UI shows the demo's runs. Dagster warns that a dagster.yaml in
  the working directory "will not be used" when it is not DAGSTER_HOME itself; the services therefore run in
  DAGSTER_HOME (TT_DATA_DIR is made absolute first, so a relative one keeps its meaning).
- Quiet: `dagster dev` runs in this process, after `tt`'s quiet.choose(), so its own SupersessionWarning is
  filtered like the code location's notices; `tt --verbose dev` shows them.
- Stoppable: Dagster maps SIGTERM to whatever handles SIGINT. A process started in the background by a
  non-interactive shell (`make dev &`) inherits SIGINT ignored, which made both signals no-ops; SIGINT gets
  Python's default handler back here, so Ctrl-C and SIGTERM shut the webserver, daemon and code server down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import click

from tt_cli.common import BadInput, check_dagster_settings
from tt_resources.urls import host_problem

STOP_GRACE_S = 10.0  # seconds a server left running gets between SIGTERM and SIGKILL


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--host", "-h", default="127.0.0.1", show_default=True, help="Address the webserver listens on."
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    help="Port of the webserver.",
)
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(host: str, port: int, dagster_args: tuple[str, ...]) -> None:
    """Dagster's UI, daemon and code server on the platform's instance (extra arguments go to `dagster dev`).

    --host/--port are checked by listening there once before anything starts (the webserver would otherwise
    hang or die while the daemon runs on); whenever `dagster dev` ends, every process it started is
    stopped."""
    from tt_assets.dagster_fence import run_dagster_cli
    from tt_assets.launch import ensure_dagster_home
    from tt_resources.config import PROJECT_ROOT, data_dir

    check_listenable(host, port)
    check_dagster_settings()
    os.environ["TT_DATA_DIR"] = str(data_dir().resolve())
    home = ensure_dagster_home()
    os.chdir(home)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    try:
        run_dagster_cli(["dev", "-w", workspace, "-h", host, "-p", str(port), *dagster_args])
    finally:
        stop_descendants(os.getpid())


def check_listenable(host: str, port: int) -> None:
    """BadInput naming --host/--port when a server cannot listen on (host, port): not a host, not an
    address of this machine, a port in use or not permitted."""
    problem = host_problem(host)
    if problem is not None:
        raise BadInput(f"--host: {problem}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the webserver binds
            probe.bind(address)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host}: cannot be resolved ({exc.strerror})") from None
    except OSError as exc:
        raise BadInput(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None


def stop_descendants(pid: int) -> None:
    """SIGTERM every process `pid` started (children and theirs), SIGKILL those still alive after
    STOP_GRACE_S, and wait for them (at most STOP_GRACE_S again): a server that hung or outlived
    `dagster dev` is never left behind. Linux (/proc); elsewhere
    nothing to do."""
    pids = _descendants(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for child in pids:
            _signal(child, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [child for child in pids if _alive(child)]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])  # after the command name: state, ppid
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent reaps it


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
