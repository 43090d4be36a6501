"""Where Dagster runs a run's steps (TT_EXECUTOR): Dagster's default executor (the run's own processes), or
dagster-celery's executor, which sends each step to a Celery queue (TT_CELERY_QUEUE) on a RabbitMQ broker
(TT_CELERY_BROKER), where workers started by `tt workers` (on this or other machines) execute it.

The executor and the workers build their Celery configuration here from the same settings, so a step sent
to the queue finds workers configured like the executor. Each worker process takes one step at a time and
acknowledges it when the step ends (`task_acks_late`), so a busy worker holds no queued step that an idle
one could run, and a step whose worker died is delivered again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from tt_resources import config

if TYPE_CHECKING:
    from celery import Celery

CELERY_BACKEND = "rpc://"  # results travel back to the run over the broker: no second service
CELERY_SETTINGS = {"worker_prefetch_multiplier": 1, "task_acks_late": True}


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
