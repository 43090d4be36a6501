"""A Celery worker that reads a queue as `tt workers` does (same queue arguments) but knows no task: a step
sent to it is dropped as unregistered and never answered, so the run waits (tests of waiting runs):
`celery -A tests.deaf_worker worker -Q <queue>`."""

from celery import Celery

from tt_resources import config

app = Celery("deaf", broker=config.settings().tt_celery_broker)
app.conf.task_queue_max_priority = 10  # dagster-celery declares its queues with x-max-priority 10
