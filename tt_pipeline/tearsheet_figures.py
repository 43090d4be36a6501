"""Plotly figures of a tear sheet (tt_pipeline.tearsheet.TearSheet): the dashboard's tab and the HTML report
draw the same ones. Percentages are fractions shown with two decimals; times are naive UTC."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from tt_pipeline.tearsheet import TearSheet
from tt_resources.terms import POLICY_LABELS

POLICY_COLOR = "#2563eb"  # the dashboard's agent colour
LOSS_COLOR = "#dc2626"
GAIN_COLOR = "#16a34a"
PERCENT_AXIS = {"tickformat": ".1%", "hoverformat": ".2%"}


def label(policy: str | None) -> str:
    return POLICY_LABELS.get(policy, policy) if policy else "n/a"


def _layout(fig: go.Figure, title: str, *, height: int = 320, percent: bool = True) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.2},
        hovermode="x unified",
    )
    if percent:
        fig.update_layout(yaxis=PERCENT_AXIS)
    return fig


def monthly_heatmap(sheet: TearSheet) -> go.Figure:
    """Monthly returns, year x month, red for losses and green for gains (blank: no bars that month)."""
    table = sheet.monthly.drop(columns="Year")
    z = table.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.char.mod("%.2f%%", np.nan_to_num(z) * 100))
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.01
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(table.columns),
            y=[str(y) for y in table.index],
            text=text,
            texttemplate="%{text}",
            colorscale=[[0, LOSS_COLOR], [0.5, "#ffffff"], [1, GAIN_COLOR]],
            zmin=-limit,
            zmax=limit,
            showscale=False,
            hovertemplate="%{y} %{x}: %{z:.2%}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", autorange="reversed")
    return _layout(fig, "Monthly returns", height=120 + 40 * len(table), percent=False)


def yearly_bars(sheet: TearSheet) -> go.Figure:
    """Compounded return per calendar year."""
    values = sheet.yearly.to_numpy(dtype=float)
    fig = go.Figure(
        go.Bar(
            x=[str(y) for y in sheet.yearly.index],
            y=values,
            marker_color=np.where(values < 0, LOSS_COLOR, GAIN_COLOR),
            name="Year",
        )
    )
    fig.update_xaxes(type="category")
    return _layout(fig, "Yearly returns")


def drawdown_area(sheet: TearSheet) -> go.Figure:
    """Underwater curve: the fraction below the running peak."""
    fig = go.Figure(
        go.Scatter(
            x=sheet.drawdown.index,
            y=sheet.drawdown.to_numpy(),
            fill="tozeroy",
            line={"color": LOSS_COLOR},
            name="Drawdown",
        )
    )
    return _layout(fig, "Drawdown (underwater)")


def rolling_volatility(sheet: TearSheet) -> go.Figure:
    """Annualised volatility over a trailing window of `rolling_bars` bars."""
    fig = go.Figure(
        go.Scatter(
            x=sheet.rolling_volatility.index,
            y=sheet.rolling_volatility.to_numpy(),
            line={"color": POLICY_COLOR},
            name="Volatility",
        )
    )
    return _layout(fig, f"Rolling volatility ({sheet.rolling_bars} bars, annualised)")


def distribution(sheet: TearSheet) -> go.Figure:
    """Histogram of the daily returns (compounded per date) with their 95 % VaR and CVaR (normal) marked."""
    fig = go.Figure(go.Histogram(x=sheet.daily.to_numpy(), nbinsx=50, marker_color=POLICY_COLOR, name="Days"))
    marks = (("var", "VaR 95 %", "dash", "top right"), ("cvar", "CVaR 95 %", "dot", "top left"))
    for name, text, dash, position in marks:
        value = sheet.stats[name]
        if np.isfinite(value):
            fig.add_vline(
                x=value, line={"color": LOSS_COLOR, "dash": dash}, annotation_text=text,
                annotation_position=position,
            )  # fmt: skip
    fig.update_layout(xaxis=PERCENT_AXIS, bargap=0.05, hovermode="closest")
    return _layout(fig, "Return distribution (daily)", percent=False)


def exposure(sheet: TearSheet) -> go.Figure:
    """Gross (sum |weight|) and net (sum weight) exposure per bar."""
    fig = go.Figure()
    for column, dash in (("gross", "solid"), ("net", "dot")):
        fig.add_trace(
            go.Scatter(
                x=sheet.exposure.index,
                y=sheet.exposure[column].to_numpy(),
                name=column.capitalize(),
                line={"color": POLICY_COLOR, "dash": dash},
            )
        )
    return _layout(fig, "Gross and net exposure")


def sector_exposure(sheet: TearSheet) -> go.Figure:
    """Net weight per sector (the watchlist's sectors), stacked."""
    fig = go.Figure()
    for sector in sheet.sectors.columns:
        fig.add_trace(
            go.Scatter(
                x=sheet.sectors.index,
                y=sheet.sectors[sector].to_numpy(),
                name=sector,
                stackgroup="sectors",
                mode="lines",
                line={"width": 0.5},
            )
        )
    return _layout(fig, "Sector exposure", height=380)


def excess(sheet: TearSheet) -> go.Figure:
    """Cumulative active return over the benchmark."""
    fig = go.Figure(
        go.Scatter(
            x=sheet.excess.index,
            y=sheet.excess.to_numpy(),
            line={"color": POLICY_COLOR},
            name=f"vs {label(sheet.benchmark)}",
        )
    )
    fig.add_hline(y=0, line={"color": "#9ca3af", "width": 1})
    return _layout(fig, f"Excess return over {label(sheet.benchmark)} (cumulative)")


def figures(sheet: TearSheet) -> dict[str, go.Figure]:
    """Every figure of the sheet by key, in report order (no excess figure without a benchmark)."""
    drawn = {
        "monthly": monthly_heatmap(sheet),
        "yearly": yearly_bars(sheet),
        "drawdown": drawdown_area(sheet),
        "volatility": rolling_volatility(sheet),
        "distribution": distribution(sheet),
        "exposure": exposure(sheet),
        "sectors": sector_exposure(sheet),
    }
    if sheet.benchmark is not None and not sheet.excess.empty:
        drawn["excess"] = excess(sheet)
    return drawn


def hover_dates(fig: go.Figure, daily: bool) -> go.Figure:
    """Session dates under the cursor for daily bars, else the UTC minute."""
    return fig.update_xaxes(hoverformat="%Y-%m-%d" if daily else "%Y-%m-%d %H:%M")
