"""The pacing throttle (deterministic clock) and the IBKR chunk plan / duration strings."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from tt_resources.ibkr import chunk_plan, duration_for, ib_end
from tt_resources.pacing import PacingRules, PacingThrottle

END = pd.Timestamp("2026-11-18 21:00:01", tz="UTC")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def throttle(**rules) -> tuple[PacingThrottle, FakeClock]:
    clock = FakeClock()
    return PacingThrottle(PacingRules(margin_s=0.0, **rules), clock=clock), clock


def test_rolling_budget():
    pacer, _ = throttle(max_requests=3, window_s=10.0, per_contract=100)
    waits = [pacer.reserve(("r", i), f"C{i}") for i in range(5)]
    assert waits == [0.0, 0.0, 0.0, 10.0, 10.0]


def test_identical_request_is_spaced():
    pacer, clock = throttle(identical_s=15.0)
    assert pacer.reserve("same", "AAPL") == 0.0
    clock.t += 5
    assert pacer.reserve("same", "AAPL") == pytest.approx(10.0)
    assert pacer.reserve("other", "AAPL") == pytest.approx(10.0)  # reservations are handed out in order


def test_per_contract_limit():
    pacer, _ = throttle(per_contract=5, per_contract_window_s=2.0)
    waits = [pacer.reserve(("r", i), "AAPL") for i in range(6)]
    assert waits[:5] == [0.0] * 5 and waits[5] == pytest.approx(2.0)
    assert pacer.reserve("x", "MSFT") == pytest.approx(2.0)  # never earlier than the previous reservation


def test_history_is_forgotten_once_no_rule_needs_it():
    pacer, clock = throttle(max_requests=2, window_s=10.0)
    pacer.reserve("a", "A")
    pacer.reserve("b", "B")
    clock.t += 11
    assert pacer.reserve("c", "C") == 0.0


@pytest.mark.parametrize(
    ("timeframe", "years", "requests", "durations"),
    [("1d", 3, 3, {"1 Y"}), ("1h", 2, 24, {"1 M"}), ("15m", 1, 53, {"1 W", "1 D"})],
)
def test_default_histories_take_the_step_table_minimum(timeframe, years, requests, durations):
    plan = chunk_plan(timeframe, END - pd.DateOffset(years=years), END)
    assert len(plan) == requests
    assert {duration for _, duration in plan} == durations
    assert plan[0][0] == END and all(a[0] > b[0] for a, b in itertools.pairwise(plan))


def test_short_spans_are_whole_days_and_long_daily_spans_years():
    assert duration_for("15m", END - pd.Timedelta(hours=20), END) == "1 D"
    assert duration_for("1h", END - pd.Timedelta(days=3, hours=1), END) == "4 D"
    assert duration_for("1d", END - pd.Timedelta(days=200), END) == "200 D"
    assert duration_for("1d", END - pd.Timedelta(days=400), END) == "1 Y"  # a full chunk: the rest comes next
    assert duration_for("1d", END - pd.Timedelta(days=364, hours=23), END) == "365 D"


def test_end_date_time_is_explicit_utc():
    assert ib_end(pd.Timestamp("2026-06-01 09:30", tz="America/New_York")) == "20260601-13:30:00"
