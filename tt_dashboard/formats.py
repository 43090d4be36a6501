"""How the dashboard writes numbers, bar times, run links and policies: one format per kind of value, the same
as Dagster's metadata and the CLI (`n/a` for a missing value, percentages with two decimals, policies in
terms.POLICY_NAMES order)."""

from __future__ import annotations

import math
import uuid

import pandas as pd
import streamlit as st

from tt_resources.terms import POLICY_NAMES

NA = "n/a"
DAILY = "1d"  # the timeframe whose bars are sessions
PERCENT_DECIMALS = 2


def missing(value) -> bool:
    """True for None, NaN and NaT."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def usd(value: float | None, *, signed: bool = False) -> str:
    """Dollars with thousands separators and cents: '$1,234.50', '-$1,234.50' ('+$1,234.50' when `signed`)."""
    if missing(value):
        return NA
    sign = "-" if value < 0 else "+" if signed else ""
    return f"{sign}${abs(value):,.2f}"


def percent(fraction: float | None, *, signed: bool = False) -> str:
    """A fraction as a percentage with PERCENT_DECIMALS decimals: 0.2426 -> '24.26%' ('+24.26%' when
    `signed`)."""
    if missing(fraction):
        return NA
    return f"{fraction:{'+' if signed else ''}.{PERCENT_DECIMALS}%}"


def ratio(value: float | None) -> str:
    """A plain ratio (Sharpe, Sortino) with two decimals."""
    return NA if missing(value) or math.isinf(value) else f"{value:.2f}"


def bar_time_format(timeframe: str) -> tuple[str, str]:
    """(column label, moment.js format) of a bar's time: the session date for daily bars (a daily bar's
    timestamp is its session's open), the UTC minute for intraday bars."""
    if timeframe == DAILY:
        return "Session", "YYYY-MM-DD"
    return "Bar (UTC)", "YYYY-MM-DD HH:mm"


def hover_time_format(timeframe: str) -> str:
    """Plotly's format of a bar's time under the cursor, as bar_time_format."""
    return "%Y-%m-%d" if timeframe == DAILY else "%Y-%m-%d %H:%M"


def bar_times(ts: pd.Series, timeframes: pd.Series) -> pd.Series:
    """Bar times as text, each in its timeframe's hover_time_format: '2026-12-04' for a daily bar (its session),
    '2026-12-04 14:30' (UTC) for an intraday bar; NaN where `ts` is missing."""
    ts = pd.to_datetime(ts, utc=True)  # also a column of None: partitions without bars
    daily = ts.dt.strftime(hover_time_format(DAILY))
    return daily.where(timeframes == DAILY, ts.dt.strftime(hover_time_format("")))


def dagster_run_exists(run_id: str | None) -> bool:
    """Whether `run_id` names a Dagster run: Dagster's run ids are UUIDs; a model trained in process (`tt
    train`) carries its own id (e.g. 'cli-35ecdad2f86f') that no Dagster run has."""
    try:
        uuid.UUID(str(run_id))
    except ValueError:
        return False
    return True


def policy_rank(policy: str) -> int:
    """Position of `policy` in terms.POLICY_NAMES (the agent first); unknown policies after them."""
    return POLICY_NAMES.index(policy) if policy in POLICY_NAMES else len(POLICY_NAMES)


def in_policy_order(frame: pd.DataFrame, *before: str) -> pd.DataFrame:
    """`frame` sorted by the columns `before` and then its `policy` column in terms.POLICY_NAMES order (stable
    otherwise)."""
    rank = frame["policy"].map(policy_rank)
    ordered = frame.assign(_rank=rank).sort_values([*before, "_rank", "policy"], kind="stable")
    return ordered.drop(columns="_rank")


def percent_column(label: str) -> st.column_config.NumberColumn:
    """A column of fractions shown as percentages with formats.PERCENT_DECIMALS decimals (streamlit's
    "percent" format takes its decimals from the step: 4 decimals of a fraction are 2 of a percentage)."""
    return st.column_config.NumberColumn(label, format="percent", step=10.0 ** -(PERCENT_DECIMALS + 2))
