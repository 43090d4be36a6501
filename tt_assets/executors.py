"""Where Dagster runs a run's steps (TT_EXECUTOR): Dagster's default executor (the run's own processes), or
dagster-celery's executor, which sends each step to a Celery queue (TT_CELERY_QUEUE) on a RabbitMQ broker
(TT_CELERY_BROKER), where workers started by `tt workers` (on this or other machines) execute it.

The executor and the workers build their Celery configuration here from the same settings, so a step sent
to the queue finds workers configured like the executor. Each worker process takes one step at a time and
acknowledges it when the step ends (`task_acks_late`), so a busy worker holds no queued step that an idle
one could run, and a step whose worker died is delivered again.

Before a run is sent, `wait_for_workers` checks that the broker answers and that a worker consumes the queue
(Celery's `inspect active_queues`), waiting at most TT_CELERY_WAIT_S: a step sent to a queue nobody reads
would wait for ever.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import dagster as dg

from tt_resources import config

if TYPE_CHECKING:
    from celery import Celery

CELERY_BACKEND = "rpc://"  # results travel back to the run over the broker: no second service
CELERY_SETTINGS = {"worker_prefetch_multiplier": 1, "task_acks_late": True}
INSPECT_S = 1.0  # how long one `inspect active_queues` broadcast collects replies


class BrokerUnreachable(RuntimeError):
    """The broker does not answer; the message names it (password masked) and the cause, in one line."""


class NoWorkers(RuntimeError):
    """No worker consumes the queue; the message names the queue and the broker (password masked)."""


def uses_celery() -> bool:
    """TT_EXECUTOR is `celery`."""
    return config.settings().tt_executor == "celery"


def celery_config(*, resolve: bool = False) -> dict:
    """dagster-celery's executor config: broker, backend and the Celery settings (queue included). The
    broker is a reference to TT_CELERY_BROKER when that is set (so run configuration shows no password),
    or its value with `resolve` (what a worker needs) or when it is the default."""
    s = config.settings()
    referenced = s.is_set("tt_celery_broker") and not resolve
    return {
        "broker": {"env": "TT_CELERY_BROKER"} if referenced else s.tt_celery_broker,
        "backend": CELERY_BACKEND,
        "config_source": {**CELERY_SETTINGS, "task_default_queue": s.tt_celery_queue},
    }


def executor() -> dg.ExecutorDefinition | None:
    """The code location's executor: dagster-celery's when TT_EXECUTOR=celery, else None (Dagster's
    default: steps in subprocesses of the run)."""
    if not uses_celery():
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(), name="celery")


def worker_app() -> Celery:
    """The Celery app a worker runs: dagster-celery's step task on the executor's broker and settings."""
    from tt_assets.celery_fence import step_worker_app

    return step_worker_app(**celery_config(resolve=True))


def broker_shown() -> str:
    """TT_CELERY_BROKER with its password masked, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(config.settings().tt_celery_broker)


def check_broker() -> None:
    """BrokerUnreachable unless a connection to TT_CELERY_BROKER opens (one retry)."""
    with worker_app().connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as exc:
            raise BrokerUnreachable(f"broker {broker_shown()} unreachable: {exc}") from None


def wait_for_workers(wait_s: float | None = None) -> list[str]:
    """The names of the workers consuming TT_CELERY_QUEUE, asked every INSPECT_S seconds until one answers or
    `wait_s` (default TT_CELERY_WAIT_S) have passed. BrokerUnreachable, NoWorkers (after `wait_s`)."""
    s = config.settings()
    wait_s = s.tt_celery_wait_s if wait_s is None else wait_s
    check_broker()
    app = worker_app()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            replies = app.control.inspect(timeout=INSPECT_S).active_queues() or {}
        except OSError as exc:  # the broker went away since check_broker
            raise BrokerUnreachable(f"broker {broker_shown()} unreachable: {exc}") from None
        consuming = sorted(
            name
            for name, queues in replies.items()
            if any(q["name"] == s.tt_celery_queue for q in queues or ())
        )
        if consuming or time.monotonic() >= deadline:
            break
    if not consuming:
        raise NoWorkers(
            f"no Celery worker consumes queue {s.tt_celery_queue!r} of broker {broker_shown()} "
            f"(waited {wait_s:g} s, TT_CELERY_WAIT_S): start workers with `tt workers`"
        )
    return consuming
