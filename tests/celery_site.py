"""A throw-away scale-out site on this machine, for tests and benchmarks: a Dagster instance on a fresh
PostgreSQL database (dagster.celery.yaml), a fresh platform database, a Celery queue of its own on the local
RabbitMQ and `tt workers` reading it (TT_EXECUTOR=celery). Parallel sessions on one broker never take each
other's steps: queue and worker names are unique. Waits are bounded against hangs only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url

from tests.scratch import PG_ADMIN_URL, scratch_postgres
from tt_resources.config import PROJECT_ROOT, Settings

BROKER = Settings.model_fields["tt_celery_broker"].default
READY_PINGS = 300  # pings (1 s each) for the workers to come up: a bound against hangs only
STOP_TIMEOUT_S = 300  # warm shutdown of idle workers: a bound against hangs only


class WorkersDidNotStart(RuntimeError):
    """`tt workers` exited, or its workers did not answer, before they were up; the message has its log."""


@dataclass
class Site:
    """One scale-out site: the environment every process shares and the worker names (`name@host`)."""

    env: dict[str, str]
    home: Path
    workers: tuple[str, ...]

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The site's Dagster instance, opened with the site's DAGSTER_PG_* variables."""
        saved = {name: os.environ.get(name) for name in self.env if name.startswith("DAGSTER_PG_")}
        os.environ.update({name: self.env[name] for name in saved})
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def set_pool(self, pool: str, limit: int) -> None:
        """`dagster instance concurrency set POOL LIMIT` on the site's instance."""
        command = [sys.executable, "-m", "dagster", "instance", "concurrency", "set", pool, str(limit)]
        subprocess.run(command, env=os.environ | self.env, check=True, capture_output=True)


@contextmanager
def celery_site(directory: Path, env: dict[str, str], workers: int = 2) -> Iterator[Site]:
    """A site in `directory` whose processes see `env` plus the site's variables, with `workers` Celery
    workers up (stopped with Ctrl-C on exit). sqlalchemy OperationalError when PostgreSQL is unreachable;
    WorkersDidNotStart when the workers do not come up."""
    with ExitStack() as stack:
        dagster_db = make_url(stack.enter_context(scratch_postgres(PG_ADMIN_URL, "dagster_celery")))
        platform_db = stack.enter_context(scratch_postgres(PG_ADMIN_URL, "tt_celery"))
        home = directory / "dagster_home"
        home.mkdir()
        shutil.copy(PROJECT_ROOT / "dagster.celery.yaml", home / "dagster.yaml")
        tag = uuid.uuid4().hex[:8]
        site_env = {
            **env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": dagster_db.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(dagster_db.port or 5432),
            "DAGSTER_PG_USER": dagster_db.username or "postgres",
            "DAGSTER_PG_PASSWORD": dagster_db.password or "unused-with-trust-auth",
            "DAGSTER_PG_DB": dagster_db.database,
            "DATABASE_URL": platform_db,
            "TT_DATA_DIR": str(directory / "data"),
            "TT_EXECUTOR": "celery",
            "TT_CELERY_QUEUE": f"tt-test-{tag}",
        }
        prefix = f"t{tag}-w"
        site = Site(site_env, home, worker_names(prefix, workers))
        stack.callback(delete_queue, site_env["TT_CELERY_QUEUE"])  # once the workers have stopped
        stack.enter_context(workers_running(site, prefix, directory / "workers.log"))
        yield site


def worker_names(prefix: str, count: int) -> tuple[str, ...]:
    """The node names `tt workers -n COUNT --prefix PREFIX` gives its workers on this host."""
    from celery.utils.nodenames import host_format

    return tuple(host_format(f"{prefix}{i}@%h") for i in range(1, count + 1))


@contextmanager
def workers_running(site: Site, prefix: str, log: Path) -> Iterator[subprocess.Popen]:
    """`tt workers` (its process) in its own session, up once every worker answers a ping; Ctrl-C (SIGINT)
    on exit, then waited for (killed with its process group only if it hangs)."""
    from celery import Celery

    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tt_cli", "workers", "-n", str(len(site.workers)), "--prefix", prefix],
            env=os.environ | site.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers are stopped with it
        )
    app = Celery(broker=BROKER)
    try:
        for _ in range(READY_PINGS):
            if process.poll() is not None:
                raise WorkersDidNotStart(log.read_text())
            replies = app.control.ping(list(site.workers), timeout=1.0)
            if {name for reply in replies for name in reply} == set(site.workers):
                break
        else:
            raise WorkersDidNotStart(f"no answer within {READY_PINGS} pings:\n{log.read_text()}")
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def delete_queue(name: str) -> None:
    """Delete the Celery queue `name` from the broker (a site's queue outlives its workers otherwise)."""
    from kombu import Connection

    with Connection(BROKER) as connection:
        connection.default_channel.queue_delete(name)


def celery_steps(instance: dg.DagsterInstance) -> list[tuple[str, str, str]]:
    """(run id, step key, worker) of every step a Celery worker executed, from the engine event
    dagster-celery records as the worker starts the step ("Executing steps <keys> in celery worker")."""
    steps = []
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.get_dagster_event()
            metadata = event.engine_event_data.metadata
            if "Celery worker" in metadata:
                steps.append((run.run_id, event.step_key, metadata["Celery worker"].value))
    return steps
