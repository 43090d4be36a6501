"""Helpers shared by the `tt` subcommands: bad-input errors (exit code 2), the time window, opening the
database and the pipeline, the symbol universe, and the partition progress and summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click
import pandas as pd
import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tt_resources.db.faults import DatabaseFault, with_reconnect
from tt_resources.terms import utc

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])


class BadInput(click.ClickException):
    """One-line error for bad input or an unreachable database; exit code 2."""

    exit_code = 2


def stamp(value: pd.Timestamp) -> str:
    """A --start/--end instant as typed: the date, with the time when it is not midnight."""
    return f"{value:%Y-%m-%d}" if value == value.normalize() else f"{value:%Y-%m-%d %H:%M}"


def time_window(start, end, *, months: int | None = None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """--start/--end as UTC Timestamps; with `months` (instead of --start), start is that many months
    before --end (default today).

    BadInput naming the flag when the window leaves the calendars (1970 .. now): a start before the
    calendar or not before now, an end before the calendar or in the future, or a start not before the end.
    """
    from tt_resources.calendar import CALENDAR_START

    now = pd.Timestamp.now(tz="UTC")
    end = utc(end)
    if months:  # the history ends at --end (default now)
        start = (end or now).normalize() - pd.DateOffset(months=months)
        start_flag = f"--months {months} (from {stamp(start)})"
    else:
        start = utc(start)
        start_flag = f"--start {stamp(start)}" if start is not None else ""
    end_flag = f"--end {stamp(end)}" if end is not None else ""
    first = utc(CALENDAR_START)
    for flag, value in ((start_flag, start), (end_flag, end)):
        if value is not None and value < first:
            raise BadInput(f"{flag} is before {stamp(first)}, where the platform's calendars start")
    if start is not None and start >= now:
        raise BadInput(f"{start_flag} is in the future: no bar has closed since then")
    if end is not None and end > now:
        raise BadInput(f"{end_flag} is in the future; leave it out to take every bar closed by now")
    if start is not None and end is not None and start >= end:
        raise BadInput(f"{start_flag} is not before {end_flag}")
    return start, end


def universe(symbols: str | None, limit: int | None) -> list[str]:
    """Symbols from --symbols (comma-separated, checked by the watchlist's symbol rule), else the watchlist's
    first `limit` (--limit) symbols; BadInput for both at once."""
    from tt_resources.watchlist import WatchlistError, check_symbol, load_watchlist

    if symbols is not None and limit is not None:
        raise BadInput("--limit takes the watchlist's first N symbols: give --symbols or --limit, not both")
    if symbols is not None:
        try:
            names = [check_symbol(text) for text in symbols.split(",") if text.strip()]
        except ValueError as exc:
            raise BadInput(f"--symbols: {exc}") from None
        if not names:
            raise BadInput(f"--symbols {symbols!r}: no symbol given")
        return list(dict.fromkeys(names))
    try:
        return load_watchlist(limit=limit).symbols
    except WatchlistError as exc:
        raise BadInput(str(exc)) from None


def market_config(
    source: str | None = None, *, tz: str | None = None, date_format: str | None = None
) -> dict:
    """The market_data resource's configuration (tt_resources.sources.settings.MARKET_DATA_FIELDS) from the
    settings and the command's --source, --tz, --date-format: the values both ways of
    running the pipeline build their source from (via Dagster as run config, so Celery workers get them too).
    BadInput for --tz/--date-format without the csv source or an unknown zone."""
    from tt_resources import config
    from tt_resources.sources.settings import MARKET_DATA_FIELDS

    env = config.settings()
    market = {field: getattr(env, name) for field, name in MARKET_DATA_FIELDS.items()}
    flags = {"source": source, "csv_tz": tz, "csv_date_format": date_format}
    market.update({field: value for field, value in flags.items() if value is not None})
    csv_flags = ", ".join(f"--{n}" for n, v in (("tz", tz), ("date-format", date_format)) if v is not None)
    if csv_flags and market["source"] != "csv":
        raise BadInput(f"{csv_flags}: only for the csv source (--source csv)")
    try:
        config.check_zone(tz)
    except ValueError as exc:
        raise BadInput(f"--tz: {exc}") from None
    market["csv_dir"] = str(config.csv_dir())
    return market


def open_pipeline(via_dagster: bool, market: dict, console: Console):
    """The pipeline this command runs on the migrated database with the `market` configuration
    (market_config): tt_cli.pipeline.ViaDagster or Direct."""
    from tt_cli.pipeline import Direct, ViaDagster

    if via_dagster:  # the instance's settings are checked before anything is written
        check_dagster_settings()
    engine = open_database()
    return ViaDagster(engine, market, status=console.status) if via_dagster else Direct(engine, market)


def check_dagster_settings() -> None:
    """BadInput (one line) when DAGSTER_HOME's dagster.yaml names an unset variable (DAGSTER_PG_*) or
    storage that does not answer (tt_resources.dagster_storage)."""
    from tt_resources import config
    from tt_resources.dagster_storage import DagsterStorageError, check_instance_settings

    try:
        check_instance_settings(config.dagster_home())
    except DagsterStorageError as exc:
        raise BadInput(str(exc)) from None


def refresh(pipeline, console: Console, symbols: list[str], timeframes: list[str], *, start=None, end=None):
    """Refresh the partitions with a progress bar per timeframe; returns their PartitionReports with the
    bar counts read back from the database (committed_reports).

    With --start/--end, one line per partition that has no stored bar in that window afterwards (a failed
    one excepted: its failure line says why).
    """
    started = pd.Timestamp.now(tz="UTC")
    with timeframe_progress(console) as progress:
        tasks = {tf: progress.add_task(tf, total=len(symbols), note="") for tf in timeframes}

        def advance(report) -> None:
            note = f"{report.symbol}: {report.status}" + (f" ({report.reason})" if report.reason else "")
            progress.update(tasks[report.timeframe], advance=1, note=escape(note[:60]))

        reports = pipeline.refresh(symbols, timeframes, start=start, end=end, progress=advance)
    try:
        reports = with_reconnect(lambda: committed_reports(pipeline.engine, reports, started))
        if start is not None or end is not None:
            # a partition the source, the database or its run failed says why itself: no "no bar in ..." line
            failed = {
                (r.symbol, r.timeframe) for r in reports if r.status == "failed" and r.failed_in != "bars"
            }
            lines = with_reconnect(
                lambda: empty_windows(pipeline.engine, symbols, timeframes, start, end, skip=failed)
            )
            for line in lines:
                console.print(f"[yellow]{escape(line)}[/yellow]", highlight=False, soft_wrap=True)
    except DatabaseFault as fault:  # the run's own failures were reported per partition
        console.print(f"[red]bar counts not read back[/red]: {escape(str(fault))}", highlight=False)
        reports = [replace(r, bars_written=None, bars_stored=None) for r in reports]
    return reports


def committed_reports(engine: sa.Engine, reports: list, started: pd.Timestamp) -> list:
    """`reports` with bars_written and bars_stored as the database holds them: the partition's bars
    written (inserted or changed) since `started` and all its stored bars, never what the run believed it
    wrote (a run cut short by a fault may have committed more, or less)."""
    from tt_resources.db.prices import committed_counts

    if not reports:
        return reports
    symbols = list(dict.fromkeys(r.symbol for r in reports))
    timeframes = list(dict.fromkeys(r.timeframe for r in reports))
    counts = committed_counts(engine, symbols, timeframes, started)
    found = {(c.symbol, c.timeframe): c for c in counts.itertuples()}
    out = []
    for r in reports:
        row = found.get((r.symbol, r.timeframe))
        written, stored = (int(row.written), int(row.stored)) if row is not None else (0, 0)
        out.append(replace(r, bars_written=written, bars_stored=stored))
    return out


def accepted(engine: sa.Engine, specs: Sequence[str], console: Console) -> None:
    """Accept the `--accept-hole` spans (tt_pipeline.market.accept_holes), a line each; BadInput for a bad one."""
    from tt_pipeline.market import accept_holes

    try:
        lines = accept_holes(engine, specs)
    except ValueError as exc:
        raise BadInput(f"--accept-hole {exc}") from None
    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)


NAMED_FAILURES = 10  # partitions named in a failure line shared by several (the rest counted)


def empty_windows(
    engine: sa.Engine,
    symbols: list[str],
    timeframes: list[str],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    *,
    skip: set[tuple[str, str]] = frozenset(),
) -> list[str]:
    """One line per (symbol, timeframe) not in `skip` with no stored bar in [start, end), naming the flags and
    what is stored (a source with nothing there, or a window after the last bar it has)."""
    from tt_resources.db.prices import window_counts

    counts = window_counts(engine, symbols, timeframes, start, end)
    stored = {(row.symbol, row.timeframe): row for row in counts.itertuples()}
    flags = " ".join(f"--{name} {stamp(value)}" for name, value in (("start", start), ("end", end)) if value)
    what = {
        (True, False): "no bar since it",
        (False, True): "no bar closed before it",
        (True, True): "no bar in that window",
    }[start is not None, end is not None]
    lines = []
    for timeframe in timeframes:
        for symbol in symbols:
            row = stored.get((symbol, timeframe))
            if (symbol, timeframe) not in skip and (row is None or row.inside == 0):
                held = f"stored {row.first_ts:%Y-%m-%d} .. {row.last_ts:%Y-%m-%d}" if row else "none stored"
                lines.append(f"{flags}: {what} for {symbol} {timeframe} ({held})")
    return lines


def report_partitions(console: Console, reports, *, fail: bool = True) -> list:
    """Print the summary table and one line per failure reason (the source's text, never read as console
    markup) naming the partitions it failed - one for an account-wide condition however many partitions it
    stopped; exit 1 when a partition failed and `fail`. Returns the failed reports."""
    console.print(ingest_summary(reports))
    for r in reports:
        if r.changes:
            console.print(
                f"[yellow]changed[/yellow] {r.symbol} {r.timeframe}: {escape(r.changes)}", highlight=False
            )
        if r.holes:
            retry = "later runs retry them"
            if r.holes_given_up:
                retry = (
                    f"{r.holes_given_up} failed every retry and is no longer asked for; if the market had no bars "
                    f"there (a suspension), accept it: tt ingest --accept-hole "
                    f"{r.symbol}:{r.timeframe}:FIRST..LAST:suspended"
                )
            console.print(
                f"[yellow]holes[/yellow] {r.symbol} {r.timeframe}: {r.holes} span(s) the source did not deliver "
                f"(tt_fetch_hole); {retry}",
                highlight=False,
                soft_wrap=True,
            )
    failed = [r for r in reports if r.status == "failed"]
    by_reason: dict[str, list] = {}
    for r in failed:
        by_reason.setdefault(str(r.reason), []).append(r)
    for reason, group in by_reason.items():  # one line per reason: a missing gateway is not 450 lines
        names = [f"{r.symbol} {r.timeframe}" for r in group]
        more = f" and {len(names) - NAMED_FAILURES} more" if len(names) > NAMED_FAILURES else ""
        which = (
            names[0]
            if len(names) == 1
            else f"{len(names)} partitions ({', '.join(names[:NAMED_FAILURES])}{more})"
        )
        known = [r.bars_stored for r in group if r.bars_stored is not None]
        stored = f" ({sum(known):,} bars stored)" if len(known) == len(group) else ""
        line = f"[red]failed[/red] {escape(which)}: {escape(reason)}{stored}"
        console.print(line, highlight=False, soft_wrap=True)  # one line, however long: grep finds it whole
    if failed and fail:
        raise SystemExit(1)
    return failed


def open_database(url: str | None = None) -> sa.Engine:
    """Engine for `url` (default DATABASE_URL or the embedded SQLite file), reachable, writable and migrated
    to head; the data directory (datasets, models) exists.

    BadInput (one line, never the password) for a data directory that cannot be created, a bad or
    unsupported URL, an SQLite file that cannot be written and an unreachable database.
    """
    from tt_resources import config
    from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine
    from tt_resources.db.migrate import upgrade

    try:
        config.data_dir()
        engine = create_engine(url)
    except OSError as exc:
        raise BadInput(
            f"cannot create the data directory {exc.filename} (TT_DATA_DIR): {exc.strerror}"
        ) from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        check_writable(Path(engine.url.database))
    try:
        check_connection(engine)
    except DatabaseConnectionError as exc:
        raise BadInput(str(exc)) from None
    upgrade(engine)
    return engine


def check_writable(path: Path) -> None:
    """BadInput naming an SQLite file when it, or its directory (SQLite writes -wal/-shm files beside it),
    exists but cannot be written; a missing directory is left to the connection check."""
    if path.exists() and not os.access(path, os.W_OK):
        raise BadInput(f"sqlite file {path} is read-only: cannot store anything in it")
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise BadInput(f"sqlite file {path}: its directory {path.parent} is read-only")


def _committed(name: str) -> Callable[[list], int | None]:
    """The sum of a read-back count (committed_reports) over reports; None when it was not read back."""

    def total(rows: list) -> int | None:
        values = [getattr(r, name) for r in rows]
        return None if None in values else sum(values)

    return total


# ingest summary rows: label -> the count over one timeframe's partition reports (None: unknown)
SUMMARY_COUNTS: dict[str, Callable[[list], int | None]] = {
    "partitions": len,
    "fresh": lambda rows: sum(r.status == "fresh" for r in rows),
    "updated": lambda rows: sum(r.status == "updated" for r in rows),
    "failed": lambda rows: sum(r.status == "failed" for r in rows),
    "bars written": _committed("bars_written"),
    "requests": lambda rows: sum(r.requests for r in rows),
    "pacing waits": lambda rows: sum(r.pacing_waits for r in rows),
    "bars quarantined": lambda rows: sum(r.quarantined for r in rows),
    "open holes": lambda rows: sum(r.holes for r in rows),
    "bars stored": _committed("bars_stored"),
}


def ingest_summary(results) -> Table:
    """Counts of partition results, one row per count (SUMMARY_COUNTS) and one column per timeframe.

    Timeframes run across, not down: a handful of columns, each as wide as its largest number, so the table
    reads whole in an 80-column terminal and no number is ever cut."""
    by_timeframe: dict[str, list] = {}
    for r in results:
        by_timeframe.setdefault(r.timeframe, []).append(r)
    table = Table(title="ingest summary", box=box.SQUARE)
    table.add_column("", no_wrap=True)
    for timeframe in by_timeframe:
        table.add_column(timeframe, justify="right", no_wrap=True)
    for label, count in SUMMARY_COUNTS.items():
        values = (count(rows) for rows in by_timeframe.values())
        table.add_row(label, *("unknown" if value is None else f"{value:,}" for value in values))
    return table


def timeframe_progress(console: Console) -> Progress:
    """A rich progress display with one bar per timeframe (`add_task(timeframe, total=..., note=...)`)."""
    return Progress(
        TextColumn("[bold]{task.description:>4}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


@contextmanager
def training_progress(console: Console, rl) -> Iterator[Callable]:
    """A rich progress bar over a walk-forward training of RLConfig `rl` (folds x seeds jobs of
    ppo.total_timesteps each): PPO steps of all jobs, the fold and seed last heard of, time elapsed and left
    (fits 80 columns). Yields the `progress(job, timesteps)` callback (tt_pipeline.models.FoldJob, its
    timesteps so far), safe to call from another thread; "evaluating" once every job is done."""
    steps, jobs = rl.ppo.total_timesteps, rl.eval.n_folds * rl.eval.seeds
    done: dict[tuple[int, int], int] = {}  # (fold, seed) -> timesteps
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(bar_width=20),
        TextColumn("{task.completed:>,.0f}/{task.total:,.0f} steps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(compact=True),
        TextColumn("left"),
        console=console,
        speed_estimate_period=600,  # step-log lines come every 10 % of a job: a long window for the speed
    ) as bar:
        task = bar.add_task("training", total=steps * jobs)

        def progress(job, timesteps: int) -> None:
            done[job.fold, job.seed] = min(timesteps, steps)
            completed = sum(done.values())
            where = "evaluating" if completed >= steps * jobs else f"fold {job.fold}, seed {job.seed}"
            bar.update(task, completed=completed, description=where)

        yield progress
