"""Faults around the Celery workers and the concurrency pool (issue 27): a worker killed mid-step, no worker
on the queue, the broker unreachable, a run interrupted or killed while it holds the `ibkr` pool slot, and
two processes retraining one dataset. Real RabbitMQ, `tt workers`, Dagster instances and databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.celery_site import BROKER, delete_queue
from tests.dagster_instance import instance_for_test
from tests.test_celery import site_or_skip
from tests.test_concurrent_start import HANG_TIMEOUT, assert_all_succeeded, run_together
from tt_assets.dagster_fence import pool_claims
from tt_assets.launch import HOST_TAG, PID_TAG, reclaim_pool_slots
from tt_resources.db import registry, rl_log

INGEST = ["ingest", "--via-dagster", "--symbols", "AAPL,MSFT", "--interval", "1d", "--start", "2025-01-02"]


# ------------------------------------------------------------------ pool slots of dead runs (fast)


def _run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, tags: dict[str, str]) -> str:
    run = instance.add_run(
        dg.DagsterRun(job_name="market_data_job", run_id=uuid.uuid4().hex, status=status, tags=tags)
    )
    instance.event_log_storage.claim_concurrency_slot("ibkr", run.run_id, "market_data")
    return run.run_id


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_reclaim_frees_the_slots_of_finished_runs_and_of_runs_whose_process_is_gone_only():
    here = socket.gethostname()
    with instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("ibkr", 3)
        failed = _run(instance, dg.DagsterRunStatus.FAILURE, {})
        killed = _run(instance, dg.DagsterRunStatus.STARTED, {HOST_TAG: here, PID_TAG: str(_dead_pid())})
        alive = _run(instance, dg.DagsterRunStatus.STARTED, {HOST_TAG: here, PID_TAG: str(os.getpid())})
        lines = reclaim_pool_slots(instance)
        assert sorted(lines) == sorted(
            [
                f"freed pool slot(s) ibkr of run {failed} (it failed)",
                f"freed pool slot(s) ibkr of run {killed} (its process "
                f"{instance.get_run_by_id(killed).tags[PID_TAG]} on {here} is gone; marked failed)",
            ]
        )
        assert set(pool_claims(instance)) == {alive}
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert reclaim_pool_slots(instance) == []


# ------------------------------------------------------------------ the retraining lock and discarded groups


def test_the_dataset_lock_lets_one_holder_in_at_a_time(db_url):
    from tt_resources.db.engine import create_engine

    engine = create_engine(db_url)
    order: list[str] = []
    held = threading.Event()

    def second() -> None:
        held.wait()
        with registry.dataset_lock(engine, "v1"):
            order.append("second in")

    thread = threading.Thread(target=second)
    thread.start()
    with registry.dataset_lock(engine, "v1"):
        held.set()
        thread.join(timeout=1.0)  # it must still be waiting: join returns with the thread alive
        order.append("first out" if thread.is_alive() else "second got in while held")
    thread.join(timeout=HANG_TIMEOUT)
    with registry.dataset_lock(engine, "v2"), registry.dataset_lock(engine, "v3"):  # other datasets: no wait
        pass
    engine.dispose()
    assert order == ["first out", "second in"]


def test_a_group_without_its_row_is_discarded_whole_and_a_registered_one_is_kept(engine):
    def member(group: str, fold: int) -> str:
        return rl_log.register_model(
            engine, timeframe="1d", path="x", config={}, group_id=group, fold=fold, seed=0
        )

    orphans = [member("half", 0), member("half", 1)]
    rl_log.register_model(engine, model_id="whole", timeframe="1d", path="x", config={})
    kept = member("whole", 0)
    assert registry.discard_group(engine, "half") == 2
    assert registry.discard_group(engine, "whole") == 0
    assert all(registry.model(engine, m) is None for m in orphans)
    assert registry.model(engine, kept) is not None


# ------------------------------------------------------------------ Celery faults on a real site (slow)

POLLS = 600  # polls (0.5 s) for a condition: a bound against hangs only


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tt_cli", *args],
            env=os.environ | {"COLUMNS": "200"} | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _until(condition, what: str):
    for _ in range(POLLS):
        found = condition()
        if found:
            return found
        threading.Event().wait(0.5)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Iterator[dict]:
    """On one site (two `tt workers`, the `ibkr` pool at 1): `tt ingest` with no worker on its queue, with
    the broker unreachable, SIGTERM and kill -9 while its run holds the pool slot (its step sent to a worker
    that never answers), then a run on the site's queue during which one worker is killed with -9."""
    from celery import Celery

    directory = tmp_path_factory.mktemp("worker_faults")
    out: dict = {}
    with site_or_skip(directory, {"TT_SOURCE": "synthetic"}) as site:
        unread = f"tt-unread-{uuid.uuid4().hex[:8]}"
        no_worker = site.env | {"TT_CELERY_QUEUE": unread, "TT_CELERY_WAIT_S": "1"}
        no_broker = site.env | {"TT_CELERY_BROKER": "amqp://tt:s3cret@127.0.0.1:1//"}  # nothing on port 1
        cases = {"no_worker": no_worker, "no_broker": no_broker}
        processes = {name: _start(INGEST, env, directory / f"{name}.log") for name, env in cases.items()}
        for name, process in processes.items():  # at once: each fails before it creates a run
            process.wait(timeout=HANG_TIMEOUT)
            out[name] = (process.returncode, (directory / f"{name}.log").read_text())
        delete_queue(unread)

        deaf_queue = f"tt-deaf-{uuid.uuid4().hex[:8]}"
        deaf_env = site.env | {"TT_CELERY_QUEUE": deaf_queue}
        deaf = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.deaf_worker", "worker", "-Q", deaf_queue],
            env=os.environ | deaf_env,
            stdout=(directory / "deaf.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            for name, how in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
                process = _start(INGEST, deaf_env, directory / f"{name}.log")
                with site.instance() as instance:
                    _until(lambda: pool_claims(instance), f"{name}: the run holds the ibkr slot")
                    out[f"{name}_run"] = next(iter(pool_claims(instance)))
                process.send_signal(how)
                process.wait(timeout=HANG_TIMEOUT)
                out[name] = (process.returncode, (directory / f"{name}.log").read_text())
                if name == "sigterm":
                    with site.instance() as instance:
                        out["claims_after_sigterm"] = pool_claims(instance)
        finally:
            deaf.terminate()
            deaf.wait()
            delete_queue(deaf_queue)

        app = Celery(broker=BROKER)
        process = _start(INGEST, site.env, directory / "kill_worker.log")
        active = _until(
            lambda: [
                n
                for n, tasks in (app.control.inspect(list(site.workers), timeout=1).active() or {}).items()
                if tasks
            ],
            "a worker runs the step",
        )
        pid = app.control.inspect(active, timeout=1).stats()[active[0]]["pid"]
        os.kill(pid, signal.SIGKILL)
        process.wait(timeout=HANG_TIMEOUT)
        out["kill_worker"] = (process.returncode, (directory / "kill_worker.log").read_text())
        out["killed_worker"] = active[0]
        _until(
            lambda: (
                {n for r in app.control.ping(list(site.workers), timeout=1) for n in r} == set(site.workers)
            ),
            "both workers answer again",
        )
        out["workers_log"] = (directory / "workers.log").read_text()
        with site.instance() as instance:
            out["statuses"] = {
                r: instance.get_run_by_id(out[f"{r}_run"]).status for r in ("sigterm", "sigkill")
            }
            out["claims_after"] = pool_claims(instance)
        yield out


def _last_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


@pytest.mark.slow
@pytest.mark.postgres
def test_no_worker_on_the_queue_is_one_line_naming_queue_and_broker(faults):
    code, output = faults["no_worker"]
    [line] = _last_lines(output)
    assert code == 1 and "no Celery worker consumes queue 'tt-unread-" in line
    assert "amqp://guest@127.0.0.1:5672//" in line and "no bar closed" not in output


@pytest.mark.slow
@pytest.mark.postgres
def test_an_unreachable_broker_is_one_line_without_its_password_nor_a_false_empty_window(faults):
    code, output = faults["no_broker"]
    assert code == 1 and _last_lines(output) == [
        "Error: broker amqp://tt:**@127.0.0.1:1// unreachable: [Errno 111] Connection refused"
    ]
    assert "s3cret" not in output and "no bar closed" not in output


@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_ends_a_waiting_run_marks_it_canceled_and_frees_its_slot(faults):
    code, output = faults["sigterm"]
    assert code == 1
    assert _last_lines(output) == [f"Error: interrupted: run {faults['sigterm_run']} marked canceled"]
    assert faults["statuses"]["sigterm"] == dg.DagsterRunStatus.CANCELED
    assert faults["sigterm_run"] not in faults["claims_after_sigterm"]


@pytest.mark.slow
@pytest.mark.postgres
def test_the_next_run_reclaims_a_killed_runs_slot_saying_so_and_succeeds(faults):
    code, output = faults["kill_worker"]
    run = faults["sigkill_run"]
    assert code == 0, output
    assert f"freed pool slot(s) ibkr of run {run} (its process" in output
    assert faults["statuses"]["sigkill"] == dg.DagsterRunStatus.FAILURE
    assert faults["claims_after"] == {}


@pytest.mark.slow
@pytest.mark.postgres
def test_a_worker_killed_mid_step_is_restarted_and_the_pool_survives(faults):
    assert f"worker {faults['killed_worker']} exited with code -9; restarted it" in faults["workers_log"]
    assert faults["kill_worker"][0] == 0


# ------------------------------------------------------------------ two `tt demo` on one database (slow)


@pytest.fixture(scope="module")
def two_demos(tmp_path_factory, pg_database) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """Two `tt demo` at once on one fresh PostgreSQL database and one DAGSTER_HOME: both build the same
    dataset and want a model on it. Returns their (exit code, output) and counts read from tt_model/tt_eval."""
    from tt_resources.db.engine import create_engine

    directory = tmp_path_factory.mktemp("two_demos")
    url = pg_database.empty()
    env = {
        "DATABASE_URL": url,
        "TT_DATA_DIR": str(directory / "data"),
        "DAGSTER_HOME": str(directory / "dagster_home"),
        "TT_SOURCE": "synthetic",
        "TT_EXECUTOR": "multiprocess",
    }
    results = run_together(["demo", "--symbols", "2", "--steps", "128"], env, directory)
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = (
            conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM tt_model WHERE group_id IS NULL AND production_of IS NULL)"
                    " AS groups,"
                    " (SELECT count(*) FROM tt_model WHERE production_of IS NOT NULL) AS production,"
                    " (SELECT count(*) FROM tt_model m WHERE group_id IS NOT NULL AND NOT EXISTS"
                    "   (SELECT 1 FROM tt_model g WHERE g.model_id = m.group_id)) AS orphans,"
                    " (SELECT count(DISTINCT run_id) FROM tt_eval WHERE fold = -1) AS evaluations"
                )
            )
            .mappings()
            .one()
        )
    engine.dispose()
    return results, dict(counts)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_demos_at_once_both_succeed_with_one_group_one_production_model_and_one_evaluation(two_demos):
    results, counts = two_demos
    assert_all_succeeded(results)
    assert counts == {"groups": 1, "production": 1, "orphans": 0, "evaluations": 1}


@pytest.mark.slow  # five worker starts
def test_tt_workers_leave_a_crash_looping_worker_down_and_say_so():
    from tests.celery_site import worker_names

    prefix = f"t{uuid.uuid4().hex[:8]}-c"
    [name] = worker_names(prefix, 1)
    done = subprocess.run(  # a log level Celery refuses: the worker exits with code 2 at each start
        [sys.executable, "-m", "tt_cli", "workers", "-n", "1", "--prefix", prefix, "--loglevel", "NOPE"],
        env=os.environ | {"TT_CELERY_QUEUE": f"tt-test-{prefix}"},
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    ours = [line for line in done.stderr.splitlines() if line.startswith(f"worker {name} ")]
    assert done.returncode == 1
    assert ours == [f"worker {name} exited with code 2; restarted it"] * 4 + [
        f"worker {name} exited with code 2 5 times in a row, each within 60 s of its start; left it down, "
        "0 worker(s) keep running"
    ]
    assert done.stderr.splitlines()[-1] == "Error: every worker was left down after 5 exits in a row"
