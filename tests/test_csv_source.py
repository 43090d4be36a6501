"""CSV/Parquet bars files: accepted variants, one read rule per file, and one clear error per bad file."""

from __future__ import annotations

import pandas as pd
import pytest

from tt_cli.common import market_config
from tt_resources import calendar
from tt_resources.sources import make_source
from tt_resources.sources.base import SymbolNotFound
from tt_resources.sources.csv import CsvFormatError, CsvSource, OutsideWindow
from tt_resources.sources.settings import from_config
from tt_resources.watchlist import Listing

START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC")
EVER = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2030-01-01", tz="UTC")
BAR = ",1,2,0.5,1.5,10\n"  # open, high, low, close, volume of a valid bar

GOOD = """Date,Open,High,Low,Close,Volume,VWAP
2024-06-03T09:30:00-04:00,10,11,9.5,10.5,1000,10.2
2024-06-03T09:45:00-04:00,10.5,11.2,10.1,11,800,10.7
2024-06-03T10:00:00-04:00,11,11.5,10.8,11.1,900,11.1
"""
HEADER = "timestamp,open,high,low,close,volume\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def rows(*stamps: str) -> str:
    return HEADER + "".join(stamp + BAR for stamp in stamps)


def test_capitalised_columns_and_offsets(tmp_path):
    write(tmp_path, "AAPL_15m.csv", GOOD)
    bars = CsvSource(tmp_path).fetch(Listing("AAPL"), "15m", START, END)
    assert list(bars["ts"]) == [utc("2024-06-03 13:30"), utc("2024-06-03 13:45"), utc("2024-06-03 14:00")]
    assert list(bars["close"]) == [10.5, 11.0, 11.1]
    assert list(bars["wap"]) == [10.2, 10.7, 11.1]
    assert bars["bar_count"].isna().all()


def test_window_is_half_open(tmp_path):
    write(tmp_path, "AAPL_15m.csv", GOOD)
    bars = CsvSource(tmp_path).fetch(Listing("AAPL"), "15m", utc("2024-06-03 13:45"), utc("2024-06-03 14:00"))
    assert len(bars) == 1


def test_offsets_that_cross_a_clock_change_are_read_per_row(tmp_path):
    """New York leaves EST (-05:00) for EDT (-04:00) on 2024-03-10: both sessions open at 09:30 local."""
    grid = calendar.bar_table("15m", utc("2024-03-08"), utc("2024-03-12"))["ts"]
    local = grid.dt.tz_convert("America/New_York").map(lambda t: t.isoformat())
    assert local.iloc[0].endswith("-05:00") and local.iloc[-1].endswith("-04:00")
    write(tmp_path, "AAPL_15m.csv", rows(*local))
    bars = CsvSource(tmp_path).fetch(Listing("AAPL"), "15m", START, END)
    assert list(bars["ts"]) == list(grid)
    assert bars["ts"].iloc[0] == utc("2024-03-08 14:30") and bars["ts"].iloc[26] == utc("2024-03-11 13:30")


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-06-03T13:30:00Z",
        "2024-06-03 13:30:00 UTC",
        "2024-06-03T09:30:00-0400",
        "2024-06-03T09:30-04",
        "2024-06-03T19:00:00.000+05:30",
    ],
)
def test_offset_spellings(tmp_path, stamp):
    write(tmp_path, "AAPL_15m.csv", rows(stamp, "2024-06-13T13:45:00Z"))
    assert CsvSource(tmp_path).fetch(Listing("AAPL"), "15m", START, END)["ts"].iloc[0] == utc(
        "2024-06-03 13:30"
    )


def test_parquet_with_naive_times_and_a_configured_zone(tmp_path, monkeypatch):
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-06-03 09:30", "2024-06-03 10:00"]),
            "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5],
            "volume": [10, 20], "barCount": [3, 4],
        }
    )  # fmt: skip
    frame.to_parquet(tmp_path / "MSFT_1h.parquet")
    with pytest.raises(CsvFormatError, match=r"MSFT_1h\.parquet: row 1: naive timestamp .* --tz / TT_CSV_TZ"):
        CsvSource(tmp_path).fetch(Listing("MSFT"), "1h", START, END)
    bars = CsvSource(tmp_path, tz="America/New_York").fetch(Listing("MSFT"), "1h", START, END)
    assert list(bars["ts"]) == [utc("2024-06-03 13:30"), utc("2024-06-03 14:00")]
    assert list(bars["bar_count"]) == [3.0, 4.0]
    monkeypatch.setenv("TT_CSV_TZ", "America/New_York")  # the setting names the zone just as well
    monkeypatch.setenv("TT_CSV_DIR", str(tmp_path))
    configured = make_source(from_config(market_config("csv")))
    assert configured.fetch(Listing("MSFT"), "1h", START, END)["ts"].equals(bars["ts"])


def test_naive_time_in_a_clock_change_names_the_line(tmp_path):
    write(tmp_path, "AAPL_1h.csv", rows("2024-03-08 15:00", "2024-03-10 02:30"))
    with pytest.raises(CsvFormatError, match=r"line 3: '2024-03-10 02:30' does not exist or is ambiguous in"):
        CsvSource(tmp_path, tz="America/New_York").fetch(Listing("AAPL"), "1h", START, END)


def test_unknown_zone_is_refused():
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone"):
        CsvSource(".", tz="Mars/Olympus")


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-11-27",  # a date
        "2024/11/27",
        "20241127",
        "27 Nov 2024",
        "2024-11-27T00:00:00Z",  # midnight UTC
        "2024-11-27T00:00:00-05:00",  # midnight New York, written with its offset
        "2024-11-27T00:00:00+09:00",  # midnight where it was written: that date, not the day before
        "2024-11-27T05:00:00Z",  # midnight New York, converted to UTC
        "2024-11-27T09:30:00-05:00",  # the open
        "2024-11-27T16:00:00-05:00",  # the close
        "2024-11-27T21:00:00Z",  # the close in UTC
    ],
)
def test_every_daily_stamp_of_a_session_is_stored_at_its_open(tmp_path, stamp):
    write(tmp_path, "KO_1d.csv", rows(stamp))
    assert list(CsvSource(tmp_path).fetch(Listing("KO"), "1d", START, END)["ts"]) == [utc("2024-11-27 14:30")]


def test_parquet_daily_bars_at_midnight_in_their_zone(tmp_path):
    frame = pd.DataFrame(
        {
            "date": pd.DatetimeIndex(["2024-11-27", "2024-11-29"]).tz_localize("Asia/Tokyo"),
            "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
        }
    )  # fmt: skip
    frame.to_parquet(tmp_path / "KO_1d.parquet")
    bars = CsvSource(tmp_path).fetch(Listing("KO"), "1d", START, END)
    assert list(bars["ts"]) == [utc("2024-11-27 14:30"), utc("2024-11-29 14:30")]


@pytest.mark.parametrize(
    ("stamp", "message"),
    [
        ("2024-11-28", r"line 3: 2024-11-28 \(Thursday\) is not a trading day on NYSE \(exchange holiday\)"),
        ("2024-11-30", r"line 3: 2024-11-30 is a Saturday: no trading on NYSE"),
        ("2024-11-27T22:00:00Z", r"line 3: a daily bar stamped 2024-11-27 22:00 UTC \(Wed 17:00 New York\) "),
        (
            "2024-11-26T16:00:00-05:00",
            r"line 3: daily bar .* names the session of 2024-11-26 again, as line 2",
        ),
    ],
)
def test_daily_stamps_without_a_session_of_their_own(tmp_path, stamp, message):
    first = "2024-11-26" if "T" not in stamp else "2024-11-26T09:30:00-05:00"
    write(tmp_path, "KO_1d.csv", rows(first, stamp))
    with pytest.raises(CsvFormatError, match=message):
        CsvSource(tmp_path).fetch(Listing("KO"), "1d", START, END)


REAL_WEEK = ("01/09/2004", "02/09/2004", "03/09/2004", "07/09/2004", "08/09/2004", "09/09/2004")
SEPTEMBER = [calendar.session_open(f"2004-09-{day:02d}") for day in (1, 2, 3, 7, 8, 9)]


def test_ambiguous_day_month_dates_need_a_format(tmp_path):
    """The real week 1-9 September 2004 (6 September was Labor Day): read month-first it would be Jan 9 ..."""
    write(tmp_path, "KO_1d.csv", rows(*REAL_WEEK))
    with pytest.raises(
        CsvFormatError, match=r"line 2: dates such as '01/09/2004' read both .* --date-format"
    ):
        CsvSource(tmp_path).fetch(Listing("KO"), "1d", EVER[0], EVER[1])
    bars = CsvSource(tmp_path, date_format="day-first").fetch(Listing("KO"), "1d", EVER[0], EVER[1])
    assert list(bars["ts"]) == SEPTEMBER


def test_a_day_above_12_makes_the_whole_file_day_first(tmp_path):
    write(tmp_path, "KO_1d.csv", rows(*REAL_WEEK, "10/09/2004", "13/09/2004"))
    bars = CsvSource(tmp_path).fetch(Listing("KO"), "1d", EVER[0], EVER[1])
    expected = [*SEPTEMBER, calendar.session_open("2004-09-10"), calendar.session_open("2004-09-13")]
    assert list(bars["ts"]) == expected
    with pytest.raises(
        CsvFormatError, match=r"line 9: '13/09/2004' is not a valid date and time \(month-first\)"
    ):
        CsvSource(tmp_path, date_format="month-first").fetch(Listing("KO"), "1d", EVER[0], EVER[1])


def test_month_first_file_and_a_file_mixing_both_orders(tmp_path):
    write(tmp_path, "KO_1d.csv", rows("09/10/2004", "09/13/2004"))
    bars = CsvSource(tmp_path).fetch(Listing("KO"), "1d", EVER[0], EVER[1])
    assert list(bars["ts"]) == [calendar.session_open("2004-09-10"), calendar.session_open("2004-09-13")]
    write(tmp_path, "KO_1d.csv", rows("13/09/2004", "09/14/2004"))
    with pytest.raises(
        CsvFormatError, match=r"line 3: '09/14/2004' is month-first but '13/09/2004' \(line 2\)"
    ):
        CsvSource(tmp_path).fetch(Listing("KO"), "1d", EVER[0], EVER[1])


def test_a_1999_file_is_on_the_calendar(tmp_path):
    write(tmp_path, "KO_1d.csv", rows("1999-01-04", "1999-01-05"))
    bars = CsvSource(tmp_path).fetch(Listing("KO"), "1d", EVER[0], EVER[1])
    assert list(bars["ts"]) == [utc("1999-01-04 14:30"), utc("1999-01-05 14:30")]


def test_a_file_outside_the_window_says_where_its_bars_are(tmp_path):
    write(tmp_path, "KO_1d.csv", rows("1999-01-04", "1999-01-05"))
    with pytest.raises(OutsideWindow) as info:
        CsvSource(tmp_path).fetch(Listing("KO"), "1d", START, END)
    assert str(info.value) == (
        f"{tmp_path / 'KO_1d.csv'}: nothing stored: its 2 bars from 1999-01-04 to 1999-01-05 lie all before "
        "the window 2024-01-01 00:00 .. 2025-01-01 00:00 UTC; pass --start 1999-01-04 (or earlier) to ingest them"
    )


def test_missing_file_is_symbol_not_found(tmp_path):
    with pytest.raises(SymbolNotFound, match="NOPE_1d"):
        CsvSource(tmp_path).fetch(Listing("NOPE"), "1d", START, END)


ROW1 = "2024-06-03T13:30:00Z,10,11,9,10.5,100\n"
ROW2 = "2024-06-03T13:45:00Z,10,11,9,10.5,100\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,open,high,close,volume\n2024-06-03T13:30:00Z,1,2,1,5\n", r"missing column\(s\) low"),
        (HEADER, r"BAD_15m\.csv: no rows \(only the header timestamp,open,high,low,close,volume\)"),
        ("", r"BAD_15m\.csv: empty file"),
        (HEADER + ROW1 + "yesterday,10,11,9,10.5,100\n", r"line 3: unparsable timestamp 'yesterday'"),
        (HEADER + ROW1 + "\n\nyesterday,10,11,9,10.5,100\n", r"line 5: unparsable timestamp 'yesterday'"),
        (HEADER + ROW1 + ",10,11,9,10.5,100\n", r"line 3: timestamp missing"),
        (
            HEADER + ROW1 + "2024-02-30T13:45:00Z,10,11,9,10.5,100\n",
            r"line 3: '2024-02-30T13:45:00Z' is not a",
        ),
        (
            HEADER + ROW1 + "2024-06-03 09:45,10,11,9,10.5,100\n",
            r"line 3: '2024-06-03 09:45' has no UTC offset",
        ),
        (HEADER + ROW2 + ROW1, r"line 3: timestamp before the previous row's"),
        (HEADER + ROW1 + ROW1, r"line 3: duplicate timestamp"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,,100\n", r"line 3: close missing or not positive"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,-1,11,9,10,100\n", r"line 3: open missing or not positive"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,9,11,10,100\n", r"line 3: high < low"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,12,11,9,10,100\n", r"line 3: open outside \[low, high\]"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,10,-5\n", r"line 3: volume missing or negative"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,ten,100\n", r"line 3: close is not a number"),
        (HEADER + ROW1 + "2024-06-03T12:00:00Z,10,11,9,10,100\n", r"line 3: timestamp before"),
        (HEADER + ROW1 + "2024-06-03T20:00:00Z,10,11,9,10,100\n", r"line 3: .* at or after the 16:00 close"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, text, message):
    write(tmp_path, "BAD_15m.csv", text)
    with pytest.raises(CsvFormatError, match=message) as info:
        CsvSource(tmp_path).fetch(Listing("BAD"), "15m", START, END)
    assert str(info.value).startswith(str(tmp_path / "BAD_15m.csv")) and "\n" not in str(info.value)


def daily_file(days: int = 30, split_at: int | None = None, ratio: float = 2.0) -> str:
    """A 1d file of `days` sessions from 2026-05-01 at ~100 (slowly rising, 1e6 volume); from line
    `split_at` (1-based data row) on, prices / ratio and volume x ratio: an unadjusted split."""
    sessions = calendar.expected_bar_starts("1d", utc("2026-05-01"), utc("2026-08-01"))[:days]
    lines = ["date,open,high,low,close,volume"]
    for i, ts in enumerate(sessions):
        price, volume = 100 + i * 0.1, 1_000_000
        if split_at is not None and i + 1 >= split_at:
            price, volume = price / ratio, volume * ratio
        lines.append(
            f"{ts:%Y-%m-%d},{price:.2f},{price + 1:.2f},{price - 1:.2f},{price + 0.5:.2f},{volume:.0f}"
        )
    return "\n".join(lines) + "\n"


def test_an_unadjusted_split_is_rejected_naming_the_line_and_the_ratio(tmp_path):
    write(tmp_path, "SPLT_1d.csv", daily_file(split_at=20))
    with pytest.raises(CsvFormatError) as exc:
        CsvSource(tmp_path).fetch(Listing("SPLT"), "1d", *EVER)
    assert str(exc.value) == (
        f"{tmp_path / 'SPLT_1d.csv'}: line 21: 2026-05-29 13:30 UTC: previous close 102.3 -> open 50.95 (x0.498) "
        "with volume x2.00 looks like an unadjusted 2:1 split; adjust the file, or name the split in "
        f"{tmp_path / 'splits.csv'} (symbol,date,ratio: SPLT,2026-05-29,2:1) to have it adjusted on reading; "
        "nothing from this file is used"
    )


def test_a_declared_split_is_adjusted_on_reading_and_an_adjusted_file_is_left_alone(tmp_path):
    write(tmp_path, "SPLT_1d.csv", daily_file(split_at=20))
    write(tmp_path, "KEEP_1d.csv", daily_file())  # already adjusted: no jump at its declared split
    write(tmp_path, "splits.csv", "symbol,date,ratio\nSPLT,2026-05-29,2:1\nKEEP,2026-05-29,2:1\n")
    source = CsvSource(tmp_path)
    splt = source.fetch(Listing("SPLT"), "1d", *EVER)
    assert splt["close"].iloc[18] == pytest.approx((100 + 18 * 0.1 + 0.5) / 2)  # the day before: halved
    assert splt["volume"].iloc[18] == 2_000_000 and splt["close"].iloc[19] == pytest.approx(50.95 + 0.5)
    keep = source.fetch(Listing("KEEP"), "1d", *EVER)
    assert keep["close"].iloc[18] == pytest.approx(100 + 18 * 0.1 + 0.5)
    write(tmp_path, "splits.csv", "symbol,date,ratio\nSPLT,2026-13-01,2:1\n")
    with pytest.raises(CsvFormatError, match=r"splits.csv: line 2: .*need a date like 2026-06-10"):
        source.fetch(Listing("SPLT"), "1d", *EVER)


@pytest.mark.parametrize(
    ("kept", "cut", "why"),
    [(5, ",1", "volume 1, under 1/100 of the median 1e+06"), (4, "", "4 fields where the line before has 6")],
)
def test_a_truncated_last_line_is_rejected(tmp_path, kept, cut, why):
    whole = daily_file(days=30).rstrip("\n")  # no final newline
    head, last = whole.rsplit("\n", 1)
    write(tmp_path, "CUT_1d.csv", head + "\n" + ",".join(last.split(",")[:kept]) + cut)
    with pytest.raises(CsvFormatError) as exc:
        CsvSource(tmp_path).fetch(Listing("CUT"), "1d", *EVER)
    assert str(exc.value).startswith(
        f"{tmp_path / 'CUT_1d.csv'}: line 31: the last line has no final newline"
    )
    assert why in str(exc.value) and "cut off while written" in str(exc.value)
    write(tmp_path, "CUT_1d.csv", whole)
    assert len(CsvSource(tmp_path).fetch(Listing("CUT"), "1d", *EVER)) == 30  # a whole last line is fine


@pytest.mark.parametrize(("sep", "name"), [(";", "';'"), ("\t", "tab")])
def test_a_rejection_about_the_separator_says_so(tmp_path, sep, name):
    write(tmp_path, "SEMI_1d.csv", daily_file(days=3).replace(",", sep))
    with pytest.raises(CsvFormatError, match=f"the columns are separated by {name}, not commas"):
        CsvSource(tmp_path).fetch(Listing("SEMI"), "1d", *EVER)


def test_an_unadjusted_split_in_a_parquet_file_is_rejected_naming_the_row(tmp_path):
    from io import StringIO

    pd.read_csv(StringIO(daily_file(split_at=20))).to_parquet(tmp_path / "SPLT_1d.parquet")
    with pytest.raises(
        CsvFormatError, match=r"SPLT_1d.parquet: row 20: .* looks like an unadjusted 2:1 split"
    ):
        CsvSource(tmp_path).fetch(Listing("SPLT"), "1d", *EVER)
