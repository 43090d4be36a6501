"""Presentation for the Dagster UI: typed metadata values (instants as timestamps, fractions in percent,
absent values left out), the evaluation's metrics table, its equity charts and the dashboard link, in the words
and units a trader reads (policy labels of tt_resources.terms, returns in %, ratios to 2 decimals, "n/a" for
what could not be computed).

What the UI shows inline (dagster-webserver 1.13, asset page and run log): a table metadata value as a table; a
markdown value only when shorter than `INLINE_MARKDOWN_LIMIT` characters (longer ones hide behind
"[Show Markdown]"). Hence the equity chart is a small SVG sketch that fits, with a legend, beside the full
PNG chart behind the click.
"""

from __future__ import annotations

import base64
import io
import math
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import dagster as dg

from tt_resources import config
from tt_resources.palette import COLOR_NAMES, POLICY_COLORS
from tt_resources.terms import AGENT, METRICS, POLICY_LABELS, POLICY_NAMES, SIGNIFICANCE, SUMMARY_METRICS

if TYPE_CHECKING:
    import pandas as pd

INLINE_MARKDOWN_LIMIT = 1000  # dagster-webserver's MetadataEntry: markdown below this length renders inline
MISSING = "n/a"
PROBABILITIES = ("psr", "dsr")  # shown as a probability in %
CI_LABEL = "Sharpe 95 % interval (time)"  # Lo/Mertens sampling interval, not a seed spread
KINDS = {m.name: m.kind for m in (*METRICS, *SIGNIFICANCE)}
LABELS = {m.name: m.label for m in (*METRICS, *SIGNIFICANCE)}
SEED_DASHES = ("-", "--", ":", "-.")  # the agent's seeds in the detailed chart: one colour, a dash each


def typed(metadata: dict[str, object]) -> dict[str, object]:
    """`metadata` as Dagster should show it: a datetime (tz-aware, e.g. a pd.Timestamp) becomes timestamp
    metadata, an absent value (None, NaT, NaN) is left out (the UI would print `null`); others pass
    unchanged."""
    return {
        name: dg.MetadataValue.timestamp(value) if isinstance(value, datetime) else value
        for name, value in metadata.items()
        if value is not None and value == value  # NaT and NaN differ from themselves
    }


def percent(fraction: float, digits: int = 2) -> float:
    """A fraction (0..1) in percent, rounded, for metadata named `*_pct` (numeric: the UI plots it)."""
    return round(100 * fraction, digits)


def policy_label(column: str) -> str:
    """Display name of a policy or of one agent seed's curve (`ppo s1` -> "PPO agent, seed 1")."""
    policy, _, seed = column.partition(" s")
    label = POLICY_LABELS.get(policy, column if not seed else policy)
    return f"{label}, seed {seed}" if seed else label


def metric_text(name: str, value: float | None) -> str:
    """`value` of metric `name` as shown to people: percent kinds and PSR/DSR in % with 1 decimal, ratios with
    2 decimals, missing or non-finite as "n/a"."""
    if value is None or not math.isfinite(value):
        return MISSING
    if name in PROBABILITIES or KINDS.get(name) == "percent":
        return f"{100 * value:.1f} %"
    return f"{value:.2f}"


def rounded(value: float | None, digits: int = 2) -> float | None:
    """A finite float rounded for numeric metadata (Dagster plots it), None when missing or non-finite."""
    return round(float(value), digits) if value is not None and math.isfinite(value) else None


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample metrics stitched over the folds and averaged over the seeds (fold -1, seed -1) with the
    significance columns, one row per policy in POLICY_NAMES order (the agent first)."""
    wanted = (*SUMMARY_METRICS, *(m.name for m in SIGNIFICANCE))
    columns = ["policy", *(c for c in wanted if c in metrics.columns)]
    stitched = metrics.loc[(metrics["fold"] == -1) & (metrics["seed"] == -1), columns]
    rank = stitched["policy"].map(lambda p: POLICY_NAMES.index(p) if p in POLICY_NAMES else len(POLICY_NAMES))
    return (
        stitched.assign(_rank=rank)
        .sort_values(["_rank", "policy"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def metrics_table(summary: pd.DataFrame) -> dg.TableMetadataValue:
    """`summary_table` as a Dagster table of display strings: Policy, the summary metrics by label, PSR, DSR
    and the Sharpe ratio's sampling interval over time ("[low, high]", n/a when undefined)."""
    names = [c for c in summary.columns if c in LABELS and not c.startswith("sharpe_ci")]
    headers = ["Policy", *(LABELS[n] for n in names)]
    has_ci = {"sharpe_ci_low", "sharpe_ci_high"} <= set(summary.columns)
    if has_ci:
        headers.append(CI_LABEL)
    records = []
    for row in summary.to_dict("records"):
        cells = [policy_label(row["policy"]), *(metric_text(n, row[n]) for n in names)]
        if has_ci:
            low, high = (metric_text(n, row[n]) for n in ("sharpe_ci_low", "sharpe_ci_high"))
            cells.append(MISSING if MISSING in (low, high) else f"[{low}, {high}]")
        records.append(dg.TableRecord(dict(zip(headers, cells, strict=True))))
    schema = dg.TableSchema(columns=[dg.TableColumn(h, "string") for h in headers])
    return dg.MetadataValue.table(records=records, schema=schema)


def chart_curves(equity: pd.DataFrame) -> pd.DataFrame:
    """One curve per policy (index ts, columns policy names): the agent's seeds averaged, as in the table."""
    seeds = [c for c in equity.columns if c.startswith(f"{AGENT} s")]
    curves = equity.drop(columns=seeds)
    if seeds and AGENT not in curves.columns:
        curves.insert(0, AGENT, equity[seeds].mean(axis=1))
    return curves


def equity_sketch_md(equity: pd.DataFrame) -> str:
    """Markdown of an inline equity chart: an SVG (data URI) of the curves of `chart_curves` in the policies'
    colours (tt_resources.palette), with axes labelled by the first and last date and the net-worth range,
    sampled as finely as fits under INLINE_MARKDOWN_LIMIT, and a legend line "<colour>: <label> <total
    return>" per policy. ValueError for a curve of no known policy, or when even a coarse sketch does not fit.
    """
    curves = chart_curves(equity).ffill().dropna(axis=1, how="all")
    unknown = [p for p in curves.columns if p not in POLICY_COLORS]
    if unknown:
        raise ValueError(f"no colour for {', '.join(unknown)}: add it to tt_resources.palette.POLICY_COLORS")
    legend = "; ".join(
        f"{COLOR_NAMES[POLICY_COLORS[p]]}: {policy_label(p)} "
        + metric_text("total_return", curves[p].iloc[-1] / curves[p].iloc[0] - 1)
        for p in curves.columns
    )
    for points in (60, 48, 40, 32, 24, 16, 12, 8, 6, 4, 2):
        markdown = f"![out-of-sample equity]({_svg_uri(curves, points)})\n\n{legend}"
        if len(markdown) < INLINE_MARKDOWN_LIMIT:
            return markdown
    raise ValueError("the equity sketch does not fit inline")


def _svg_uri(curves: pd.DataFrame, points: int) -> str:
    """Data URI of an SVG (plot area 100 x 30 in a 460 px wide image) with a left and a bottom axis, the
    net-worth range at the left axis' ends, the first and last date under the bottom axis, and each column
    as a path through `points` evenly spaced samples; percent-encoded only where a URI or markdown needs it.
    """
    import numpy as np

    width, height = 100, 30
    low, high = float(curves.min().min()), float(curves.max().max())
    picks = np.unique(np.linspace(0, len(curves) - 1, min(points, len(curves))).round().astype(int))
    span = (high - low) or 1.0
    paths = []
    for column in curves.columns:
        values = curves[column].to_numpy()[picks]
        xs = np.round(picks / max(len(curves) - 1, 1) * width).astype(int)
        ys = np.round(height - (values - low) / span * height).astype(int)
        paths.append(f"<path stroke='{POLICY_COLORS[column]}' d='M{xs[0]},{ys[0]}{_steps(xs, ys)}'/>")
    first, last = (f"{ts:%Y-%m-%d}" for ts in (curves.index[0], curves.index[-1]))
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' width='460' viewBox='-13 -2 115 37'>"
        f"<g fill='none' stroke-width='.4'><path stroke='#888' d='M0,0V{height}H{width}'/>{''.join(paths)}</g>"
        f"<g font-size='3'><text x='-12' y='2'>{_money(high)}</text><text x='-12' y='{height}'>{_money(low)}"
        f"</text><text x='-6' y='34'>{first}</text><text x='{width - 15}' y='34'>{last}</text></g></svg>"
    )
    return "data:image/svg+xml," + quote(svg, safe="/:=',.-")


def _money(value: float) -> str:
    """A net worth in a few characters: 96.6k, 1.25M."""
    return f"{value / 1e6:.3g}M" if abs(value) >= 1e6 else f"{value / 1e3:.3g}k"


def _steps(xs, ys) -> str:
    """SVG path commands from the first point through the others: relative lines, flat runs merged into one
    horizontal step."""
    out, flat = [], 0
    for dx, dy in zip(xs[1:] - xs[:-1], ys[1:] - ys[:-1], strict=True):
        if dy == 0:
            flat += dx
            continue
        if flat:
            out.append(f"h{flat}")
            flat = 0
        out.append(f"l{dx},{dy}")
    if flat:
        out.append(f"h{flat}")
    return "".join(out)


def equity_figure(equity: pd.DataFrame, title: str):
    """A matplotlib figure of every equity curve (index ts, one column per policy or agent seed) against
    dates, in the policies' colours (an agent seed: the agent's colour, a dash of its own), legend in the
    policy labels of the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for number, column in enumerate(equity.columns):
        policy, _, seed = column.partition(" s")
        ax.plot(
            equity.index,
            equity[column],
            color=POLICY_COLORS.get(policy),
            linestyle=SEED_DASHES[number % len(SEED_DASHES)] if seed else "-",
            linewidth=1,
            label=policy_label(column),
        )
    ax.set_title(title)
    ax.set_ylabel("net worth")
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def equity_chart_md(equity: pd.DataFrame, title: str) -> str:
    """Markdown image (PNG, base64 data URI) of `equity_figure`."""
    import matplotlib.pyplot as plt

    fig = equity_figure(equity, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def dashboard_link() -> dg.UrlMetadataValue:
    """The dashboard (TT_DASHBOARD_URL), as definition metadata of the training assets: built when the code
    location loads, so the UI always shows the current setting (a materialisation's metadata is stored as
    written and would keep the address of the run that wrote it)."""
    return dg.MetadataValue.url(f"{config.dashboard_url()}/")


def dashboard_view(model_id: str) -> str:
    """The query that opens `model_id` in the dashboard (`?model=<model_id>`), relative to `dashboard_link`:
    what a materialisation stores, independent of where the dashboard is served."""
    return f"?model={quote(model_id, safe='')}"
