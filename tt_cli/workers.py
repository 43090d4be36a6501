"""`tt workers`: start Celery workers for the code location and keep them in the foreground until Ctrl-C.

Each worker is a `celery -A tt_assets.worker worker` process named `<prefix><i>@<host>` reading the queue
TT_CELERY_QUEUE on the broker TT_CELERY_BROKER, with this environment (DATABASE_URL, DAGSTER_HOME, TT_*,
IB_*), so it runs steps exactly as the run would. A worker that dies (killed, crashed) is started again under
its name, one line saying so; the others keep running (the broker delivers its unacknowledged step again). A
worker that dies MAX_RESTARTS times in a row, each time within MIN_UPTIME_S of its start (a crash loop), is
left down, one line saying so, and the others go on. Ctrl-C (or SIGTERM) asks every worker for a warm shutdown (running steps finish, queued ones stay
queued); a second Ctrl-C stops them at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import click

POLL_S = 0.5
MAX_RESTARTS = 5  # deaths of one worker in a row, each soon after its start, before it is left down
MIN_UPTIME_S = 60.0  # a worker that dies sooner after its start counts towards a crash loop


@click.command()
@click.option("-n", "--count", default=2, show_default=True, type=click.IntRange(1), help="workers to start")
@click.option(
    "-c",
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="steps each worker runs at once (one process each)",
)
@click.option("--prefix", default="w", show_default=True, help="worker names: <prefix>1@<host>, ...")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery's log level")
def workers(count: int, concurrency: int, prefix: str, loglevel: str) -> None:
    """Start COUNT Celery workers for the `celery` executor (TT_EXECUTOR=celery); Ctrl-C stops them."""
    from celery.utils.nodenames import host_format

    from tt_assets.executors import BrokerUnreachable, broker_shown, check_broker
    from tt_resources import config

    queue = config.settings().tt_celery_queue
    try:
        check_broker()
    except BrokerUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{count} Celery worker(s) on queue {queue!r} of {broker_shown()}; Ctrl-C stops them")
    command = [sys.executable, "-m", "celery", "-A", "tt_assets.worker", "worker", "-Q", queue]
    options = ["-c", str(concurrency), "--prefetch-multiplier=1", "-l", loglevel]

    started: dict[str, float] = {}

    def start(name: str) -> subprocess.Popen:
        started[name] = time.monotonic()
        return subprocess.Popen([*command, "-n", name, *options])

    names = [host_format(f"{prefix}{i}@%h") for i in range(1, count + 1)]
    processes = {name: start(name) for name in names}
    crashes = dict.fromkeys(names, 0)  # deaths in a row, each within MIN_UPTIME_S of the start
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(signum, _interrupt)
    try:
        while processes:
            time.sleep(POLL_S)
            for name, process in list(processes.items()):
                if process.poll() is None:
                    continue
                lived = time.monotonic() - started[name]
                crashes[name] = crashes[name] + 1 if lived < MIN_UPTIME_S else 1
                if crashes[name] < MAX_RESTARTS:
                    processes[name] = start(name)
                    click.echo(f"worker {name} exited with code {process.returncode}; restarted it", err=True)
                else:
                    del processes[name]
                    click.echo(
                        f"worker {name} exited with code {process.returncode} {MAX_RESTARTS} times in a row, "
                        f"each within {MIN_UPTIME_S:.0f} s of its start; left it down, "
                        f"{len(processes)} worker(s) keep running",
                        err=True,
                    )
    except KeyboardInterrupt:
        pass
    _stop(processes)
    if not processes:
        raise click.ClickException(f"every worker was left down after {MAX_RESTARTS} exits in a row")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    """Warm shutdown of every running worker (SIGTERM), waiting for them; a second Ctrl-C kills them."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    try:
        for process in processes.values():
            process.wait()
    except KeyboardInterrupt:
        for process in processes.values():
            process.kill()
            process.wait()
