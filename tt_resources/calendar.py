"""NYSE session calendar (exchange_calendars XNYS) and the bar grid each timeframe follows.

Bars are identified by their start instant (UTC); instants passed in must be tz-aware (`terms.aware_utc`).
Regular trading hours only, early closes included:
- 15m: 09:30, 09:45, ... 15:45 America/New_York (26 bars; 14 on a 13:00 early close);
- 1h: 09:30 (a half-hour bar, as IBKR builds them), then 10:00, 11:00, ... 15:00 (7 bars; 4 on an early close);
- 1d: one bar per session, starting at the session open.
A bar ends at the next grid boundary or at the session close, whichever comes first.
"""

from __future__ import annotations

from functools import cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from tt_resources.terms import aware_utc
from tt_resources.timeframes import get_timeframe

CALENDAR_START = "2000-01-01"
_HOUR = np.int64(3_600 * 10**9)


@cache
def nyse() -> xcals.ExchangeCalendar:
    """The XNYS calendar from 2000 to one year ahead (built once per process)."""
    return xcals.get_calendar("XNYS", start=CALENDAR_START)


def sessions(start, end) -> pd.DataFrame:
    """Sessions whose date lies in [date(start) - 1 day, date(end) + 1 day]: columns open, close (UTC)."""
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    first = (start - pd.Timedelta(days=1)).tz_localize(None).normalize()
    last = (end + pd.Timedelta(days=1)).tz_localize(None).normalize()
    return nyse().schedule.loc[first:last, ["open", "close"]]


def bar_table(timeframe: str, start, end) -> pd.DataFrame:
    """Every bar of `timeframe` starting in [start, end): columns ts (start), end, session (date), UTC."""
    tf = get_timeframe(timeframe)
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    sched = sessions(start, end)
    opens = sched["open"].to_numpy("datetime64[ns]").view("i8")
    closes = sched["close"].to_numpy("datetime64[ns]").view("i8")
    if tf.name == "1d":
        starts, ends, idx = opens, closes, np.arange(len(opens))
    else:
        step = np.int64(tf.bar.value)
        # the first grid boundary at or after the open: 15m grids align with the open, 1h grids with the hour
        first = opens if tf.name == "15m" else -(-opens // _HOUR) * _HOUR
        partial = (first > opens).astype(np.int64)
        counts = partial + -(-(closes - first) // step)
        idx = np.repeat(np.arange(len(opens)), counts)
        k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) - partial[idx]
        starts = np.where(k < 0, opens[idx], first[idx] + k * step)
        ends = np.minimum(first[idx] + (k + 1) * step, closes[idx])
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(starts, utc=True),
            "end": pd.to_datetime(ends, utc=True),
            "session": sched.index.to_numpy()[idx],
        }
    )
    mask = (frame["ts"] >= start) & (frame["ts"] < end)
    return frame.loc[mask].reset_index(drop=True)


def expected_bar_starts(timeframe: str, start, end) -> pd.DatetimeIndex:
    """UTC start instants of the `timeframe` bars that start in [start, end) in NYSE regular sessions."""
    return pd.DatetimeIndex(bar_table(timeframe, start, end)["ts"], name="ts")


def last_closed_bar(timeframe: str, now) -> pd.Timestamp | None:
    """Start of the latest `timeframe` bar that has closed at `now` (bar end <= now); None if there is none."""
    now = aware_utc(now, "now")
    recent = bar_table(timeframe, now - pd.Timedelta(days=15), now)
    closed = recent.loc[recent["end"] <= now, "ts"]
    return closed.iloc[-1] if len(closed) else None


def session_open(day) -> pd.Timestamp:
    """The UTC open of the NYSE session on calendar date `day`; ValueError if the exchange is closed then."""
    date = pd.Timestamp(day)
    date = (date.tz_convert(None) if date.tzinfo else date).normalize()
    try:
        return nyse().schedule.at[date, "open"]
    except KeyError:
        raise ValueError(f"{date.date()} is not an NYSE session") from None
