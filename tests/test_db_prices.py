"""Price bars on both backends: idempotent upserts, validation, UTC round trip, readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tt_resources.db import BarValidationError, create_engine, high_water_marks, read_bars, upsert_price_bars
from tt_resources.db.schema import prices


def make_bars(
    symbol: str = "AAPL", timeframe: str = "1h", start: str = "2024-03-01 14:00", n: int = 6
) -> pd.DataFrame:
    """`n` valid hourly-spaced bars with distinct prices."""
    ts = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "ts": ts,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": 1000.0 * (1 + np.arange(n)),
            "wap": close - 0.1,
            "bar_count": np.arange(n) + 10,
            "source": "test",
        }
    )


def stored(engine) -> pd.DataFrame:
    """Every stored bar through plain Core (UTCDateTime's own result processing)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(prices).order_by(prices.c.symbol, prices.c.timeframe, prices.c.ts)
        ).all()
    return pd.DataFrame(rows, columns=prices.c.keys())


def test_same_batch_twice_gives_same_rows(engine):
    bars = pd.concat([make_bars("AAPL"), make_bars("MSFT"), make_bars("AAPL", "1d", n=3)])
    first = upsert_price_bars(engine, bars)
    before = stored(engine)
    second = upsert_price_bars(engine, bars)
    after = stored(engine)
    assert (first.rows, first.inserted, first.updated, first.unchanged) == (15, 15, 0, 0)
    assert (second.rows, second.inserted, second.updated, second.unchanged) == (15, 0, 0, 15)
    pd.testing.assert_frame_equal(
        before, after
    )  # ingested_at untouched too: unchanged rows are not rewritten
    assert len(after) == 15


def test_changed_values_update_and_new_tail_appends(engine):
    upsert_price_bars(engine, make_bars(n=6))
    revised = make_bars(n=8)  # rows 0-5 overlap, 6-7 are past the high-water mark
    revised.loc[2, ["close", "high"]] = [150.0, 151.0]
    revised.loc[3, "wap"] = np.nan
    result = upsert_price_bars(engine, revised)
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (8, 2, 2, 4)
    bars = read_bars(engine, "AAPL", "1h")
    assert len(bars) == 8
    assert bars.loc[2, ["close", "high"]].tolist() == [150.0, 151.0]
    assert np.isnan(bars.loc[3, "wap"])
    assert bars["close"].iloc[-1] == 107.0


def test_source_argument_fills_missing_column(engine):
    upsert_price_bars(engine, make_bars(n=2).drop(columns=["source", "wap", "bar_count"]), source="synthetic")
    table = stored(engine)
    assert set(table["source"]) == {"synthetic"}
    assert table["wap"].isna().all() and table["bar_count"].isna().all()


def _break(rule: str, bars: pd.DataFrame) -> pd.DataFrame:
    """Corrupt row 3 of `bars` so that it breaks `rule`."""
    bad = bars.copy()
    if rule == "nan_price":
        bad.loc[3, "open"] = np.nan
    elif rule == "zero_price":
        bad.loc[3, ["low", "open"]] = 0.0
    elif rule == "negative_price":
        bad.loc[3, ["low", "open", "close", "high"]] = [-2.0, -1.5, -1.5, -1.0]
    elif rule == "high_below_low":
        bad.loc[3, ["high", "low"]] = [bad.loc[3, "low"], bad.loc[3, "high"]]
    elif rule == "open_outside":
        bad.loc[3, "open"] = bad.loc[3, "high"] + 0.01
    elif rule == "close_outside":
        bad.loc[3, "close"] = bad.loc[3, "low"] - 0.01
    elif rule == "negative_volume":
        bad.loc[3, "volume"] = -1.0
    elif rule == "duplicate_key":
        bad.loc[2, "ts"] = bad.loc[3, "ts"]
    elif rule == "unknown_timeframe":
        bad.loc[3, "timeframe"] = "5m"
    return bad


RULES = {
    "nan_price": "NaN or non-positive price",
    "zero_price": "NaN or non-positive price",
    "negative_price": "NaN or non-positive price",
    "high_below_low": "high < low",
    "open_outside": "open outside [low, high]",
    "close_outside": "close outside [low, high]",
    "negative_volume": "negative volume",
    "duplicate_key": "duplicate (symbol, timeframe, ts)",
    "unknown_timeframe": "unknown timeframe",
}


@pytest.mark.parametrize("rule", list(RULES))
def test_every_validation_rule_rejects_the_batch_and_writes_nothing(engine, rule):
    upsert_price_bars(engine, make_bars("AAPL", start="2024-02-01", n=2))
    before = stored(engine)
    good_other_symbol = make_bars("MSFT", n=6)
    bars = pd.concat([good_other_symbol, _break(rule, make_bars("AAPL", n=6))], ignore_index=True)
    with pytest.raises(BarValidationError) as err:
        upsert_price_bars(engine, bars)
    message = str(err.value)
    timeframe = "5m" if rule == "unknown_timeframe" else "1h"
    assert RULES[rule] in message
    assert f"AAPL {timeframe}" in message
    assert "2024-03-01T17:00:00+00:00" in message  # row 3's ts (for duplicates: the repeated one)
    assert "\n" not in message
    pd.testing.assert_frame_equal(stored(engine), before)


def test_naive_timestamps_are_rejected(engine):
    bars = make_bars("TSLA", "1d")
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    with pytest.raises(BarValidationError, match=r"TSLA 1d: naive timestamp .* 2024-03-01T14:00:00"):
        upsert_price_bars(engine, bars)
    assert stored(engine).empty


def test_missing_columns_are_named(engine):
    with pytest.raises(BarValidationError, match=r"lacks column.*volume"):
        upsert_price_bars(engine, make_bars().drop(columns=["volume"]))


def test_utc_round_trip_from_any_zone(engine):
    bars = make_bars(n=3)
    bars["ts"] = pd.DatetimeIndex(
        ["2024-03-10 01:30:00.250000", "2024-03-10 03:30:00", "2024-11-03 01:30:00"]
    ).tz_localize("America/New_York", ambiguous=[True, True, False])
    upsert_price_bars(engine, bars)
    expected = bars["ts"].dt.tz_convert("UTC").astype("datetime64[us, UTC]").reset_index(drop=True)
    read = read_bars(engine, "AAPL", "1h")["ts"]
    pd.testing.assert_series_equal(read, expected, check_names=False)
    core = stored(engine)["ts"].tolist()  # UTCDateTime's own result processing agrees
    assert [t.tzinfo is not None and t.utcoffset().total_seconds() == 0 for t in core] == [True] * 3
    assert core == list(expected)


def test_rows_written_by_core_and_by_bulk_path_compare_equal(engine):
    """Core inserts and the vectorised writers store timestamps identically (no duplicate keys appear)."""
    bars = make_bars(n=2)
    now = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()
    with engine.begin() as conn:
        conn.execute(sa.insert(prices), [{**row, "ingested_at": now} for row in bars.to_dict("records")])
    result = upsert_price_bars(engine, bars)
    assert (result.inserted, result.unchanged) == (0, 2)
    assert len(stored(engine)) == 2


def test_read_bars_filters_symbols_and_window(engine):
    upsert_price_bars(
        engine, pd.concat([make_bars("A", n=5), make_bars("AA", n=5), make_bars("A", "1d", n=2)])
    )
    window = read_bars(
        engine, ["A"], "1h", start="2024-03-01 15:00Z", end=pd.Timestamp("2024-03-01 17:00", tz="UTC")
    )
    assert window["symbol"].tolist() == ["A", "A"]
    assert window["ts"].dt.hour.tolist() == [15, 16]  # start inclusive, end exclusive
    assert list(window.columns) == [
        "symbol",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "wap",
        "bar_count",
    ]
    both = read_bars(engine, None, "1h")
    assert both["symbol"].tolist() == ["A"] * 5 + ["AA"] * 5
    with pytest.raises(ValueError, match="naive"):
        read_bars(engine, "A", "1h", start="2024-03-01")
    assert read_bars(engine, "ZZZ", "1h").empty


def test_high_water_marks_per_partition(engine):
    empty = high_water_marks(engine)
    assert empty.empty and list(empty.columns) == ["symbol", "timeframe", "first_ts", "last_ts", "n_bars"]
    upsert_price_bars(
        engine, pd.concat([make_bars("A", n=5), make_bars("AA", n=2), make_bars("A", "1d", n=3)])
    )
    marks = high_water_marks(engine)
    assert marks[["symbol", "timeframe", "n_bars"]].values.tolist() == [
        ["A", "1d", 3],
        ["A", "1h", 5],
        ["AA", "1h", 2],
    ]
    assert marks["last_ts"].tolist() == [
        pd.Timestamp("2024-03-01 16:00", tz="UTC"),
        pd.Timestamp("2024-03-01 18:00", tz="UTC"),
        pd.Timestamp("2024-03-01 15:00", tz="UTC"),
    ]
    assert high_water_marks(engine, "1d")["symbol"].tolist() == ["A"]


def test_concurrent_writer_past_the_high_water_mark_falls_back_to_upsert(engine):
    """A row committed by someone else between our high-water-mark read and our append is not lost."""
    upsert_price_bars(engine, make_bars(n=2))
    intruder = make_bars(n=4).iloc[[3]]
    other = create_engine(engine.url)

    def insert_once(conn, cursor, statement, *args):
        if "max(" in statement and not getattr(insert_once, "done", False):
            insert_once.done = True
            upsert_price_bars(other, intruder)

    sa.event.listen(engine, "after_cursor_execute", insert_once)
    try:
        result = upsert_price_bars(engine, make_bars(n=4))
    finally:
        sa.event.remove(engine, "after_cursor_execute", insert_once)
        other.dispose()
    assert insert_once.done
    assert (result.rows, result.inserted, result.unchanged) == (4, 1, 3)
    assert len(read_bars(engine, "AAPL", "1h")) == 4


def test_upsert_joins_a_callers_transaction(engine):
    with engine.connect() as conn, conn.begin() as tx:
        assert upsert_price_bars(conn, make_bars(n=3)).inserted == 3
        assert upsert_price_bars(conn, make_bars(n=4)).inserted == 1
        assert len(read_bars(conn, "AAPL", "1h")) == 4
        tx.rollback()
    assert stored(engine).empty


def test_empty_batch_writes_nothing(engine):
    result = upsert_price_bars(engine, make_bars(n=0))
    assert (result.rows, result.inserted) == (0, 0) and stored(engine).empty
