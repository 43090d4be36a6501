"""The one bar-grid rule at ingest (tt_resources.bar_grid): what every source's bars must satisfy."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.refreshing import fetch_result
from tt_resources import bar_grid, calendar
from tt_resources.db.prices import read_bars
from tt_resources.sources.base import SourceStats, one_chunk
from tt_resources.sources.synthetic import SyntheticSource
from tt_resources.terms import SOURCE_BAR_COLUMNS
from tt_resources.watchlist import Listing, listings_of

NOW = pd.Timestamp("2024-12-06 22:00", tz="UTC")  # a Friday after the close


def bars_at(*stamps) -> pd.DataFrame:
    """A valid bars frame with one bar per UTC stamp."""
    ts = pd.DatetimeIndex([pd.Timestamp(s).tz_convert("UTC") for s in stamps])
    frame = pd.DataFrame({"ts": ts, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0})
    return frame.assign(wap=float("nan"), bar_count=float("nan"))[list(SOURCE_BAR_COLUMNS)]


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="America/New_York")


@pytest.mark.parametrize("timeframe", ["15m", "1h", "1d"])
def test_synthetic_bars_are_on_the_grid_unchanged(timeframe):
    bars = SyntheticSource(seed=3, clock=lambda: NOW).fetch(
        Listing("AAA"), timeframe, pd.Timestamp("2024-11-01", tz="UTC"), NOW
    )
    assert len(bars) > 0
    pd.testing.assert_frame_equal(bar_grid.conform(bars, "AAA", timeframe), bars)


@pytest.mark.parametrize(
    ("timeframe", "stamp", "why"),
    [
        ("15m", ny("2024-06-03 08:00"), "before the 09:30 open (pre-market; regular hours only)"),
        ("15m", ny("2024-06-03 16:15"), "at or after the 16:00 close (after hours; regular hours only)"),
        (
            "15m",
            ny("2024-11-29 13:00"),
            "at or after the 13:00 close (after hours; regular hours only)",
        ),  # early close
        (
            "15m",
            ny("2024-06-03 09:37"),
            "not a 15m bar start (15m bars start every 15 minutes from the open)",
        ),
        ("1h", ny("2024-06-03 09:00"), "before the 09:30 open (pre-market; regular hours only)"),
        (
            "1h",
            ny("2024-06-03 10:30"),
            "not a 1h bar start (1h bars start at the open, then every full hour)",
        ),
        ("1h", ny("2024-06-01 10:00"), "2024-06-01 is a Saturday: no trading on NYSE"),
        (
            "1h",
            ny("2024-11-28 10:00"),
            "2024-11-28 (Thursday) is not a trading day on NYSE (exchange holiday)",
        ),
    ],
)
def test_an_off_grid_intraday_bar_is_named_with_why(timeframe, stamp, why):
    session = calendar.expected_bar_starts(timeframe, ny("2024-05-31"), ny("2024-06-01"))
    bars = bars_at(*session, stamp) if stamp > session[-1] else bars_at(stamp)
    with pytest.raises(bar_grid.OffGridError) as info:
        bar_grid.conform(bars, "AAA", timeframe)
    where = f"AAA {timeframe}: bar {len(bars)} of {len(bars)}: "
    local = f"({stamp:%a %H:%M} New York): "
    assert str(info.value) == f"{where}{stamp.tz_convert('UTC'):%Y-%m-%d %H:%M} UTC {local}{why}"


def test_24_hour_fx_bars_are_refused_at_the_first_one_outside_the_session():
    bars = bars_at(*pd.date_range(ny("2024-06-03 00:00"), periods=24, freq="1h"))
    with pytest.raises(
        bar_grid.OffGridError, match=r"bar 1 of 24: .*\(Mon 00:00 New York\): before the 09:30"
    ):
        bar_grid.conform(bars, "EURUSD", "1h")


@pytest.mark.parametrize(
    "stamp",
    ["2024-06-03 00:00Z", "2024-06-03 04:00Z", "2024-06-03 13:30Z", "2024-06-03 20:00Z", "2024-06-03 12:00Z"],
)
def test_daily_stamps_move_to_the_session_open(stamp):
    assert bar_grid.conform(bars_at(stamp), "AAA", "1d")["ts"].iloc[0] == pd.Timestamp("2024-06-03 13:30Z")


def test_a_daily_stamp_after_the_close_names_no_session():
    with pytest.raises(
        bar_grid.OffGridError, match=r"AAA 1d: bar 1 of 1: a daily bar stamped 2024-06-03 22:00 UTC"
    ):
        bar_grid.conform(bars_at("2024-06-03 22:00Z"), "AAA", "1d")


def test_the_calendar_follows_the_exchange(tmp_path):
    london = bars_at(pd.Timestamp("2024-06-03 08:00", tz="Europe/London"))
    assert len(bar_grid.conform(london, "VOD", "15m", exchange="XLON")) == 1
    with pytest.raises(bar_grid.OffGridError, match="before the 09:30 open"):
        bar_grid.conform(london, "VOD", "15m", exchange="XNYS")
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol,primary_exchange\nVOD,LSE\nAAPL,NASDAQ\nKO,\n")
    listings = listings_of(["VOD", "AAPL", "KO", "ELSE"], watchlist)
    assert [listing.calendar for listing in listings] == ["XLON", "XNYS", "XNYS", "XNYS"]
    assert len(bar_grid.conform(london, "VOD", "15m", exchange=listings[0].calendar)) == 1


class FileOfBars:
    """A market-data source that serves one fixed bars frame, as an outside vendor would."""

    name = "vendor"

    def __init__(self, bars: pd.DataFrame) -> None:
        self.bars, self.stats = bars, SourceStats()

    concurrency = 1

    def fetch_chunks(self, listing, timeframe, start, end):
        def fetch() -> pd.DataFrame:
            self.stats.requests += 1
            return self.bars[(self.bars["ts"] >= start) & (self.bars["ts"] < end)].reset_index(drop=True)

        return one_chunk(fetch, self.stats, start, end)

    def close(self) -> None:
        pass


def test_ingest_refuses_off_grid_bars_from_any_source_and_writes_nothing(engine):
    session = list(calendar.expected_bar_starts("1h", ny("2024-12-06"), ny("2024-12-07")))
    vendor = FileOfBars(bars_at(*session[:3], ny("2024-12-06 12:30"), *session[4:]))
    result = fetch_result(engine, vendor, Listing("AAA"), "1h", start=ny("2024-12-06"), now=NOW)
    assert result.status == "failed"
    assert result.error.startswith(
        "AAA 1h: bar 4 of 7: 2024-12-06 17:30 UTC (Fri 12:30 New York): not a 1h bar"
    )
    assert read_bars(engine, ["AAA"], "1h").empty
