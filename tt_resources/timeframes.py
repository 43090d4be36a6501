"""The three bar timeframes the platform stores, with their IBKR and pandas spellings."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Timeframe:
    """One bar size. `bar` is the bar length; `default_history` how far back a first fetch reaches."""

    name: str
    ib_bar_size: str
    bar: pd.Timedelta
    default_history: pd.DateOffset
    bars_per_year: int


TIMEFRAMES: dict[str, Timeframe] = {
    "1d": Timeframe("1d", "1 day", pd.Timedelta(days=1), pd.DateOffset(years=3), 252),
    "1h": Timeframe("1h", "1 hour", pd.Timedelta(hours=1), pd.DateOffset(years=2), 252 * 7),
    "15m": Timeframe("15m", "15 mins", pd.Timedelta(minutes=15), pd.DateOffset(years=1), 252 * 26),
}
TIMEFRAME_NAMES: tuple[str, ...] = tuple(TIMEFRAMES)


def get_timeframe(name: str) -> Timeframe:
    """Look a timeframe up by name ('1d', '1h', '15m'); ValueError names the valid ones."""
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; valid: {', '.join(TIMEFRAMES)}") from None
