"""`tt db upgrade`, `tt show` (table inventory and recent rows) and `tt watchlist`."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import sqlalchemy as sa
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tt_cli.common import BadInput, open_database
from tt_resources.timeframes import TIMEFRAME_NAMES

if TYPE_CHECKING:
    import pandas as pd

SHOW_MAX_ROWS = 10_000  # `tt show --last` beyond this prints this many rows (of each timeframe) and a note
GAP = 2  # blanks between two printed columns
TEXT_MIN_WIDTH = 12  # free text (JSON, Text, long strings) wraps down to this width before it is left out
PRICE_COLUMNS = frozenset({"open", "high", "low", "close", "wap", "price"})  # to the cent; 4 places below 1


@dataclass(frozen=True)
class View:
    """How `tt show TABLE` prints a table by default: `columns` fit an 80-column terminal on typical rows; the
    last rows are the latest by `newest` (then the primary key); `bar_times` are bar stamps, shown as the
    session date on daily rows."""

    columns: tuple[str, ...]
    newest: str | None = None
    bar_times: tuple[str, ...] = ()


VIEWS: dict[str, View] = {
    "tt_prices": View(("symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"), "ts", ("ts",)),
    "tt_bar_quarantine": View(("symbol", "timeframe", "ts", "close", "reason"), "ts", ("ts",)),
    "tt_features": View(("symbol", "timeframe", "ts", "ret_1", "vol_20", "mom_20", "rsi_14"), "ts", ("ts",)),
    "tt_contracts": View(
        ("symbol", "con_id", "sec_type", "exchange", "currency", "long_name"), "qualified_at"
    ),
    "tt_fetch_log": View(
        ("symbol", "timeframe", "requested_at", "request", "outcome", "bars"), "requested_at"
    ),
    "tt_fetch_hole": View(
        ("symbol", "timeframe", "start_ts", "end_ts", "attempts", "reason"),
        "found_at",
        ("start_ts", "end_ts"),
    ),
    "tt_corporate_action": View(
        ("symbol", "kind", "ratio", "timeframe", "first_session", "detected_at", "source"),
        "detected_at",
        ("first_session",),
    ),
    "tt_ib_request": View(("id", "contract", "sent_at", "done_at", "outcome"), "sent_at"),
    "tt_ib_pacing": View(("mode", "concurrency", "paused_until", "streak", "violations")),
    "tt_dataset": View(
        ("dataset_version", "timeframe", "start_ts", "split_ts", "n_bars"),
        "created_at",
        ("start_ts", "end_ts", "split_ts"),
    ),
    "tt_model": View(
        ("model_id", "timeframe", "group_id", "fold", "seed", "test_start"),
        "created_at",
        ("train_start", "train_end", "test_start", "test_end"),
    ),
    "tt_episode": View(
        ("episode_id", "timeframe", "policy", "split", "window"), "started_at", ("start_ts", "end_ts")
    ),
    "tt_action": View(("episode_id", "step", "ts", "action")),
    "tt_reward": View(("episode_id", "step", "reward", "sharpe_term")),
    "tt_portfolio": View(("episode_id", "step", "net_worth", "period_return", "drawdown")),
    "tt_holdings": View(("episode_id", "step", "symbol", "weight", "value")),
    "tt_eval": View(
        ("model_id", "policy", "fold", "seed", "total_return", "sharpe"),
        "created_at",
        ("train_start", "train_end", "test_start", "test_end"),
    ),
    # trading (docs/trading.md)
    "tt_promotion": View(("timeframe", "action", "model_id", "previous_model_id", "forced", "who"), "at"),
    "tt_target": View(("session", "model_id", "symbol", "weight", "close"), "decision_ts"),
    "tt_order": View(("session", "symbol", "quantity", "state", "filled", "order_ref"), "updated_at"),
    "tt_fill": View(("session", "symbol", "shares", "price", "commission", "exec_id"), "time"),
    "tt_position": View(("account", "session", "symbol", "shares", "price", "value"), "session"),
    "tt_trading_halt": View(("id", "halted", "who", "at", "reason"), "at"),
    "tt_live_performance": View(
        ("model_id", "session", "live_return", "shadow_return", "slippage_bps", "tracking_error"), "session"
    ),
}


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
    help=f"Rows to show, of each timeframe (at most {SHOW_MAX_ROWS:,}).",
)
@click.option(
    "--columns", help="Comma-separated columns to show (default: a choice per table that fits 80 columns)."
)
def show(
    table: str | None, symbols: Sequence[str], timeframe: str | None, last: int, columns: str | None
) -> None:
    """Without TABLE: every table with its row count. With TABLE: its most recent rows, oldest first, grouped
    by timeframe; columns that do not fit the terminal are left out and named."""
    from tt_resources.db.schema import TABLES

    if table is None:
        if symbols or timeframe or columns:
            raise BadInput("--symbol, --timeframe and --columns need a TABLE")
        _print_inventory(open_database(), TABLES)
        return
    target = TABLES.get(table)
    if target is None:
        raise BadInput(f"unknown table {table!r}; valid: {', '.join(TABLES)}")
    view = VIEWS[table]
    shown = (
        list(dict.fromkeys(c.strip() for c in columns.split(",") if c.strip())) if columns else view.columns
    )
    filters = {"symbol": list(symbols), "timeframe": [timeframe] if timeframe else []}
    wanted = [*shown, *(name for name, values in filters.items() if values)]
    unknown = [name for name in wanted if name not in target.c]
    if unknown:
        raise BadInput(f"{table} has no column {unknown[0]!r}; valid: {', '.join(target.c.keys())}")
    grouped = "timeframe" in target.c  # rows come grouped by it, and it tells which rows are daily bars
    hidden = [target.c.timeframe] if grouped and "timeframe" not in shown else []
    stmt = sa.select(*(target.c[c] for c in shown), *hidden)
    for name, values in filters.items():
        if values:
            stmt = stmt.where(target.c[name].in_(values))
    order = dict.fromkeys([*([target.c[view.newest]] if view.newest else []), *target.primary_key.columns])
    stmt = stmt.order_by(*(c.desc() for c in order)).limit(min(last, SHOW_MAX_ROWS))
    if grouped and not timeframe:  # the last rows of each timeframe, one query each (the key's index)
        timeframes = [*TIMEFRAME_NAMES, *([None] if target.c.timeframe.nullable else [])]
        stmts = [
            stmt.where(target.c.timeframe.is_(tf) if tf is None else target.c.timeframe == tf)
            for tf in timeframes
        ]
    else:
        stmts = [stmt]
    free_text = [c.name for c in target.c if _free_text(c.type)]
    _print_rows(open_database(), table, stmts, shown, view.bar_times, free_text, capped=last > SHOW_MAX_ROWS)


def _free_text(kind: sa.types.TypeEngine) -> bool:
    """Whether a column holds free text that may wrap: JSON, Text and strings longer than an id (64)."""
    return isinstance(kind, sa.JSON) or (isinstance(kind, sa.String) and (kind.length or 65) > 64)


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


def _print_rows(
    engine: sa.Engine,
    name: str,
    stmts: list[sa.Select],
    shown: Sequence[str],
    bar_times: Sequence[str],
    free_text: Collection[str],
    *,
    capped: bool,
) -> None:
    """The rows of each of `stmts` (newest first) as one table, oldest first, a blank line between the groups;
    the columns of `shown` that fit the console, and a line naming those that do not; when `capped` and the
    cap was reached, a note saying so."""
    import pandas as pd

    from tt_resources.db.bulk import read_frame

    groups = [frame.iloc[::-1] for frame in (read_frame(engine, stmt) for stmt in stmts) if not frame.empty]
    console = Console()
    if not groups:
        console.print(f"{name}: no rows match")
        return
    frame = pd.concat(groups, ignore_index=True)
    daily = frame["timeframe"].eq("1d") if "timeframe" in frame else pd.Series(False, index=frame.index)
    columns = [
        _Column.of(frame[c], dates=daily if c in bar_times else None, wraps=c in free_text) for c in shown
    ]
    widths = _fit(columns, console.width)
    longest = max(len(group) for group in groups)
    title = f"{name}: last {longest} row{'s' if longest > 1 else ''}" + (
        " of each timeframe" if len(groups) > 1 else ""
    )
    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column, width in zip(columns, widths, strict=False):
        view.add_column(
            column.header, justify=column.justify, width=width, no_wrap=not column.wraps, overflow="fold"
        )
    ends = {sum(map(len, groups[: i + 1])) - 1 for i in range(len(groups) - 1)}
    for row in range(len(frame)):
        cells = (escape(column.cells[row]) for column in columns[: len(widths)])  # stored text is not markup
        view.add_row(*cells, end_section=row in ends)
    console.print(title, highlight=False)
    console.print(view)
    dropped = [column.name for column in columns[len(widths) :]]
    if dropped:
        console.print(
            f"left out to fit {console.width} terminal columns: {', '.join(dropped)} (choose with --columns)",
            highlight=False,
            soft_wrap=True,
        )
    if capped and longest == SHOW_MAX_ROWS:
        console.print(
            f"showing the last {SHOW_MAX_ROWS:,} rows{' of each timeframe' if len(groups) > 1 else ''} "
            "(the most `tt show` prints); use --symbol/--timeframe to narrow",
            highlight=False,
        )


@dataclass(frozen=True)
class _Column:
    """One printed column: its cells as text; `least` is the narrowest width that shows every cell whole
    (free text, `wraps`, may wrap down to TEXT_MIN_WIDTH), `natural` the width with no wrapping at all."""

    name: str
    header: str
    cells: list[str]
    justify: str
    wraps: bool

    @classmethod
    def of(cls, values: pd.Series, *, dates: pd.Series | None, wraps: bool) -> _Column:
        """The column of `values` (a read_frame column); `dates` marks the rows whose stamp is a daily bar's,
        shown as its session date (the UTC date of the session's open, where a daily bar is stamped); `wraps`
        for free text."""
        import pandas as pd

        name = str(values.name)
        stamps = isinstance(values.dtype, pd.DatetimeTZDtype)
        numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
        if stamps:
            cells = _stamps(values, dates)
        elif pd.api.types.is_float_dtype(values.dtype):
            cells = _numbers(values)
        else:
            cells = [_cell(v) for v in values.astype(object).where(values.notna(), None)]
        return cls(name, f"{name} (UTC)" if stamps else name, cells, "right" if numeric else "left", wraps)

    @property
    def least(self) -> int:
        cells = max(map(cell_len, self.cells), default=0)
        return max(
            max(map(cell_len, self.header.split())), min(cells, TEXT_MIN_WIDTH) if self.wraps else cells
        )

    @property
    def natural(self) -> int:
        return max(cell_len(self.header), *map(cell_len, self.cells))


def _fit(columns: Sequence[_Column], width: int) -> list[int]:
    """Widths of the leading columns that fit in `width` terminal columns (always at least one): each at least
    its `least`, the room left given to the first ones up to their `natural`."""
    widths: list[int] = []
    for column in columns:
        if widths and sum(widths) + GAP * len(widths) + column.least > width:
            break
        widths.append(column.least)
    room = width - sum(widths) - GAP * (len(widths) - 1)
    for i, column in enumerate(columns[: len(widths)]):
        grow = max(0, min(room, column.natural - widths[i]))
        widths[i] += grow
        room -= grow
    return widths


def _stamps(values: pd.Series, dates: pd.Series | None) -> list[str]:
    """UTC instants to the minute (to the second when one has seconds); a date on the rows `dates` marks."""
    present = values.dropna()
    seconds = bool((present.dt.second.ne(0) | present.dt.microsecond.ne(0)).any())
    stamp = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    daily = [False] * len(values) if dates is None else list(dates)
    return [
        "" if value is None else value.strftime("%Y-%m-%d" if day else stamp)
        for value, day in zip(values.astype(object).where(values.notna(), None), daily, strict=True)
    ]


def _numbers(values: pd.Series) -> list[str]:
    """Float cells, never cut: prices to the cent (4 places below 1, the US equity tick), whole numbers with
    thousands separators, others as `_number`; blank for NaN."""
    import numpy as np

    present = values.dropna()
    if values.name in PRICE_COLUMNS:
        text = _price
    elif len(present) and np.isfinite(present).all() and (present % 1 == 0).all():
        text = "{:,.0f}".format
    else:
        text = _number
    return ["" if np.isnan(value) else text(value) for value in values]


def _price(value: float) -> str:
    """A price to the cent from 1 on, to 4 places below (the US equity tick sizes)."""
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _number(value: float) -> str:
    """A float to 4 places (trailing zeros dropped) from 1 on, to 6 significant digits below."""
    if abs(value) >= 1:
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return f"{value:.6g}"


def _cell(value) -> str:
    """A readable table cell: blank for NULL (None), JSON with floats to 6 significant digits, else str()."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(_short_floats(value))
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _short_floats(value):
    """`value` (decoded JSON) with every float rounded to 6 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_short_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _short_floats(v) for k, v in value.items()}
    return value


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
