"""An evaluation's tear sheet as a self-contained HTML file (tables and Plotly figures inlined, plotly.js
included: it opens offline), written by `gather_evaluation` when the evaluation is produced, beside its
trade blotter as CSV.

Path: <TT_DATA_DIR>/reports/<model_id>-<run_id>.html (and `..._trades.csv`), one per evaluation run, derived
from the model and the run that evaluated it (Dagster's evaluation metadata links it).
The sheet is the agent's first seed over every walk-forward test window, as the dashboard's out-of-sample view
draws it; the evaluation's headline (the seeds' ensemble) stays in tt_eval.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from tt_pipeline.tearsheet import STATS, TearSheet, TearSheetError, tear_sheet
from tt_resources import config
from tt_resources.terms import AGENT, POLICY_LABELS

REPORTS_DIR = "reports"
NA = "n/a"


def report_path(model_id: str, run_id: str) -> Path:
    """Where the tear sheet of `model_id`'s evaluation by run `run_id` is written (current TT_DATA_DIR)."""
    return config.data_dir() / REPORTS_DIR / f"{model_id}-{run_id}.html"


def latest_report(engine: sa.Engine, model_id: str) -> Path | None:
    """report_path of `model_id`'s latest evaluation (tt_eval's newest run), None when it has none."""
    from tt_resources.db.schema import evals

    stmt = (
        sa.select(evals.c.run_id)
        .where(evals.c.model_id == model_id)
        .order_by(evals.c.created_at.desc(), evals.c.eval_id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        run_id = conn.execute(stmt).scalar()
    return report_path(model_id, run_id) if run_id else None


def trades_path(report: Path) -> Path:
    """The trade blotter CSV beside a report."""
    return report.with_name(f"{report.stem}_trades.csv")


def watchlist_sectors() -> dict[str, str]:
    """symbol -> sector of the watchlist (TT_WATCHLIST); {} when it cannot be read (every symbol "Unknown")."""
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        return {listing.symbol: listing.sector for listing in load_watchlist().listings}
    except WatchlistError:
        return {}


def evaluation_episodes(metrics: pd.DataFrame) -> tuple[dict[str, list[str]], int]:
    """(policy -> test episode ids in fold order; the agent's seed) of an evaluation's tt_eval rows
    (reports.eval_metrics): the agent's first seed and every other policy, on every walk-forward fold."""
    seeds = metrics.loc[metrics["seed"] >= 0, "seed"]
    seed = int(seeds.min()) if len(seeds) else -1
    refs = metrics[(metrics["fold"] >= 0) & metrics["episode_id"].notna() & metrics["seed"].isin([-1, seed])]
    refs = refs.sort_values("fold", kind="stable")
    return {p: rows["episode_id"].tolist() for p, rows in refs.groupby("policy", sort=False)}, seed


def evaluation_sheet(engine: sa.Engine, model_id: str, policy: str = AGENT) -> tuple[TearSheet, str]:
    """(tear sheet of `policy` in `model_id`'s latest evaluation, a line saying what it covers).
    TearSheetError when the model has no evaluation or `policy` no logged test steps."""
    from tt_resources.db import registry, reports
    from tt_resources.timeframes import get_timeframe

    metrics = reports.eval_metrics(engine, model_id)
    model = registry.model(engine, model_id)
    if metrics.empty or model is None:
        raise TearSheetError(f"model {model_id}: no evaluation in tt_eval")
    episodes, seed = evaluation_episodes(metrics)
    steps = reports.portfolio_series(engine, [e for ids in episodes.values() for e in ids])
    holdings = reports.holding_rows(engine, episodes.get(policy, []))
    sheet = tear_sheet(
        policy,
        steps,
        episodes,
        holdings,
        watchlist_sectors(),
        get_timeframe(model["timeframe"]).bars_per_year,
    )
    folds = metrics.loc[metrics["fold"] >= 0, "fold"].nunique()
    first, last = metrics["test_start"].min(), metrics["test_end"].max()
    seeds = (
        "" if seed < 0 or policy != AGENT else f", seed {seed} (tt_eval's headline is the seeds' ensemble)"
    )
    scope = (
        f"{model['timeframe']} model {model_id}: {POLICY_LABELS.get(policy, policy)} out of sample on {folds} "
        f"walk-forward test window(s), {first:%Y-%m-%d} to {last:%Y-%m-%d}{seeds}; evaluated "
        f"{metrics['created_at'].max():%Y-%m-%d %H:%M} UTC"
    )
    return sheet, scope


def percent(value) -> str:
    return NA if _missing(value) else f"{value:.2%}"


def ratio(value) -> str:
    return NA if _missing(value) or math.isinf(value) else f"{value:.2f}"


def usd(value) -> str:
    return NA if _missing(value) else f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def when(value) -> str:
    return NA if _missing(value) else f"{pd.Timestamp(value):%Y-%m-%d %H:%M}"


def day(value) -> str:
    return NA if _missing(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _table(frame: pd.DataFrame, formats: Mapping[str, Callable], headers: Mapping[str, str]) -> str:
    """`frame`'s columns named in `headers` as an HTML table, each cell through its column's format."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers.values())
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(formats.get(c, lambda v: NA if _missing(v) else str(v))(row[c]))}</td>"
            for c in headers
        )
        + "</tr>"
        for _, row in frame.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def summary_table(sheet: TearSheet) -> str:
    frame = pd.DataFrame(
        {"figure": [s.label for s in STATS], "value": [(s.kind, sheet.stats[s.name]) for s in STATS]}
    )
    return _table(
        frame,
        {"value": lambda kv: percent(kv[1]) if kv[0] == "percent" else ratio(kv[1])},
        {"figure": "Figure", "value": "Value"},
    )


def drawdowns_table(sheet: TearSheet) -> str:
    return _table(
        sheet.drawdowns,
        {"start": day, "valley": day, "recovery": lambda v: "not recovered" if _missing(v) else day(v),
         "max_drawdown": percent},
        {"start": "Start", "valley": "Valley", "recovery": "Recovery", "days": "Length (days)",
         "max_drawdown": "Max drawdown"},
    )  # fmt: skip


def trips_table(sheet: TearSheet) -> str:
    return _table(
        sheet.round_trips,
        {"opened": when, "closed": when, "entry_value": usd, "pnl": usd, "return": percent},
        {"trip": "#", "symbol": "Symbol", "direction": "Side", "opened": "Opened (UTC)", "closed": "Closed (UTC)",
         "status": "Status", "bars": "Bars", "trades": "Trades", "entry_value": "Entry value", "pnl": "P&L",
         "return": "Return"},
    )  # fmt: skip


def trades_table(sheet: TearSheet) -> str:
    return _table(
        sheet.trades,
        {"ts": when, "shares": lambda v: f"{v:,.2f}", "price": usd, "trade_value": usd, "cost": usd,
         "position": lambda v: f"{v:,.2f}"},
        {"ts": "Bar (UTC)", "symbol": "Symbol", "side": "Side", "shares": "Shares", "price": "Price",
         "trade_value": "Value", "cost": "Cost", "position": "Position after", "trip": "Round trip"},
    )  # fmt: skip


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#111827;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #e5e7eb}
p.note{color:#4b5563;font-size:13px;margin:4px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #e5e7eb;padding:3px 8px;text-align:right} th{background:#f9fafb}
td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.scroll{max-height:480px;overflow-y:auto}
"""


def render(sheet: TearSheet, scope: str, trades_csv: str | None = None) -> str:
    """The tear sheet as one HTML page; `trades_csv`: the blotter CSV's file name, linked beside the table."""
    from tt_pipeline.tearsheet_figures import figures, hover_dates, label

    drawn = figures(sheet)
    daily = sheet.bars_per_year <= 260
    parts = {
        key: hover_dates(fig, daily).to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
        for i, (key, fig) in enumerate(drawn.items())
    }
    link = f' · <a href="{html.escape(trades_csv)}">CSV</a>' if trades_csv else ""
    benchmark = (
        f"Benchmark: {html.escape(label(sheet.benchmark))}, {html.escape(sheet.benchmark_note)}."
        if sheet.benchmark
        else f"No benchmark: {html.escape(sheet.benchmark_note)}."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tear sheet · {html.escape(label(sheet.policy))}</title>
<style>{STYLE}</style></head><body>
<h1>Tear sheet · {html.escape(label(sheet.policy))}</h1>
<p class="note">{html.escape(scope)}.</p>
<p class="note">Per-bar net returns after costs; figures by QuantStats; daily VaR/CVaR, skew and kurtosis on
returns compounded per date. {benchmark}</p>
<div class="grid"><div><h2>Summary</h2>{summary_table(sheet)}</div>
<div><h2>Worst drawdowns</h2>{drawdowns_table(sheet)}</div></div>
{parts["monthly"]}
<div class="grid"><div>{parts["yearly"]}</div><div>{parts["drawdown"]}</div>
<div>{parts["volatility"]}</div><div>{parts["distribution"]}</div>
<div>{parts["exposure"]}</div><div>{parts.get("excess", "")}</div></div>
{parts["sectors"]}
<h2>Round trips ({len(sheet.round_trips)})</h2><div class="scroll">{trips_table(sheet)}</div>
<h2>Trade blotter ({len(sheet.trades)} trades){link}</h2><div class="scroll">{trades_table(sheet)}</div>
</body></html>
"""


def write_report(engine: sa.Engine, model_id: str, run_id: str) -> Path:
    """Write the tear sheet of `model_id`'s latest evaluation (made by run `run_id`) and its blotter CSV to
    report_path; each file appears whole (written beside it, then renamed). Returns the report's path."""
    sheet, scope = evaluation_sheet(engine, model_id)
    path = report_path(model_id, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv = trades_path(path)
    _write(csv, sheet.trades.to_csv(index=False))
    _write(path, render(sheet, scope, csv.name))
    return path


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
