"""`tt workers`: start Celery workers for the code location and keep them in the foreground until Ctrl-C.

Each worker is a `celery -A tt_assets.worker worker` process named `<prefix><i>@<host>` reading the queue
TT_CELERY_QUEUE on the broker TT_CELERY_BROKER, with this environment (DATABASE_URL, DAGSTER_HOME, TT_*,
IB_*), so it runs steps exactly as the run would. Ctrl-C (or SIGTERM) asks every worker for a warm shutdown
(running steps finish, queued ones stay queued); a second Ctrl-C stops them at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import click

POLL_S = 0.5


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
    from tt_assets.executors import broker_shown, worker_app
    from tt_resources import config

    queue = config.settings().tt_celery_queue
    with worker_app().connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as exc:
            raise click.ClickException(f"broker {broker_shown()} unreachable: {exc}") from None
    names = [f"{prefix}{i}@%h" for i in range(1, count + 1)]
    click.echo(f"{count} Celery worker(s) on queue {queue!r} of {broker_shown()}; Ctrl-C stops them")
    command = [sys.executable, "-m", "celery", "-A", "tt_assets.worker", "worker", "-Q", queue]
    options = ["-c", str(concurrency), "--prefetch-multiplier=1", "-l", loglevel]
    processes = {name: subprocess.Popen([*command, "-n", name, *options]) for name in names}
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(signum, _interrupt)
    exited: dict[str, int] = {}
    try:
        while not exited:
            time.sleep(POLL_S)
            exited = {n: p.returncode for n, p in processes.items() if p.poll() is not None}
    except KeyboardInterrupt:
        pass
    _stop(processes)
    if exited:
        name, code = next(iter(exited.items()))
        raise click.ClickException(f"worker {name} exited with code {code}; stopped the others")


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
