"""Scale-out on Celery: real RabbitMQ, two real Celery workers started by `tt workers`, a Dagster instance on
PostgreSQL (dagster.celery.yaml) and TT_EXECUTOR=celery.

Each fixture builds its own site (tests/celery_site.py: Celery queue, worker names, Dagster database and
platform database), so parallel test sessions on one broker never take each other's steps.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.celery_site import (
    Site,
    celery_site,
    celery_steps,
    delete_queue,
    worker_names,
    workers_running,
)
from tests.fake_ibgateway import FakeIBGateway, Faults, pacing_breaks
from tests.test_concurrent_start import HANG_TIMEOUT, assert_all_succeeded, run_each
from tt_resources import calendar
from tt_resources.db.engine import create_engine
from tt_resources.db.prices import read_bars
from tt_resources.sources.pacing import PacingRules

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1500)]

RULES = PacingRules(mode="strict", max_requests=6, window_s=3.0)  # IBKR's identical and per-contract rules
TIMEFRAMES = ("1d", "1h", "15m")
SYMBOL_SETS = (("AAPL", "MSFT"), ("NVDA", "AMZN"))  # one `tt ingest` process each, at once


@contextmanager
def site_or_skip(directory: Path, env: dict[str, str]) -> Iterator[Site]:
    """tests.celery_site.celery_site with two workers; the test is skipped when PostgreSQL is unreachable."""
    with ExitStack() as stack:
        try:
            site = stack.enter_context(celery_site(directory, env))
        except sa.exc.OperationalError as exc:
            pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
        yield site


# ------------------------------------------------------------------ a raw_bars + features backfill over IBKR


@dataclass
class Backfill:
    site: Site
    gateway: FakeIBGateway
    start: pd.Timestamp
    cutoff: pd.Timestamp
    results: list[tuple[int, str]]


@pytest.fixture(scope="module")
def ibkr_backfill(tmp_path_factory) -> Iterator[Backfill]:
    """Two `tt ingest --via-dagster --source ibkr --timeframe all` processes at once (two symbols each) on the
    celery executor, two workers, the `ibkr` pool at 2 so fetching steps overlap, and one stand-in gateway
    enforcing IBKR's pacing over every connection (it answers once both workers are connected)."""
    directory = tmp_path_factory.mktemp("celery_backfill")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    gateway = FakeIBGateway(now, rules=RULES)
    gateway.faults = Faults(answer_after_clients=2)
    gateway.start()
    start = (now - pd.Timedelta(days=20)).normalize()
    cutoff = now.normalize()  # --end: the target bar cannot move while the runs go on
    env = {
        "IB_PORT": str(gateway.port),
        "IB_CLIENT_ID": "40",
        "IB_TIMEOUT_S": "600",  # the first worker's requests wait for the second to connect
        "TT_IB_PACING": "strict",
        "TT_IB_MAX_REQUESTS": str(RULES.max_requests),
        "TT_IB_WINDOW_S": str(RULES.window_s),
    }
    try:
        with site_or_skip(directory, env) as site:
            site.set_pool("ibkr", 2)
            ingest = ["ingest", "--via-dagster", "--source", "ibkr", "--timeframe", "all"]
            window = ["--start", f"{start:%Y-%m-%d}", "--end", f"{cutoff:%Y-%m-%d}"]
            commands = [[*ingest, "--symbols", ",".join(s), *window] for s in SYMBOL_SETS]
            results = run_each(commands, site.env, directory)
            yield Backfill(site, gateway, start, cutoff, results)
    finally:
        gateway.stop()


def test_backfill_processes_succeed(ibkr_backfill):
    assert_all_succeeded(ibkr_backfill.results)


def test_backfill_steps_ran_on_both_workers(ibkr_backfill):
    with ibkr_backfill.site.instance() as instance:
        workers = {worker for _, _, worker in celery_steps(instance)}
    assert workers == set(ibkr_backfill.site.workers)


def test_backfill_materialised_every_partition_exactly_once(ibkr_backfill):
    expected = {f"{s}|{tf}" for symbols in SYMBOL_SETS for s in symbols for tf in TIMEFRAMES}
    with ibkr_backfill.site.instance() as instance:
        for asset in ("raw_bars", "features"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            keys = sorted(r.partition_key for r in records)
            assert keys == sorted(expected), asset


def test_backfill_stored_each_bar_once(ibkr_backfill):
    engine = create_engine(ibkr_backfill.site.env["DATABASE_URL"])
    try:
        for symbols in SYMBOL_SETS:
            for symbol in symbols:
                for timeframe in TIMEFRAMES:
                    end = calendar.last_closed_bar(timeframe, ibkr_backfill.cutoff) + pd.Timedelta(seconds=1)
                    stored = read_bars(engine, [symbol], timeframe)
                    expected = ibkr_backfill.gateway.expected(symbol, timeframe, ibkr_backfill.start, end)
                    assert list(stored["ts"]) == list(expected["ts"]), (symbol, timeframe)
    finally:
        engine.dispose()


def test_backfill_workers_fetched_at_once_on_distinct_client_ids(ibkr_backfill):
    # the stand-in refuses a second connection on a client id in use (error 326), as IB does, and answers
    # only once two client ids are connected: the workers' connections overlapped, each on its own id
    historical = ibkr_backfill.gateway.historical()
    assert len({r.client_id for r in historical}) >= 2
    assert any(a.client_id != b.client_id for a, b in itertools.pairwise(historical))


def test_backfill_held_the_pacing_budget_across_both_workers(ibkr_backfill):
    historical = ibkr_backfill.gateway.historical()
    assert not ibkr_backfill.gateway.violations()
    assert not pacing_breaks(historical, RULES)


# ------------------------------------------------------------------ walk-forward training over the workers

FOLDS, SEEDS = 2, 2


@dataclass
class Training:
    site: Site
    result: tuple[int, str]


@pytest.fixture(scope="module")
def celery_training(tmp_path_factory) -> Iterator[Training]:
    """`tt train --via-dagster` (synthetic bars of 3 symbols, 2 folds x 2 seeds of a short PPO) on the celery
    executor with two workers."""
    directory = tmp_path_factory.mktemp("celery_training")
    config = directory / "rl.json"
    config.write_text(
        '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}, "env": {"max_episode_steps": 50},'
        f' "eval": {{"n_folds": {FOLDS}, "seeds": {SEEDS}}}}}'
    )
    train = ["train", "--via-dagster", "--limit", "3", "--steps", "128", "--months", "14"]
    with site_or_skip(directory, {"TT_SOURCE": "synthetic"}) as site:
        [result] = run_each([[*train, "--config", str(config)]], site.env, directory)
        yield Training(site, result)


def test_training_on_workers_succeeds(celery_training):
    assert_all_succeeded([celery_training.result])


def test_training_on_workers_gets_the_stitched_evaluation_of_every_fold_and_seed(celery_training):
    from tt_resources.db import registry
    from tt_resources.terms import AGENT

    with celery_training.site.instance() as instance:
        model = instance.get_latest_materialization_event(dg.AssetKey("ppo_model")).asset_materialization
        scored = instance.get_latest_materialization_event(dg.AssetKey("evaluation")).asset_materialization
    assert len(model.metadata["fold_models"].value) == FOLDS * SEEDS
    assert scored.metadata["model_id"].value == model.metadata["model_id"].value
    engine = create_engine(celery_training.site.env["DATABASE_URL"])
    try:
        stitched = registry.stitched_metrics(engine, model.metadata["model_id"].value)
    finally:
        engine.dispose()
    assert AGENT in set(stitched["policy"])


def test_training_steps_ran_on_the_workers(celery_training):
    with celery_training.site.instance() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        workers = {worker for run_id, _, worker in celery_steps(instance) if run_id == run.run_id}
    assert workers and workers <= set(celery_training.site.workers)


# ------------------------------------------------------------------ tt workers


def test_tt_workers_stop_cleanly_on_ctrl_c(tmp_path):
    import psutil

    prefix = f"t{uuid.uuid4().hex[:8]}-w"
    queue = f"tt-test-{prefix}"
    site = Site({"TT_CELERY_QUEUE": queue}, tmp_path, worker_names(prefix, 2))
    try:
        with workers_running(site, prefix, tmp_path / "workers.log") as process:
            workers = psutil.Process(process.pid).children(recursive=True)
    finally:
        delete_queue(queue)
    assert process.returncode == 0 and not [w for w in workers if w.is_running()]


def test_tt_workers_name_an_unreachable_broker_without_its_password():
    env = {"TT_CELERY_BROKER": "amqp://tt:s3cret@127.0.0.1:1//"}  # nothing listens on port 1
    done = subprocess.run(
        [sys.executable, "-m", "tt_cli", "workers", "-n", "1"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1
    assert "amqp://tt:**@127.0.0.1:1//" in lines[0] and "s3cret" not in done.stdout + done.stderr


def test_tz_given_to_tt_ingest_reaches_the_workers_as_run_config(celery_training, tmp_path):
    """`tt ingest --source csv --tz ZONE --via-dagster` on the celery executor (on the training's site): the
    workers' environment names no zone, the command's zone travels as the market_data resource's run config,
    and the file's naive New York times are stored as the right UTC instants by a worker."""
    from tests.test_ingest_cli import csv_file

    site = celery_training.site
    assert "TT_CSV_TZ" not in site.env and "TT_CSV_TZ" not in os.environ
    grid = calendar.expected_bar_starts(
        "1h", pd.Timestamp("2024-06-03", tz="UTC"), pd.Timestamp("2024-06-04", tz="UTC")
    )
    csv_file(
        tmp_path / "csv", "NAIVE_1h.csv", (f"{t:%Y-%m-%d %H:%M}" for t in grid.tz_convert("America/New_York"))
    )
    ingest = ["ingest", "--via-dagster", "--source", "csv", "--tz", "America/New_York", "--symbols", "NAIVE"]
    window = ["--timeframe", "1h", "--start", "2024-06-03", "--end", "2024-06-04"]
    results = run_each([[*ingest, *window]], site.env | {"TT_CSV_DIR": str(tmp_path / "csv")}, tmp_path)
    assert_all_succeeded(results)
    engine = create_engine(site.env["DATABASE_URL"])
    try:
        assert list(read_bars(engine, ["NAIVE"], "1h")["ts"]) == list(grid)
    finally:
        engine.dispose()
    with site.instance() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="market_data_job"), limit=1)  # the newest: ours
        assert any(run_id == run.run_id for run_id, _, _ in celery_steps(instance))


def test_training_jobs_spread_over_both_workers(celery_training):
    with celery_training.site.instance() as instance:
        [run] = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        steps = [(step, worker) for run_id, step, worker in celery_steps(instance) if run_id == run.run_id]
    jobs = [(step, worker) for step, worker in steps if "train_fold[" in step]  # one per (fold, seed)
    assert len(jobs) == FOLDS * SEEDS
    assert {worker for _, worker in jobs} == set(celery_training.site.workers)
