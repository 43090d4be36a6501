"""`tt db upgrade`, `tt show` (table inventory and recent rows) and `tt watchlist`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tt_cli.common import BadInput, open_database
from tt_resources.timeframes import TIMEFRAME_NAMES

SHOW_MAX_ROWS = 10_000  # `tt show --last` beyond this prints this many rows and a note


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command()
def upgrade() -> None:
    """Create or migrate the schema to the latest revision (idempotent)."""
    from tt_resources.db.engine import describe
    from tt_resources.db.migrate import current_revision

    engine = open_database()
    click.echo(f"{describe(engine.url)}: schema at revision {current_revision(engine)}")


@click.command()
@click.argument("table", required=False)
@click.option("--symbol", "symbols", multiple=True, help="Only these symbols (repeatable).")
@click.option("--timeframe", type=click.Choice(TIMEFRAME_NAMES), help="Only this timeframe.")
@click.option(
    "--last",
    "last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help=f"Rows to show (at most {SHOW_MAX_ROWS:,}).",
)
@click.option("--columns", help="Comma-separated columns to show (default: all).")
def show(
    table: str | None, symbols: Sequence[str], timeframe: str | None, last: int, columns: str | None
) -> None:
    """Without TABLE: every table with its row count. With TABLE: its most recent rows."""
    from tt_resources.db.schema import TABLES

    if table is None:
        if symbols or timeframe or columns:
            raise BadInput("--symbol, --timeframe and --columns need a TABLE")
        _print_inventory(open_database(), TABLES)
        return
    target = TABLES.get(table)
    if target is None:
        raise BadInput(f"unknown table {table!r}; valid: {', '.join(TABLES)}")
    shown = [c.strip() for c in columns.split(",") if c.strip()] if columns else list(target.c.keys())
    filters = {"symbol": list(symbols), "timeframe": [timeframe] if timeframe else []}
    wanted = shown + [name for name, values in filters.items() if values]
    unknown = [name for name in wanted if name not in target.c]
    if unknown:
        raise BadInput(f"{table} has no column {unknown[0]!r}; valid: {', '.join(target.c.keys())}")
    stmt = sa.select(*(target.c[c] for c in shown))
    for name, values in filters.items():
        if values:
            stmt = stmt.where(target.c[name].in_(values))
    order = ([target.c.ts] if "ts" in target.c else []) + list(target.primary_key.columns)
    stmt = stmt.order_by(*(c.desc() for c in order)).limit(min(last, SHOW_MAX_ROWS))
    _print_rows(open_database(), table, stmt, capped=last > SHOW_MAX_ROWS)


def _print_inventory(engine: sa.Engine, tables: dict[str, sa.Table]) -> None:
    """Row count of every table, in one query."""
    from tt_resources.db.engine import describe

    counts = sa.union_all(
        *(
            sa.select(sa.literal(name).label("table"), sa.func.count().label("rows")).select_from(table)
            for name, table in tables.items()
        )
    )
    with engine.connect() as conn:
        rows = sorted(conn.execute(counts).all())
    view = Table(caption=describe(engine.url))
    view.add_column("table")
    view.add_column("rows", justify="right")
    for name, count in rows:
        view.add_row(name, f"{count:,}")
    Console().print(view)


def _print_rows(engine: sa.Engine, name: str, stmt: sa.Select, *, capped: bool) -> None:
    """The rows of `stmt`, oldest first; when `capped` and the cap was reached, a note saying so."""
    import pandas as pd

    from tt_resources.db.bulk import read_frame

    frame = read_frame(engine, stmt).iloc[::-1]
    console = Console()
    if frame.empty:
        console.print(f"{name}: no rows match")
        return
    view = Table(title=f"{name}: last {len(frame)} rows")
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            view.add_column(f"{name} (UTC)", no_wrap=True)
        else:
            numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            view.add_column(name, justify="right" if numeric else "left")
    for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
        view.add_row(*(escape(_cell(value)) for value in row))  # stored text is not console markup
    console.print(view)
    if capped and len(frame) == SHOW_MAX_ROWS:
        console.print(
            f"showing the last {SHOW_MAX_ROWS:,} rows (the most `tt show` prints); "
            "use --symbol/--timeframe to narrow",
            highlight=False,
        )


def _cell(value) -> str:
    """A readable table cell: blank for NULL (None), UTC time to the second, trimmed floats, short JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        if abs(value) >= 1:
            return f"{value:,.4f}".rstrip("0").rstrip(".")
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return str(value)


@click.command()
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Watchlist CSV (default: TT_WATCHLIST or data/tensorwatchlist.csv).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Keep only the first N symbols.")
def watchlist(path: Path | None, limit: int | None) -> None:
    """Load and validate the watchlist: print the symbol count and the first symbols."""
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        loaded = load_watchlist(path, limit)
    except WatchlistError as exc:
        raise BadInput(str(exc)) from None
    sectors = loaded.frame.loc[loaded.frame["sector"] != "", "sector"].nunique()
    click.echo(f"{len(loaded)} symbols from {loaded.path} ({sectors} sectors)")
    more = f", … (+{len(loaded) - 10})" if len(loaded) > 10 else ""
    click.echo("first: " + ", ".join(loaded.symbols[:10]) + more)
