"""Choosing where Dagster runs steps (tt_assets.executors): TT_EXECUTOR, TT_CELERY_BROKER, TT_CELERY_QUEUE."""

from __future__ import annotations

from tt_assets.executors import celery_config, executor, worker_app


def test_default_executor_is_dagsters(monkeypatch):
    monkeypatch.delenv("TT_EXECUTOR", raising=False)
    assert executor() is None


def test_tt_executor_celery_selects_dagster_celerys_executor(monkeypatch):
    monkeypatch.setenv("TT_EXECUTOR", "celery")
    assert executor().name == "celery"


def test_a_set_broker_reaches_the_executor_config_as_a_reference_not_its_password(monkeypatch):
    monkeypatch.setenv("TT_CELERY_BROKER", "amqp://tt:s3cret@mq.internal:5672//")
    assert celery_config()["broker"] == {"env": "TT_CELERY_BROKER"}


def test_workers_read_the_executors_broker_and_queue_one_step_at_a_time(monkeypatch):
    monkeypatch.setenv("TT_CELERY_BROKER", "amqp://tt:s3cret@mq.internal:5672//")
    monkeypatch.setenv("TT_CELERY_QUEUE", "tt-steps")
    app = worker_app()
    assert "execute_plan" in app.tasks  # dagster-celery's step task
    conf = app.conf
    settings = (
        conf.broker_url,
        conf.task_default_queue,
        conf.task_acks_late,
        conf.worker_prefetch_multiplier,
    )
    assert settings == ("amqp://tt:s3cret@mq.internal:5672//", "tt-steps", True, 1)
