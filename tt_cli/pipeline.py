"""The two ways the CLI drives the one pipeline (tt_pipeline): in this process, or as Dagster runs.

Both expose the same three operations with the same results and errors, so `tt ingest`, `tt train` and
`tt demo` behave alike with or without `--via-dagster`; the Dagster way only adds the record (runs,
lineage, check results) in DAGSTER_HOME. A step that cannot complete raises StepFailed with its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import click
import pandas as pd
import sqlalchemy as sa

from tt_pipeline.market import PartitionReport
from tt_resources.terms import DEFAULT_SPAN_POLICY, SpanPolicy

Progress = Callable[[PartitionReport], None]


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

    def train_and_evaluate(self, dataset_version: str, rl, *, model_dir=None) -> Trained:
        from tt_pipeline.models import evaluate_model, train_production, train_walk_forward
        from tt_resources import config
        from tt_resources.db import registry

        run_id = f"cli-{uuid.uuid4().hex[:12]}"
        timeframe = registry.dataset(self.engine, dataset_version)["timeframe"]
        model_dir = model_dir or config.data_dir() / "models" / timeframe
        trained = train_walk_forward(self.engine, dataset_version, rl, run_id=run_id, model_dir=model_dir)
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
        self, dataset_version: str, rl, *, model_dir=None, reason: str = "requested"
    ) -> Trained:
        from tt_assets.models import RETRAIN_REASON_TAG
        from tt_resources.db import registry

        if model_dir is not None:
            raise click.UsageError(
                "--model-dir does not apply with --via-dagster (models go to <data dir>/models)"
            )
        timeframe = registry.dataset(self.engine, dataset_version)["timeframe"]
        result = self._run(
            "retrain_job",
            timeframe,
            {"ops": {"ppo_model": {"config": rl.to_dict()}}},
            tags={RETRAIN_REASON_TAG: reason},
        )
        model_id = _materialized(result, "ppo_model", "model_id")
        production_id = _materialized(result, "production_model", "model_id")
        return Trained(model_id, registry.stitched_metrics(self.engine, model_id), production_id)

    def _run(self, job: str, partition: str, run_config: dict, *, assets=None, tags=None):
        from contextlib import nullcontext

        from tt_assets.launch import run_job

        with _launching(), self.status(f"{job} {partition}") if self.status else nullcontext():
            result = run_job(
                self.instance,
                job,
                partition_key=partition,
                run_config={**run_config, "resources": self.resources},
                asset_selection=assets,
                tags=tags,
                raise_on_error=False,
            )
        self.run_ids.append(result.run_id)
        if not result.success:
            raise StepFailed(f"{job} {partition} failed (run {result.run_id}): {_failure(result)}")
        return result


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
