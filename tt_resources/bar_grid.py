"""The one bar-grid rule at ingest: every stored bar sits on its exchange's session grid (tt_resources.calendar).

`conform` is called on every ingest path (tt_resources.ingest, after any source's fetch) and by the CSV
source on a whole file before it windows it (so a rejection names the file's line):
- 1d: each stamp names a session date, and the bar is stored at that session's open, the one timestamp of a
  session's daily bar. 00:00 UTC means that UTC date (a date exported in UTC); any other instant means its
  date on the exchange's clock when it falls at or before the regular close (00:00 New York, the 09:30 open,
  a 16:00 close stamp). A later instant (e.g. 18:00 New York) cannot be placed and is rejected, as are dates
  without a session and two rows naming one session.
- 15m / 1h: each stamp must be one of the grid's bar starts (regular hours, early closes included); the first
  other one is rejected with why: no session that day (weekend, holiday), before the open (pre-market), at or
  after the close (after hours), or between two bar starts.
The exchange is the calendar of the symbol's listing (tt_resources.watchlist.Listing.calendar), default XNYS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np
import pandas as pd

from tt_resources import calendar
from tt_resources.sources.base import SourceError
from tt_resources.timeframes import get_timeframe

Rows = Callable[[int], str]  # a bar's position -> how a message names it, e.g. "line 7" of a CSV file


class OffGridError(SourceError):
    """A bar does not sit on its exchange's session grid; one line naming the row, the stamp and why."""


def conform(
    bars: pd.DataFrame,
    symbol: str,
    timeframe: str,
    *,
    exchange: str = calendar.DEFAULT_EXCHANGE,
    subject: str | None = None,
    rows: Rows | None = None,
) -> pd.DataFrame:
    """`bars` (a bars frame) with 1d stamps moved to their session's open; OffGridError for the first bar
    that has no place on the grid (see module doc), `<subject>: <row>: <why>`.

    `exchange` is a calendar code (Listing.calendar); `subject` defaults to `<symbol> <timeframe>`, `rows` to
    `bar <n> of <count>`."""
    tf = get_timeframe(timeframe)
    if bars.empty:
        return bars
    subject = subject or f"{symbol} {tf.name}"
    rows = rows or (lambda i: f"bar {i + 1} of {len(bars)}")

    def fail(row: int, reason: str) -> NoReturn:
        raise OffGridError(f"{subject}: {rows(row)}: {reason}")

    ts = pd.DatetimeIndex(bars["ts"]).tz_convert("UTC").as_unit("ns")
    if ts.isna().any():
        fail(int(np.argmax(ts.isna())), "bar without a timestamp")
    if tf.name == "1d":
        return bars.assign(ts=_session_opens(ts, exchange, rows, fail))
    grid = calendar.expected_bar_starts(tf.name, ts.min(), ts.max() + pd.Timedelta(1, "ns"), exchange)
    off = ~ts.isin(grid)
    if off.any():
        row = int(np.argmax(off))
        fail(row, f"{_stamp(ts[row], exchange)}: {_why_off_grid(ts[row], tf.name, exchange)}")
    return bars


def _session_opens(
    ts: pd.DatetimeIndex, exchange: str, rows: Rows, fail: Callable[[int, str], NoReturn]
) -> np.ndarray:
    """The session open (UTC) each daily stamp names (see module doc)."""
    cal = calendar.exchange_calendar(exchange)
    local = ts.tz_convert(cal.tz)
    utc_midnight = ts == ts.normalize()
    close = max(pd.Timedelta(hours=t.hour, minutes=t.minute) for _, t in cal.close_times)
    dates = np.where(utc_midnight, ts.tz_localize(None).normalize(), local.tz_localize(None).normalize())
    dates = pd.DatetimeIndex(dates)
    wall = local.tz_localize(None)
    unplaced = ~utc_midnight & (wall - wall.normalize() > close)
    opens = cal.schedule["open"].reindex(dates)
    closed = opens.isna().to_numpy() & ~unplaced
    repeated = dates.duplicated() & ~unplaced & ~closed
    bad = unplaced | closed | repeated
    if bad.any():
        row = int(np.argmax(bad))
        day = dates[row]
        stamp = f"{day.date()}" if utc_midnight[row] else _stamp(ts[row], exchange)
        if unplaced[row]:
            fail(
                row,
                f"a daily bar stamped {stamp} names no session: give the date, midnight (UTC or "
                f"{_zone(cal)}) or a time up to the {_hhmm(close)} close",
            )
        if closed[row]:
            fail(row, _no_session(day, exchange) + ("" if utc_midnight[row] else f" (daily bar {stamp})"))
        first = int(np.flatnonzero(dates == day)[0])
        fail(row, f"daily bar {stamp} names the session of {day.date()} again, as {rows(first)} does")
    return opens.to_numpy()


def _why_off_grid(stamp: pd.Timestamp, timeframe: str, exchange: str) -> str:
    """Why an intraday bar start is not on the grid: no session, pre-market, after hours or between starts."""
    cal = calendar.exchange_calendar(exchange)
    day = stamp.tz_convert(cal.tz).tz_localize(None).normalize()
    if day not in cal.schedule.index:
        return _no_session(day, exchange)
    session_open, session_close = cal.schedule.loc[day, ["open", "close"]]
    if stamp < session_open:
        return f"before the {session_open.tz_convert(cal.tz):%H:%M} open (pre-market; regular hours only)"
    if stamp >= session_close:
        return f"at or after the {session_close.tz_convert(cal.tz):%H:%M} close (after hours; regular hours only)"
    rule = "every 15 minutes from the open" if timeframe == "15m" else "at the open, then every full hour"
    return f"not a {timeframe} bar start ({timeframe} bars start {rule})"


def _no_session(day: pd.Timestamp, exchange: str) -> str:
    cal = calendar.exchange_calendar(exchange)
    name = calendar.exchange_label(exchange)
    if day < cal.first_session or day > cal.last_session:
        return (
            f"{day.date()} is outside the {name} calendar ({cal.first_session.date()} .. "
            f"{cal.last_session.date()})"
        )
    if day.dayofweek >= 5:
        return f"{day.date()} is a {day.day_name()}: no trading on {name}"
    return f"{day.date()} ({day.day_name()}) is not a trading day on {name} (exchange holiday)"


def _stamp(value: pd.Timestamp, exchange: str) -> str:
    """A bar start as UTC with the exchange's clock, e.g. `2024-06-03 12:00 UTC (08:00 New York)`."""
    cal = calendar.exchange_calendar(exchange)
    return f"{value:%Y-%m-%d %H:%M} UTC ({value.tz_convert(cal.tz):%a %H:%M} {_zone(cal)})"


def _zone(cal) -> str:
    return str(cal.tz).rsplit("/", 1)[-1].replace("_", " ")


def _hhmm(delta: pd.Timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
