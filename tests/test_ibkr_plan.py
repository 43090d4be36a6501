"""The pacing rules (a fixed clock), the hard-rule fallback of the adaptive budget, the IBKR chunk plan /
duration strings and the bars frame of an empty answer."""

from __future__ import annotations

import itertools
import time

import pandas as pd
import pytest

from tt_resources.sources.base import empty_bars
from tt_resources.sources.ibkr import _bars_frame, chunk_plan, duration_for, ib_end
from tt_resources.sources.pacing import POLL_S, PacingBudget, PacingRules, Sent, wait_needed
from tt_resources.terms import SOURCE_BAR_COLUMNS

END = pd.Timestamp("2026-11-18 21:00:01", tz="UTC")


NOW = 1000.0


def wait(history: list[Sent], identity="r", contract="AAPL", *, limit=16, paused_until=0.0, **rules) -> float:
    r = PacingRules(margin_s=0.0, **rules)
    return wait_needed(r, NOW, history, identity, contract, limit=limit, paused_until=paused_until)


def sent(ago: float, identity="x", contract="C", in_flight=False) -> Sent:
    return Sent(NOW - ago, identity, contract, in_flight)


def test_strict_rolling_budget_and_the_adaptive_mode_without_it():
    history = [sent(9.0 - i, f"r{i}", f"C{i}") for i in range(3)]  # 3 requests 9, 8, 7 s ago
    assert wait(history, mode="strict", max_requests=3, window_s=10.0) == pytest.approx(1.0)
    assert wait(history, mode="strict", max_requests=4, window_s=10.0) == 0.0
    assert wait(history, mode="adaptive", max_requests=3, window_s=10.0) == 0.0


def test_identical_request_is_spaced_15_s():
    assert wait([sent(5.0, "same")], "same") == pytest.approx(10.0)
    assert wait([sent(5.0, "same")], "other") == 0.0
    assert wait([sent(16.0, "same")], "same") == 0.0


def test_a_sixth_request_per_contract_within_2_s_waits():
    five = [sent(1.5 - 0.1 * i, f"r{i}", "AAPL") for i in range(5)]
    assert wait(five[:4], contract="AAPL") == 0.0
    assert wait(five, contract="AAPL") == pytest.approx(0.5)  # until the oldest is 2 s old
    assert wait(five, contract="MSFT") == 0.0


def test_in_flight_limit_and_pause():
    flying = [sent(0.0, f"r{i}", f"C{i}", in_flight=True) for i in range(3)]
    assert wait(flying, limit=3) == POLL_S
    assert wait(flying, limit=4) == 0.0
    assert wait([], paused_until=NOW + 7.0) == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("timeframe", "years", "requests", "durations"),
    [("1d", 3, 3, {"1 Y"}), ("1h", 2, 24, {"1 M"}), ("15m", 1, 53, {"1 W", "1 D"})],
)
def test_default_histories_take_the_step_table_minimum(timeframe, years, requests, durations):
    start = END - pd.DateOffset(years=years)
    plan = chunk_plan(timeframe, start, END)
    assert len(plan) == requests
    assert {duration for _, _, duration in plan} == durations
    assert plan[0][0] == start and plan[-1][1] == END  # oldest first, back to back
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))


def test_short_spans_are_whole_days_and_long_daily_spans_years():
    assert duration_for("15m", END - pd.Timedelta(hours=20), END) == "1 D"
    assert duration_for("1h", END - pd.Timedelta(days=3, hours=1), END) == "4 D"
    assert duration_for("1d", END - pd.Timedelta(days=200), END) == "200 D"
    assert duration_for("1d", END - pd.Timedelta(days=400), END) == "1 Y"  # a full chunk: the rest comes next
    assert duration_for("1d", END - pd.Timedelta(days=364, hours=23), END) == "365 D"


def test_end_date_time_is_explicit_utc():
    assert ib_end(pd.Timestamp("2026-06-01 09:30", tz="America/New_York")) == "20260601-13:30:00"


@pytest.mark.parametrize("timeframe", ["1d", "1h", "15m"])
def test_an_empty_bar_list_is_an_empty_bars_frame(timeframe):
    frame = _bars_frame([], timeframe)
    assert frame.empty and list(frame.columns) == list(SOURCE_BAR_COLUMNS)
    assert frame.dtypes.equals(empty_bars().dtypes)


def test_a_violation_at_one_request_in_flight_switches_every_budget_to_the_hard_rule():
    """Adaptive mode: a violation with the limit already at one request switches the budget - every
    PacingBudget on the database - to the hard rule: a whole window's pause, then at most max_requests per
    window; after a window without requests it is adaptive again."""
    rules = PacingRules(
        mode="adaptive", concurrency=4, max_requests=2, window_s=0.4, identical_s=0.0, margin_s=0.0
    )
    budget = PacingBudget(rules=rules)  # the limit starts at 4 / 4 = 1 request in flight
    other = PacingBudget(budget.engine, rules)  # another process on the same database
    ticket, wait, _ = budget.try_reserve("a", "C1")
    assert wait == 0.0 and other.hard_rule_since() is None
    budget.release(ticket, "pacing")
    switched = other.hard_rule_since()
    assert switched is not None
    _, wait, _ = other.try_reserve("b", "C2")
    assert 0.0 < wait <= rules.window_s  # the window is waited out
    time.sleep(rules.window_s)
    sent = [other.try_reserve(f"r{i}", f"C{i}") for i in range(3)]
    assert [w for _, w, _ in sent[:2]] == [0.0, 0.0]
    assert sent[2][0] is None and sent[2][1] > POLL_S  # the hard rule: 2 per window
    for ticket, _, _ in sent[:2]:
        other.release(ticket, "ok")
    time.sleep(2 * rules.window_s)  # a window without a request: adaptive again
    ticket, wait, _ = budget.try_reserve("c", "C1")
    assert ticket is not None and budget.hard_rule_since() is None
