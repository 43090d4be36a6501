"""The Celery app of the platform's workers: `celery -A tt_assets.worker worker -Q <TT_CELERY_QUEUE>` (what
`tt workers` starts). Configured from the environment like the `celery` executor (tt_assets.executors)."""

from tt_assets.executors import worker_app

app = worker_app()
