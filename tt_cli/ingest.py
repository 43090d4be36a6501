"""`tt ingest`: bring the watchlist's bars up to date in the database (replaces mvp_pipeline)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import click
import pandas as pd
from rich.console import Console

from tt_cli.common import BadInput, ingest_summary, open_database, timeframe_progress
from tt_resources.timeframes import TIMEFRAME_NAMES

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


def _utc(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_localize("UTC")


def _universe(symbols: str | None, limit: int | None) -> list[str]:
    """Symbols from --symbols, else from the watchlist (first `limit`)."""
    if symbols:
        return [s.strip().upper() for s in symbols.split(",") if s.strip()][:limit]
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        return load_watchlist(limit=limit).symbols
    except WatchlistError as exc:
        raise BadInput(str(exc)) from None


def _ingest_direct(names, timeframes, start, end, source, console) -> list:
    """Run `ingest_many` in this process, with a progress bar per timeframe."""
    from tt_resources.ingest import ingest_many
    from tt_resources.sources import make_source

    engine = open_database()
    market = make_source(source)
    try:
        with timeframe_progress(console) as progress:
            tasks = {tf: progress.add_task(tf, total=len(names), note="") for tf in timeframes}

            def advance(result) -> None:
                note = f"{result.symbol}: {result.status}" + (f" ({result.error})" if result.error else "")
                progress.update(tasks[result.timeframe], advance=1, note=note[:60])

            return ingest_many(engine, market, names, timeframes, start=start, end=end, progress=advance)
    finally:
        market.close()


def _ingest_via_dagster(names, timeframes, start, end, source, console) -> list:
    """Materialise raw_bars + checks + features through the Dagster instance (lineage in `dagster dev`)."""
    import os

    if source:
        os.environ["TT_SOURCE"] = source  # read by the code location's resources
    from tt_assets.launch import ensure_dagster_home, materialize_market_data, partition_results

    ensure_dagster_home()
    import dagster as dg

    open_database()  # fail early, with one line, on an unreachable database
    as_of = end or pd.Timestamp.now(tz="UTC")
    bars_config = {"as_of": as_of.isoformat()}
    if start is not None:
        bars_config["history_days"] = max(1, (as_of - start).days)
    results = []
    runs = materialize_market_data(
        dg.DagsterInstance.get(),
        names,
        timeframes,
        run_config={"ops": {"raw_bars": {"config": bars_config}}},
        status=console.status,
    )
    for key_range, run in runs:
        console.print(
            f"{key_range.start} .. {key_range.end}: {'ok' if run.success else '[red]failed'} (run {run.run_id})"
        )
        results += partition_results(run)
        if not run.success:
            done = {(r.symbol, r.timeframe) for r in results}
            error = f"run {run.run_id} failed; see `dagster dev`"
            results += [
                SimpleNamespace(
                    symbol=sym,
                    timeframe=tf,
                    status="failed",
                    requests=0,
                    bars_written=0,
                    pacing_waits=0,
                    error=error,
                )
                for sym, tf in _range_partitions(key_range, names)
                if (sym, tf) not in done
            ]
    return results


def _range_partitions(key_range, names: list[str]) -> list[tuple[str, str]]:
    """(symbol, timeframe) pairs of a key range over consecutive symbols of `names`."""
    from tt_assets.partitions import split_key

    (first, timeframe), (last, _) = split_key(key_range.start), split_key(key_range.end)
    return [(symbol, timeframe) for symbol in names[names.index(first) : names.index(last) + 1]]


@click.command()
@click.option(
    "--start", type=DATE, help="First bar (UTC) for partitions with no data yet; default per timeframe."
)
@click.option("--end", type=DATE, help="Ingest bars that closed by this instant (UTC); default now.")
@click.option("--interval", type=click.Choice([*TIMEFRAME_NAMES, "all"]), default="all", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N watchlist symbols.")
@click.option("--symbols", help="Comma-separated symbols instead of the watchlist.")
@click.option(
    "--source", type=click.Choice(["synthetic", "csv", "ibkr"]), help="Default: TT_SOURCE, else synthetic."
)
@click.option(
    "--via-dagster",
    is_flag=True,
    help="Materialise raw_bars/features through the Dagster instance (runs and lineage in `dagster dev`).",
)
def ingest(start, end, interval, limit, symbols, source, via_dagster) -> None:
    """Fetch the missing tail of every symbol x timeframe partition and store it (fresh ones make no request)."""
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise click.UsageError(f"--start {start:%Y-%m-%d %H:%M} is not before --end {end:%Y-%m-%d %H:%M}")
    timeframes = list(TIMEFRAME_NAMES) if interval == "all" else [interval]
    names = _universe(symbols, limit)
    console = Console()
    run = _ingest_via_dagster if via_dagster else _ingest_direct
    results = run(names, timeframes, start, end, source, console)
    console.print(ingest_summary(results))
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/red] {r.symbol} {r.timeframe}: {r.error}", highlight=False)
    if failed:
        raise SystemExit(1)
