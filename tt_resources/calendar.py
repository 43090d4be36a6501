"""Exchange session calendars (exchange_calendars) and the bar grid each timeframe follows.

Every calendar covers CALENDAR_START (1970-01-01) to one year ahead, built once per process and exchange
(about 0.5 s). The default exchange is NYSE (`XNYS`), which also covers NASDAQ, ARCA, AMEX, BATS and IEX
listings (the same sessions); `exchange_code` maps an exchange name to its calendar.

Bars are identified by their start instant (UTC); instants passed in must be tz-aware (`terms.aware_utc`).
Regular trading hours only, early closes included (New York times for XNYS):
- 15m: 09:30, 09:45, ... 15:45 (26 bars; 14 on a 13:00 early close): every 15 minutes from the open;
- 1h: 09:30 (a half-hour bar, as IBKR builds them), then 10:00, 11:00, ... 15:00 (7 bars; 4 on an early
  close): the open, then every full hour;
- 1d: one bar per session, starting at the session open (the one stored timestamp of a session's daily bar).
A bar ends at the next grid boundary or at the session close, whichever comes first.
"""

from __future__ import annotations

from functools import cache, lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from tt_resources.terms import aware_utc
from tt_resources.timeframes import get_timeframe

CALENDAR_START = "1970-01-01"  # exchange_calendars' XNYS holidays are complete from 1970 on
DEFAULT_EXCHANGE = "XNYS"
# IBKR's names of US listing exchanges that exchange_calendars does not know as aliases (all on XNYS hours)
EXCHANGE_ALIASES = {"ARCA": "XNYS", "AMEX": "XNYS", "IEX": "XNYS", "ISLAND": "XNYS", "PINK": "XNYS"}
_HOUR = np.int64(3_600 * 10**9)


class CalendarError(ValueError):
    """No trading calendar for an exchange name, or an instant outside the calendar's span."""


def exchange_code(name: str | None) -> str:
    """The exchange_calendars code for an exchange name or code (NYSE, NASDAQ, ARCA -> XNYS; LSE -> XLON;
    empty -> XNYS); CalendarError naming it when there is none."""
    name = (name or "").strip().upper()
    if not name:
        return DEFAULT_EXCHANGE
    try:
        return EXCHANGE_ALIASES.get(name) or xcals.resolve_alias(name)
    except xcals.errors.InvalidCalendarName:
        raise CalendarError(
            f"no trading calendar for exchange {name!r} (give an exchange such as NYSE, NASDAQ, ARCA, AMEX "
            "or an exchange_calendars code such as XNYS, XLON)"
        ) from None


@cache
def exchange_calendar(code: str = DEFAULT_EXCHANGE) -> xcals.ExchangeCalendar:
    """The calendar of exchange `code` (exchange_code's result) from CALENDAR_START to one year ahead."""
    return xcals.get_calendar(code, start=CALENDAR_START)


def nyse() -> xcals.ExchangeCalendar:
    """The XNYS calendar (see exchange_calendar)."""
    return exchange_calendar(DEFAULT_EXCHANGE)


def sessions(start, end, exchange: str = DEFAULT_EXCHANGE) -> pd.DataFrame:
    """Sessions whose date lies in [date(start) - 1 day, date(end) + 1 day]: columns open, close (UTC)."""
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    first = (start - pd.Timedelta(days=1)).tz_localize(None).normalize()
    last = (end + pd.Timedelta(days=1)).tz_localize(None).normalize()
    return exchange_calendar(exchange).schedule.loc[first:last, ["open", "close"]]


def bar_table(timeframe: str, start, end, exchange: str = DEFAULT_EXCHANGE) -> pd.DataFrame:
    """Every bar of `timeframe` starting in [start, end): columns ts (start), end, session (date), UTC."""
    tf = get_timeframe(timeframe)
    start, end = aware_utc(start, "start"), aware_utc(end, "end")
    sched = sessions(start, end, exchange)
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


@lru_cache(maxsize=256)  # a refresh's partitions of one timeframe mostly span the same bars (grid, checks)
def expected_bar_starts(timeframe: str, start, end, exchange: str = DEFAULT_EXCHANGE) -> pd.DatetimeIndex:
    """UTC start instants of the `timeframe` bars that start in [start, end) in the exchange's sessions
    (an immutable index, shared between callers asking for the same span)."""
    return pd.DatetimeIndex(bar_table(timeframe, start, end, exchange)["ts"], name="ts")


@lru_cache(maxsize=256)  # a refresh asks once per partition with the same `now`
def last_closed_bar(timeframe: str, now, exchange: str = DEFAULT_EXCHANGE) -> pd.Timestamp | None:
    """Start of the latest `timeframe` bar that has closed at `now` (bar end <= now); None if there is none."""
    now = aware_utc(now, "now")
    recent = bar_table(timeframe, now - pd.Timedelta(days=15), now, exchange)
    closed = recent.loc[recent["end"] <= now, "ts"]
    return closed.iloc[-1] if len(closed) else None


def session_open(day, exchange: str = DEFAULT_EXCHANGE) -> pd.Timestamp:
    """The UTC open of the session on calendar date `day`; ValueError if the exchange is closed then."""
    date = pd.Timestamp(day)
    date = (date.tz_convert(None) if date.tzinfo else date).normalize()
    try:
        return exchange_calendar(exchange).schedule.at[date, "open"]
    except KeyError:
        raise ValueError(f"{date.date()} is not an {exchange_label(exchange)} session") from None


def exchange_label(exchange: str) -> str:
    """How messages name an exchange's calendar: NYSE for XNYS, else its code."""
    return "NYSE" if exchange == DEFAULT_EXCHANGE else exchange
