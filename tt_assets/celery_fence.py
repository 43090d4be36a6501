"""Every use of dagster-celery's internals, checked against dagster-celery 0.29.

dagster-celery exports only its executor; a worker of our own (`tt workers`, with the executor's settings
rather than a YAML file for `dagster-celery worker start`) is built as that command builds one: the executor's
Celery app arguments (CeleryExecutor.for_cli(...).app_args()), the app (make_app) and the step task registered
on it (create_task). tests/test_fences.py checks the names and parameters relied on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from tt_resources.fences import require_checked

if TYPE_CHECKING:
    from celery import Celery

require_checked("dagster-celery", "0.29", "tt_assets/celery_fence.py")


def step_worker_app(broker: str, backend: str, config_source: dict) -> Celery:
    """The Celery app that runs dagster-celery's step task, configured as celery_executor(broker, backend,
    config_source) configures the app it sends steps with."""
    app = make_app(
        CeleryExecutor.for_cli(broker=broker, backend=backend, config_source=config_source).app_args()
    )
    create_task(app)
    return app
