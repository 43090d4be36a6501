"""The two ways the CLI drives the one pipeline (tt_pipeline): in this process, or as Dagster runs.

Both expose the same three operations with the same results and errors, so `tt ingest`, `tt train` and
`tt demo` behave alike with or without `--via-dagster`; the Dagster way only adds the record (runs,
lineage, check results) in DAGSTER_HOME. A step that cannot complete raises StepFailed with its reason.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import click
import pandas as pd
import sqlalchemy as sa

from tt_pipeline.market import PartitionReport
from tt_resources.terms import DEFAULT_SPAN_POLICY, SpanPolicy

Progress = Callable[[PartitionReport], None]
# a walk-forward training's progress: (tt_pipeline.models.FoldJob, its PPO timesteps so far)
TrainingProgress = Callable[[Any, int], None]
FOLLOW_TAG = "tt/follow"  # the run whose step logs `_following` reads
# PPO steps per (fold, seed) job from which a training run trains its jobs in processes of their own: 4 to 10 s
# of training at 800-2,000 steps/s (bench/results/demo_budget.json), more than a step process costs to start
PROCESS_MIN_TIMESTEPS = 8_192
FOLLOW_S = 0.5  # how often `_following` reads the run's step logs (seconds)

log = logging.getLogger(__name__)


class StepFailed(click.ClickException):
    """A pipeline step failed (no dataset could be built, training failed, ...): one line, exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Trained:
    """A trained and evaluated walk-forward model: its id, out-of-sample metrics stitched over the folds,
    summarised over the seeds (one row per policy), and the id of its production model (the same
    configuration trained on the whole history: tt_pipeline.models.train_production)."""

    model_id: str
    metrics: pd.DataFrame
    production_id: str


class Direct:
    """The pipeline in this process."""

    name = "direct"

    def __init__(self, engine: sa.Engine, market: dict) -> None:
        self.engine, self.market = engine, market

    def refresh(
        self, symbols: Sequence[str], timeframes: Sequence[str], *, start=None, end=None, progress: Progress
    ) -> list[PartitionReport]:
        from tt_pipeline.market import refresh_partitions
        from tt_resources.sources import make_source
        from tt_resources.sources.settings import from_config
        from tt_resources.watchlist import listings_of

        settings = from_config(self.market)
        listings = listings_of(symbols)
        source = make_source(settings, self.engine)
        reports = []
        try:
            for timeframe in timeframes:
                outcomes = refresh_partitions(
                    self.engine,
                    source,
                    listings,
                    timeframe,
                    start=start,
                    end=end,
                    hole_attempts=settings.hole_attempts,
                    progress=lambda outcome: progress(outcome.report()),
                )
                reports += [outcome.report() for outcome in outcomes]
        finally:
            source.close()
        return reports

    def build_dataset(
        self,
        timeframe: str,
        symbols: Sequence[str],
        *,
        start,
        end,
        test_fraction: float,
        span_policy: SpanPolicy = DEFAULT_SPAN_POLICY,
    ) -> dict:
        """The tt_dataset row plus `excluded` ({symbol: reason}), `test_defects` ({kept symbol: what breaks
        in the test period}) and `span_note`."""
        from tt_pipeline.datasets import DatasetError, build_dataset
        from tt_resources import config

        try:
            dataset = build_dataset(
                self.engine,
                timeframe,
                list(symbols),
                test_fraction=test_fraction,
                data_dir=config.data_dir(),
                start=start,
                end=end,
                span_policy=span_policy,
            )
        except DatasetError as exc:
            raise StepFailed(str(exc)) from None
        return {
            **dataset.row,
            "excluded": dataset.excluded,
            "test_defects": dataset.test_defects,
            "span_note": dataset.span_note,
        }

    def train_and_evaluate(
        self, dataset_version: str, rl, *, model_dir=None, progress: TrainingProgress | None = None
    ) -> Trained:
        from tt_pipeline.models import evaluate_model, train_production, train_walk_forward
        from tt_resources import config
        from tt_resources.db import registry

        run_id = f"cli-{uuid.uuid4().hex[:12]}"
        timeframe = registry.dataset(self.engine, dataset_version)["timeframe"]
        model_dir = model_dir or config.data_dir() / "models" / timeframe
        trained = train_walk_forward(
            self.engine, dataset_version, rl, run_id=run_id, model_dir=model_dir, progress=progress
        )
        evaluate_model(self.engine, trained.model_id, run_id=run_id)
        production = train_production(self.engine, trained.model_id, run_id=run_id, model_dir=model_dir)
        metrics = registry.stitched_metrics(self.engine, trained.model_id)
        return Trained(trained.model_id, metrics, production.model_id)


class ViaDagster:
    """The pipeline as runs of the code location's jobs against the persistent instance (DAGSTER_HOME)."""

    name = "via Dagster"

    def __init__(self, engine: sa.Engine, market: dict, status=None) -> None:
        from tt_assets.launch import open_instance, reclaim_pool_slots

        self.engine, self.status = engine, status
        self.instance = open_instance()
        for line in reclaim_pool_slots(self.instance):  # slots of runs killed or failed before
            click.echo(line, err=True)
        # the command's market configuration is the run config of the market_data resource, so the run (and
        # a Celery worker with another environment) uses the values this command was given
        self.resources = {"market_data": {"config": market}}
        self.run_ids: list[str] = []
        self.checks_passed = self.checks_total = 0  # raw_bars check evaluations of the refresh runs

    def refresh(
        self, symbols: Sequence[str], timeframes: Sequence[str], *, start=None, end=None, progress: Progress
    ) -> list[PartitionReport]:
        from tt_assets.launch import materialize_market_data, partition_reports

        bars = {"start": _iso(start), "end": _iso(end)}
        reports = []
        runs = materialize_market_data(
            self.instance,
            symbols,
            timeframes,
            run_config={"ops": {"market_data": {"config": bars}}, "resources": self.resources},
            status=self.status,
        )
        with _launching():
            for key_range, result in runs:
                self.run_ids.append(result.run_id)
                evaluations = result.get_asset_check_evaluations()
                self.checks_total += len(evaluations)
                self.checks_passed += sum(e.passed for e in evaluations)
                for report in partition_reports(self.instance, key_range, result):
                    progress(report)
                    reports.append(report)
        return reports

    def build_dataset(
        self,
        timeframe: str,
        symbols: Sequence[str],
        *,
        start,
        end,
        test_fraction: float,
        span_policy: SpanPolicy = DEFAULT_SPAN_POLICY,
    ):
        import dagster as dg

        from tt_assets.models import NO_SPAN_NOTE
        from tt_resources.db import registry

        dataset = {
            "symbols": list(symbols),
            "start": _iso(start),
            "end": _iso(end),
            "test_fraction": test_fraction,
            "span_policy": span_policy,
        }
        result = self._run(
            "training_job",
            timeframe,
            {"ops": {"training_dataset": {"config": dataset}}},
            assets=[dg.AssetKey("training_dataset")],
        )
        version = _materialized(result, "training_dataset", "dataset_version")
        note = _materialized(result, "training_dataset", "span_note")
        return {
            **registry.dataset(self.engine, version),
            "excluded": _materialized(result, "training_dataset", "symbols_excluded"),
            "test_defects": _materialized(result, "training_dataset", "test_period_defects"),
            "span_note": None if note == NO_SPAN_NOTE else note,
        }

    def train_and_evaluate(
        self,
        dataset_version: str,
        rl,
        *,
        model_dir=None,
        reason: str = "requested",
        progress: TrainingProgress | None = None,
    ) -> Trained:
        """retrain_job (ppo_model + evaluation) on the dataset; `progress` is called with the training jobs'
        progress lines of the run's step logs as they are written (_following)."""
        from tt_assets.models import RETRAIN_REASON_TAG
        from tt_resources.db import registry

        if model_dir is not None:
            raise click.UsageError(
                "--model-dir does not apply with --via-dagster (models go to <data dir>/models)"
            )
        timeframe = registry.dataset(self.engine, dataset_version)["timeframe"]
        follow = uuid.uuid4().hex
        with _following(self.instance, follow, progress) if progress else nullcontext():
            result = self._run(
                "retrain_job",
                timeframe,
                {"ops": {"ppo_model": {"config": rl.to_dict()}}},
                tags={RETRAIN_REASON_TAG: reason, FOLLOW_TAG: follow},
                spinner=progress is None,
                step_processes=in_step_processes(rl),
            )
        model_id = _materialized(result, "ppo_model", "model_id")
        production_id = _materialized(result, "production_model", "model_id")
        return Trained(model_id, registry.stitched_metrics(self.engine, model_id), production_id)

    def _run(
        self,
        job: str,
        partition: str,
        run_config: dict,
        *,
        assets=None,
        tags=None,
        spinner=True,
        step_processes=False,
    ):
        from tt_assets.launch import run_job

        status = self.status(f"{job} {partition}") if self.status and spinner else nullcontext()
        with _launching(), status:
            result = run_job(
                self.instance,
                job,
                partition_key=partition,
                run_config={**run_config, "resources": self.resources},
                asset_selection=assets,
                tags=tags,
                raise_on_error=False,
                step_processes=step_processes,
            )
        self.run_ids.append(result.run_id)
        if not result.success:
            raise StepFailed(f"{job} {partition} failed (run {result.run_id}): {_failure(result)}")
        return result


def in_step_processes(rl) -> bool:
    """Whether a training run gives each (fold, seed) job a process of its own, as many at once as there are
    cores: when there are several jobs of at least PROCESS_MIN_TIMESTEPS PPO steps each. A shorter job trains
    in less time than a step process takes to start (~1 s forked, ~10 s spawned), so the run's own process
    trains those one after the other."""
    return rl.eval.n_folds * rl.eval.seeds > 1 and rl.ppo.total_timesteps >= PROCESS_MIN_TIMESTEPS


@contextmanager
def _following(instance, follow: str, progress: TrainingProgress) -> Iterator[None]:
    """While the body runs the run tagged FOLLOW_TAG=`follow`, read its step logs from the instance's event
    log every FOLLOW_S in a thread and call `progress(job, timesteps)` for each training progress line
    (tt_assets.models.progress_line); the lines written last are read once more when the body ends. The
    event log is the one record every executor writes (in-process, multiprocess, Celery workers). A failure
    to read it costs the progress display only: one warning in the log, the run goes on."""
    import dagster as dg

    from tt_assets.models import parse_progress

    where: dict = {"run": None, "cursor": None}

    def read() -> None:
        if where["run"] is None:
            runs = instance.get_runs(dg.RunsFilter(tags={FOLLOW_TAG: follow}), limit=1)
            if not runs:
                return
            where["run"] = runs[0].run_id
        while True:
            page = instance.get_records_for_run(where["run"], cursor=where["cursor"], limit=1_000)
            for record in page.records:
                entry = record.event_log_entry
                found = None if entry.is_dagster_event else parse_progress(entry.user_message)
                if found is not None:
                    progress(*found)
            where["cursor"] = page.cursor
            if not page.has_more:
                return

    def safely() -> bool:
        try:
            read()
        except Exception as exc:  # whatever the storage raises: the display stops, never the run
            log.warning("training progress not followed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    stop = threading.Event()

    def follow_run() -> None:
        while not stop.wait(FOLLOW_S) and safely():
            pass

    thread = threading.Thread(target=follow_run, name="tt-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        safely()


@contextmanager
def _launching() -> Iterator[None]:
    """A run that could not start or was interrupted (no Celery worker, broker unreachable, SIGTERM) as
    StepFailed: its one line."""
    from tt_assets.executors import BrokerUnreachable, NoWorkers
    from tt_assets.launch import RunInterrupted

    try:
        yield
    except (BrokerUnreachable, NoWorkers, RunInterrupted) as exc:
        raise StepFailed(str(exc)) from None


def _iso(value) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def _materialized(result, asset: str, name: str) -> str:
    import dagster as dg

    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key == dg.AssetKey(asset)
    ]
    return event.event_specific_data.materialization.metadata[name].value


def _failure(result) -> str:
    """The first line of the run's first step failure: the user's Failure description, else the error."""
    from tt_assets.launch import failure_reason

    failures = result.get_step_failure_events()
    return failure_reason(failures[0].step_failure_data) if failures else "see `dagster dev`"
