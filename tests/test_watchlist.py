"""Watchlist loading and validation (errors name the file and line)."""

from __future__ import annotations

import pytest

from tt_resources.watchlist import WatchlistError, load_watchlist


def write(tmp_path, text: str):
    path = tmp_path / "watchlist.csv"
    path.write_text(text)
    return path


def test_bundled_watchlist_has_150_distinct_us_stocks():
    watchlist = load_watchlist()
    assert len(watchlist) == 150 and len(set(watchlist.symbols)) == 150
    assert {"A", "AA", "F", "T", "C", "V", "BRK.B"} <= set(watchlist.symbols)
    assert set(watchlist.frame["exchange"]) == {"SMART"} and set(watchlist.frame["currency"]) == {"USD"}
    assert watchlist.frame["sector"].nunique() == 11 and (watchlist.frame["sector"] != "").all()


def test_limit_takes_the_first_symbols_in_file_order():
    assert load_watchlist(limit=3).symbols == load_watchlist().symbols[:3]


def test_symbols_are_stripped_and_upper_cased_and_optional_columns_default(tmp_path):
    path = write(tmp_path, "Symbol\n aapl \n\nbrk.b\n  a\nBF-B\n")
    watchlist = load_watchlist(path)
    assert watchlist.symbols == ["AAPL", "BRK.B", "A", "BF-B"]
    assert watchlist.frame.loc[0, ["exchange", "currency", "sector"]].tolist() == ["SMART", "USD", ""]


def test_optional_columns_in_any_order(tmp_path):
    path = write(tmp_path, "sector,symbol,currency\nEnergy,xom,usd\n")
    assert load_watchlist(path).frame.iloc[0].tolist() == ["XOM", "SMART", "USD", "Energy", ""]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"watchlist\.csv: the watchlist file is empty"),
        ("symbol\n\n  \n", r"watchlist\.csv: the watchlist has no symbols"),
        ("ticker\nAAPL\n", r"watchlist\.csv:1: header must have a 'symbol' column \(got ticker\)"),
        ("symbol\nAAPL\nMSFT\naapl\n", r"watchlist\.csv:4: duplicate symbol AAPL \(first on line 2\)"),
        ("symbol\nAAPL\n\nMS$FT\n", r"watchlist\.csv:4: invalid symbol 'MS\$FT'"),
        ("symbol,sector\nAAPL,Tech\n,Energy\n", r"watchlist\.csv:3: invalid symbol ''"),
        ("symbol\nABCDEFGHIJKLM\n", r"watchlist\.csv:2: invalid symbol 'ABCDEFGHIJKLM'"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(WatchlistError, match=message):
        load_watchlist(write(tmp_path, text))


def test_missing_file_and_bad_limit(tmp_path):
    with pytest.raises(WatchlistError, match=r"nope\.csv: cannot read the watchlist"):
        load_watchlist(tmp_path / "nope.csv")
    with pytest.raises(WatchlistError, match="limit must be a positive"):
        load_watchlist(limit=0)
