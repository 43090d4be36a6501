"""The NYSE bar grid: sessions, early closes, holidays, DST, IBKR's 1h alignment and last closed bar."""

from __future__ import annotations

import pandas as pd
import pytest

from tt_resources import calendar


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def ny_times(index: pd.DatetimeIndex) -> list[str]:
    return list(index.tz_convert("America/New_York").strftime("%H:%M"))


@pytest.mark.parametrize(("timeframe", "per_day"), [("15m", 26), ("1h", 7), ("1d", 1)])
def test_regular_session_bar_counts(timeframe, per_day):
    bars = calendar.expected_bar_starts(timeframe, utc("2024-06-03"), utc("2024-06-08"))  # Mon..Fri
    assert len(bars) == 5 * per_day
    assert bars.is_monotonic_increasing and bars.is_unique
    assert str(bars.tz) == "UTC"


def test_one_hour_bars_start_at_the_open_then_on_the_hour():
    bars = calendar.expected_bar_starts("1h", utc("2024-06-03"), utc("2024-06-04"))
    assert ny_times(bars) == ["09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]


def test_early_close_and_holiday():
    # Thanksgiving 2024-11-28 is closed; the 29th closes at 13:00
    fifteen = calendar.expected_bar_starts("15m", utc("2024-11-28"), utc("2024-11-30"))
    assert len(fifteen) == 14 and ny_times(fifteen)[-1] == "12:45"
    hourly = calendar.expected_bar_starts("1h", utc("2024-11-28"), utc("2024-11-30"))
    assert ny_times(hourly) == ["09:30", "10:00", "11:00", "12:00"]
    table = calendar.bar_table("1d", utc("2024-11-28"), utc("2024-11-30"))
    assert len(table) == 1 and table["end"].iloc[0] == utc("2024-11-29 18:00")


def test_daylight_saving_moves_the_utc_open():
    daily = calendar.expected_bar_starts("1d", utc("2024-03-08"), utc("2024-03-12"))
    assert list(daily) == [utc("2024-03-08 14:30"), utc("2024-03-11 13:30")]


def test_window_is_half_open():
    bars = calendar.expected_bar_starts("15m", utc("2024-06-03 13:30"), utc("2024-06-03 14:00"))
    assert list(bars) == [utc("2024-06-03 13:30"), utc("2024-06-03 13:45")]


def test_last_closed_bar():
    # 2024-06-03 (Mon) session 13:30-20:00 UTC
    assert calendar.last_closed_bar("15m", utc("2024-06-03 14:00")) == utc("2024-06-03 13:45")
    assert calendar.last_closed_bar("15m", utc("2024-06-03 13:59")) == utc("2024-06-03 13:30")
    assert calendar.last_closed_bar("1h", utc("2024-06-03 14:10")) == utc("2024-06-03 13:30")
    assert calendar.last_closed_bar("1d", utc("2024-06-03 19:59")) == utc("2024-05-31 13:30")
    assert calendar.last_closed_bar("1d", utc("2024-06-03 20:00")) == utc("2024-06-03 13:30")
    # over a weekend the last closed bar is Friday's last
    assert calendar.last_closed_bar("1h", utc("2024-06-02 12:00")) == utc("2024-05-31 19:00")


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="naive"):
        calendar.last_closed_bar("1d", pd.Timestamp("2024-06-03"))


def test_session_open():
    assert calendar.session_open("2024-11-29") == utc("2024-11-29 14:30")
    with pytest.raises(ValueError, match="not an NYSE session"):
        calendar.session_open("2024-11-28")


def test_the_calendar_covers_1970_on():
    assert calendar.session_open("1999-01-04") == utc("1999-01-04 14:30")
    assert calendar.nyse().first_session == pd.Timestamp("1970-01-02")  # 1 January 1970 was a holiday
    assert len(calendar.expected_bar_starts("1d", utc("1999-01-01"), utc("2000-01-01"))) == 252


@pytest.mark.parametrize(
    ("name", "code"),
    [("", "XNYS"), ("NYSE", "XNYS"), ("nasdaq", "XNYS"), ("ARCA", "XNYS"), ("AMEX", "XNYS"), ("LSE", "XLON")],
)
def test_exchange_names_map_to_calendars(name, code):
    assert calendar.exchange_code(name) == code


def test_an_exchange_without_a_calendar_is_named():
    with pytest.raises(calendar.CalendarError, match="no trading calendar for exchange 'MOON'"):
        calendar.exchange_code("moon")


def test_other_exchanges_have_their_own_sessions():
    london = calendar.expected_bar_starts("1h", utc("2024-06-03"), utc("2024-06-04"), exchange="XLON")
    assert list(london.tz_convert("Europe/London").strftime("%H:%M"))[:2] == ["08:00", "09:00"]
