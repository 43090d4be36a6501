"""CSV/Parquet bars files: accepted variants and one clear error per bad file."""

from __future__ import annotations

import pandas as pd
import pytest

from tt_resources.csv_source import CsvFormatError, CsvSource
from tt_resources.sources import SymbolNotFound

START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC")

GOOD = """Date,Open,High,Low,Close,Volume,VWAP
2024-06-03T09:30:00-04:00,10,11,9.5,10.5,1000,10.2
2024-06-03T09:45:00-04:00,10.5,11.2,10.1,11,800,10.7
2024-06-03T10:00:00-04:00,11,11.5,10.8,11.1,900,11.1
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_capitalised_columns_and_offsets(tmp_path):
    write(tmp_path, "AAPL_15m.csv", GOOD)
    bars = CsvSource(tmp_path).fetch("AAPL", "15m", START, END)
    assert list(bars["ts"]) == [
        pd.Timestamp(t, tz="UTC") for t in ("2024-06-03 13:30", "2024-06-03 13:45", "2024-06-03 14:00")
    ]
    assert list(bars["close"]) == [10.5, 11.0, 11.1]
    assert list(bars["wap"]) == [10.2, 10.7, 11.1]
    assert bars["bar_count"].isna().all()


def test_window_is_half_open(tmp_path):
    write(tmp_path, "AAPL_15m.csv", GOOD)
    bars = CsvSource(tmp_path).fetch(
        "AAPL", "15m", pd.Timestamp("2024-06-03 13:45", tz="UTC"), pd.Timestamp("2024-06-03 14:00", tz="UTC")
    )
    assert len(bars) == 1


def test_parquet_with_naive_times_and_a_configured_zone(tmp_path):
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-06-03 09:30", "2024-06-03 10:00"]),
            "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5],
            "volume": [10, 20], "barCount": [3, 4],
        }
    )  # fmt: skip
    frame.to_parquet(tmp_path / "MSFT_1h.parquet")
    with pytest.raises(CsvFormatError, match=r"MSFT_1h\.parquet: row 1: naive timestamp"):
        CsvSource(tmp_path).fetch("MSFT", "1h", START, END)
    bars = CsvSource(tmp_path, tz="America/New_York").fetch("MSFT", "1h", START, END)
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-06-03 13:30", tz="UTC")
    assert list(bars["bar_count"]) == [3.0, 4.0]


def test_daily_dates_mean_the_session_open(tmp_path):
    write(
        tmp_path,
        "KO_1d.csv",
        "date,open,high,low,close,volume\n2024-11-27,1,2,0.5,1.5,10\n2024-11-29,1,2,0.5,1.5,10\n",
    )
    bars = CsvSource(tmp_path).fetch("KO", "1d", START, END)
    assert list(bars["ts"]) == [
        pd.Timestamp("2024-11-27 14:30", tz="UTC"),
        pd.Timestamp("2024-11-29 14:30", tz="UTC"),
    ]
    write(tmp_path, "KO_1d.csv", "date,open,high,low,close,volume\n2024-11-28,1,2,0.5,1.5,10\n")
    with pytest.raises(CsvFormatError, match=r"row 1: 2024-11-28 is not an NYSE session"):
        CsvSource(tmp_path).fetch("KO", "1d", START, END)


def test_missing_file_is_symbol_not_found(tmp_path):
    with pytest.raises(SymbolNotFound, match="NOPE_1d"):
        CsvSource(tmp_path).fetch("NOPE", "1d", START, END)


HEADER = "timestamp,open,high,low,close,volume\n"
ROW1 = "2024-06-03T13:30:00Z,10,11,9,10.5,100\n"
ROW2 = "2024-06-03T13:45:00Z,10,11,9,10.5,100\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,open,high,close,volume\n2024-06-03T13:30:00Z,1,2,1,5\n", r"missing column\(s\) low"),
        (HEADER + ROW1 + "yesterday,10,11,9,10.5,100\n", r"row 2: unparsable timestamp 'yesterday'"),
        (HEADER + ROW2 + ROW1, r"row 2: timestamp before the previous row's"),
        (HEADER + ROW1 + ROW1, r"row 2: duplicate timestamp"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,,100\n", r"row 2: close missing or not positive"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,-1,11,9,10,100\n", r"row 2: open missing or not positive"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,9,11,10,100\n", r"row 2: high < low"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,10,-5\n", r"row 2: volume missing or negative"),
        (HEADER + ROW1 + "2024-06-03T13:45:00Z,10,11,9,ten,100\n", r"row 2: close is not a number"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, text, message):
    write(tmp_path, "BAD_15m.csv", text)
    with pytest.raises(CsvFormatError, match=message) as info:
        CsvSource(tmp_path).fetch("BAD", "15m", START, END)
    assert "BAD_15m.csv" in str(info.value) and "\n" not in str(info.value)
