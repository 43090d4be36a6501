"""Plotly figures of the dashboard, drawn from bucketed curves (tt_dashboard.series), so a figure holds a few
thousand points whatever the episode length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from tt_dashboard.formats import PERCENT_DECIMALS
from tt_dashboard.series import line, rolling_sharpe
from tt_resources.palette import POLICY_COLORS
from tt_resources.terms import AGENT, POLICY_LABELS

PERCENT_TICKS = ".1%"  # axis ticks
PERCENT_HOVER = f".{PERCENT_DECIMALS}%"  # values under the cursor: as in the tables and KPIs


def policy_label(policy: str) -> str:
    return POLICY_LABELS.get(policy, policy)


def _naive_utc(ts) -> pd.Timestamp:
    """Plotly.js reads no zone offsets: shapes get naive UTC, like the traces' serialised timestamps."""
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def _layout(
    fig: go.Figure, title: str, yaxis: str, *, percent: bool = False, dollars: bool = False, height: int = 340
) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.15},
        hovermode="x unified",
        yaxis_title=yaxis,
    )
    # the left axis only: a second axis (yaxis2) keeps its own format
    if percent:
        fig.update_layout(yaxis={"tickformat": PERCENT_TICKS, "hoverformat": PERCENT_HOVER})
    if dollars:  # axis in whole dollars, hover to the cent
        fig.update_layout(yaxis={"tickprefix": "$", "tickformat": ",.0f", "hoverformat": ",.2f"})
    return fig


def _line(policy: str, ts: pd.Series, values: pd.Series, **style) -> go.Scatter:
    """One policy's line in its colour (the agent drawn thicker)."""
    return go.Scatter(
        x=ts,
        y=values,
        name=policy_label(policy),
        mode="lines",
        line={"color": POLICY_COLORS.get(policy), "width": 2.5 if policy == AGENT else 1.5},
        **style,
    )


def equity_figure(
    curves: Mapping[str, pd.DataFrame],
    split_ts: pd.Timestamp | None,
    windows: pd.DataFrame,
    training: Sequence[pd.DataFrame] = (),
) -> go.Figure:
    """Net worth per policy in dollars; the agent's `training` episodes (curves, each from its own start)
    dotted as one trace, test windows shaded (`windows`: fold, test_start, test_end) and the train/test
    boundary `split_ts` marked."""
    points = {policy: line(curve) for policy, curve in curves.items()}
    fig = go.Figure([_line(policy, p["ts"], p["net_worth"]) for policy, p in points.items()])
    if training:
        gap = pd.DataFrame({"ts": [pd.NaT], "net_worth": [float("nan")]})  # breaks the line between episodes
        trained = pd.concat([part for curve in training for part in (line(curve), gap)], ignore_index=True)
        fig.add_trace(
            go.Scatter(
                x=trained["ts"],
                y=trained["net_worth"],
                name=f"{policy_label(AGENT)} (training episodes)",
                mode="lines",
                line={"color": POLICY_COLORS[AGENT], "width": 1.5, "dash": "dot"},
                connectgaps=False,
            )
        )
    for i, row in enumerate(windows.itertuples()):
        fig.add_vrect(
            x0=_naive_utc(row.test_start),
            x1=_naive_utc(row.test_end),
            fillcolor="#93c5fd" if i % 2 == 0 else "#bfdbfe",
            opacity=0.12,
            line_width=0,
            annotation_text=f"fold {row.fold}",
            annotation_position="top left",
        )
    if split_ts is not None and not pd.isna(split_ts):
        boundary = _naive_utc(split_ts)
        fig.add_vline(x=boundary, line_dash="dash", line_color="#dc2626")
        fig.add_annotation(
            x=boundary,
            y=1.0,
            yref="paper",
            text="train | test",
            showarrow=False,
            xanchor="right",
            yanchor="bottom",
        )
    return _layout(fig, "Equity curve", "Net worth ($)", dollars=True, height=420)


def drawdown_figure(curves: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Underwater chart: -drawdown per policy (0 at a new high)."""
    fig = go.Figure(
        [
            _line(policy, c["end_ts"], -c["drawdown"], fill="tozeroy" if policy == AGENT else None)
            for policy, c in curves.items()
        ]
    )
    return _layout(fig, "Drawdown", "Below peak", percent=True)


def sharpe_figure(curves: Mapping[str, pd.DataFrame], window: int, bars_per_year: int) -> go.Figure:
    """Rolling annualised Sharpe ratio per policy over `window` bars (flat policies such as cash are skipped)."""
    traces = []
    for policy, curve in curves.items():
        sharpe = rolling_sharpe(curve, window, bars_per_year)
        if sharpe.notna().any():
            traces.append(_line(policy, curve["end_ts"], sharpe))
    fig = go.Figure(traces)
    fig.add_hline(y=0, line_color="#6b7280", line_width=1)
    return _layout(fig, f"Rolling Sharpe ({window} bars)", "Sharpe (annualised)")


def weights_figure(weights: pd.DataFrame) -> go.Figure:
    """Stacked area of portfolio weights over time (`weights`: ts, symbol, weight), cash on top."""
    wide = weights.pivot_table(index="ts", columns="symbol", values="weight", aggfunc="sum").fillna(0.0)
    order = [s for s in wide.columns if s != "other"] + (["other"] if "other" in wide.columns else [])
    wide["cash"] = (1.0 - wide.sum(axis=1)).clip(lower=0.0)
    fig = go.Figure(
        [
            go.Scatter(
                x=wide.index,
                y=wide[symbol],
                name=symbol,
                stackgroup="weights",
                mode="lines",
                line={"width": 0.5, "color": "#d1d5db" if symbol == "cash" else None},
            )
            for symbol in [*order, "cash"]
        ]
    )
    return _layout(fig, "Weights over time (top holdings)", "Share of net worth", percent=True, height=380)


def attribution_figure(attribution: pd.DataFrame) -> go.Figure:
    """Per-symbol P&L (mark-to-market) and costs paid, largest P&L first."""
    fig = go.Figure(
        [
            go.Bar(
                x=attribution["symbol"],
                y=attribution["pnl"],
                name="P&L",
                marker_color=["#16a34a" if v >= 0 else "#dc2626" for v in attribution["pnl"]],
            ),
            go.Bar(x=attribution["symbol"], y=-attribution["costs"], name="Costs", marker_color="#9ca3af"),
        ]
    )
    fig.update_layout(barmode="group")
    return _layout(fig, "P&L attribution by symbol", "P&L and costs ($)", dollars=True, height=380)


def turnover_costs_figure(activity: pd.DataFrame) -> go.Figure:
    """Costs paid (bars, left axis) and average turnover per bar (line, right axis) per bucket of a curve."""
    fig = go.Figure(
        [
            go.Bar(x=activity["ts"], y=activity["costs"], name="Costs", marker_color="#f97316"),
            go.Scatter(
                x=activity["ts"],
                y=activity["turnover"] / activity["n"],
                name="Turnover",
                yaxis="y2",
                mode="lines",
                line={"color": "#1e3a8a"},
            ),
        ]
    )
    fig.update_layout(
        yaxis2={
            "title": "Turnover per bar",
            "overlaying": "y",
            "side": "right",
            "tickformat": PERCENT_TICKS,
            "hoverformat": PERCENT_HOVER,
            "rangemode": "tozero",
        }
    )
    return _layout(fig, "Turnover and costs over time", "Costs ($)", dollars=True)
