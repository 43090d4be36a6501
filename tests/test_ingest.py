"""Incremental ingest with the synthetic and CSV sources on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.refreshing import fetch_result, fetch_results
from tt_resources import calendar
from tt_resources.db.corporate_actions import recorded_actions
from tt_resources.db.prices import read_bars, upsert_price_bars
from tt_resources.ingest import overlap_start
from tt_resources.sources.csv import CsvSource
from tt_resources.sources.synthetic import SyntheticSource
from tt_resources.timeframes import TIMEFRAME_NAMES
from tt_resources.watchlist import Listing

NOW = pd.Timestamp("2026-11-18 21:30", tz="UTC")  # Wednesday after the close
START = pd.Timestamp("2026-10-26", tz="UTC")
TIMEFRAMES = TIMEFRAME_NAMES


class Clock:
    """A settable clock shared by the test and the synthetic source."""

    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def synthetic(clock) -> SyntheticSource:
    return SyntheticSource(seed=11, clock=clock)


def stored(engine, symbol: str, timeframe: str) -> pd.DataFrame:
    return read_bars(engine, [symbol], timeframe)


def test_first_run_stores_every_bar_then_second_run_is_fresh_with_zero_requests(engine, synthetic, clock):
    results = fetch_results(
        engine, synthetic, [Listing("AAA"), Listing("BBB")], TIMEFRAMES, start=START, now=clock.now
    )
    assert [r.status for r in results] == ["updated"] * 6
    assert all(r.requests == 1 and r.bars_written == r.bars_fetched > 0 for r in results)
    for timeframe in TIMEFRAMES:
        bars = stored(engine, "AAA", timeframe)
        target = calendar.last_closed_bar(timeframe, NOW)
        expected = calendar.expected_bar_starts(timeframe, START, target + pd.Timedelta(seconds=1))
        assert list(bars["ts"]) == list(expected)
        source_bars = synthetic.fetch(Listing("AAA"), timeframe, START, NOW)
        assert bars["close"].to_list() == pytest.approx(source_bars["close"].to_list())

    requests_before = synthetic.stats.requests
    again = fetch_results(
        engine, synthetic, [Listing("AAA"), Listing("BBB")], TIMEFRAMES, start=START, now=clock.now
    )
    assert {r.status for r in again} == {"fresh"}
    assert sum(r.requests for r in again) == 0
    assert synthetic.stats.requests == requests_before


def test_tail_update_fetches_only_the_missing_tail_and_rereads_two_sessions(engine, synthetic, clock):
    fetch_results(engine, synthetic, [Listing("AAA")], TIMEFRAMES, start=START, now=clock.now)
    last = {tf: stored(engine, "AAA", tf)["ts"].iloc[-1] for tf in TIMEFRAMES}
    clock.now = NOW + pd.Timedelta(days=2)  # Friday after the close
    results = fetch_results(engine, synthetic, [Listing("AAA")], TIMEFRAMES, now=clock.now)
    for result in results:
        assert result.status == "updated" and result.requests == 1
        # the stored bars of the last two sessions (Wednesday's and Tuesday's) are fetched again
        assert (
            result.first_ts
            == overlap_start(last[result.timeframe])
            == pd.Timestamp("2026-11-17 14:30", tz="UTC")
        )
        bars = stored(engine, "AAA", result.timeframe)
        assert bars["ts"].is_unique
        target = calendar.last_closed_bar(result.timeframe, clock.now)
        assert list(bars["ts"]) == list(
            calendar.expected_bar_starts(result.timeframe, START, target + pd.Timedelta(1, "s"))
        )
    assert [r.bars_fetched for r in results] == [4, 28, 104]  # 2 new sessions + the 2 re-read ones
    assert [r.bars_written for r in results] == [2, 14, 52]  # the re-read bars are unchanged: not rewritten


def test_revised_last_bar_is_corrected(engine, synthetic, clock):
    fetch_result(engine, synthetic, Listing("AAA"), "1d", start=START, now=clock.now)
    bars = stored(engine, "AAA", "1d")
    wrong = bars.tail(1).assign(symbol="AAA", timeframe="1d", close=bars["low"].iloc[-1])
    upsert_price_bars(engine, wrong)
    clock.now = NOW + pd.Timedelta(days=1)
    result = fetch_result(engine, synthetic, Listing("AAA"), "1d", now=clock.now)
    assert result.bars_written == 2  # the corrected bar + the new one
    assert result.changes == (
        f"revision: 1 of 2 re-read bars changed, e.g. {bars['ts'].iloc[-1]:%Y-%m-%d %H:%M} UTC close "
        f"{bars['low'].iloc[-1]:g} -> {bars['close'].iloc[-1]:g}, volume {bars['volume'].iloc[-1]:g} -> "
        f"{bars['volume'].iloc[-1]:g}",
    )
    assert list(recorded_actions(engine)["kind"]) == ["revision"]
    fixed = stored(engine, "AAA", "1d").set_index("ts")["close"]
    assert fixed[wrong["ts"].iloc[0]] == pytest.approx(bars["close"].iloc[-1])


def test_end_bounds_the_target(engine, synthetic):
    end = pd.Timestamp("2026-11-10", tz="UTC")
    result = fetch_result(engine, synthetic, Listing("AAA"), "1d", start=START, end=end, now=NOW)
    assert result.last_ts == pd.Timestamp("2026-11-09 14:30", tz="UTC")


def test_bad_csv_file_fails_its_partition_only_and_writes_nothing(engine, tmp_path):
    good = SyntheticSource(seed=1, clock=lambda: NOW).fetch(Listing("GOOD"), "1d", START, NOW)
    good.to_csv(tmp_path / "GOOD_1d.csv", index=False)
    bad = good.copy()
    bad.loc[5, "high"] = bad.loc[5, "low"] / 2
    bad.to_csv(tmp_path / "BAD_1d.csv", index=False)
    results = fetch_results(
        engine,
        CsvSource(tmp_path),
        [Listing("BAD"), Listing("GOOD"), Listing("MISSING")],
        ["1d"],
        start=START,
        now=NOW,
    )
    by_symbol = {r.symbol: r for r in results}
    assert by_symbol["GOOD"].status == "updated" and by_symbol["GOOD"].bars_written == len(good)
    assert by_symbol["BAD"].status == "failed"
    assert "BAD_1d.csv: line 7: high < low" in by_symbol["BAD"].error
    assert by_symbol["MISSING"].status == "failed" and "MISSING_1d" in by_symbol["MISSING"].error
    assert stored(engine, "BAD", "1d").empty
