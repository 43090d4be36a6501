"""The dashboard's Live tab under streamlit.testing's AppTest, on seeded trading rows (tests/live_seed.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.live_seed import ACCOUNT, COMMISSION, NLV, PRODUCTION, SESSIONS, seed_live
from tests.test_dashboard import APP, assert_clean, figures, table, url_of, values
from tt_dashboard.live import baselines
from tt_pipeline.trading.live import record_session
from tt_resources.broker import order_ref
from tt_resources.db import trading as db


@pytest.fixture
def live_page(sqlite_engine, monkeypatch):
    """The dashboard on a database with two live sessions recorded and one order blocked by a limit."""
    seed_live(sqlite_engine)
    rows = [record_session(sqlite_engine, PRODUCTION, s) for s in SESSIONS[1:3]]
    blocked = order_ref(SESSIONS[3], PRODUCTION, "BBB")
    db.upsert_orders(
        sqlite_engine,
        [
            {
                "order_ref": blocked,
                "session": SESSIONS[3],
                "decided_session": SESSIONS[2],
                "model_id": PRODUCTION,
                "account": ACCOUNT,
                "symbol": "BBB",
                "quantity": 900,
                "reference_price": 50.0,
                "notional": 45_000.0,
                "state": "blocked",
                "limit_checks": {
                    "breaches": ["limit symbol_weight: buy 900 BBB ... TT_TRADING_MAX_WEIGHT 25.0%"]
                },
            }
        ],
    )
    monkeypatch.setenv("DATABASE_URL", url_of(sqlite_engine))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    yield at, rows
    st.cache_resource.clear()
    st.cache_data.clear()


def test_live_equity_is_drawn_against_the_shadow_and_the_baselines(live_page):
    at, rows = live_page
    assert_clean(at)
    chart = figures(at)["Live equity against the shadow backtest"]
    lines = {trace["name"]: values(trace["y"]) for trace in chart["data"]}
    # from the net liquidation before the first live session, through each session's close
    assert lines["Live"] == pytest.approx([NLV, rows[0]["live_equity"], rows[1]["live_equity"]])
    assert lines["Shadow backtest"] == pytest.approx([NLV, NLV * 1.05, rows[1]["shadow_equity"]])
    # equal weight of the champion's symbols (AAA, BBB) bought at the close before the first session
    assert lines["Equal weight (buy & hold)"] == pytest.approx(
        [NLV, NLV * (110 / 100 + 1) / 2, NLV * (99 / 100 + 1) / 2]
    )
    assert lines["Cash"] == pytest.approx([NLV] * 3)
    tracking = figures(at)["Tracking error per session"]["data"][0]
    assert values(tracking["y"]) == pytest.approx([r["tracking_error"] for r in rows])


def test_the_tab_lists_sessions_orders_positions_limits_and_the_promotion_record(live_page):
    at, _ = live_page
    sessions = table(at, "Session", "Live return", "Shadow return", "Tracking error")
    assert list(sessions["Session"]) == [SESSIONS[2], SESSIONS[1]]  # newest first
    assert sessions["Tracking error"].iloc[1] * NLV == pytest.approx(500 * 0.05 + COMMISSION)
    orders = table(at, "Symbol", "State", "Fill price", "Slippage (bps)")
    filled = orders[orders["State"] == "filled"].iloc[0]
    assert (filled["Symbol"], filled["Fill price"], filled["Commission"]) == ("AAA", 100.05, COMMISSION)
    assert filled["Slippage (bps)"] == pytest.approx(5.0)
    book = table(at, "Symbol", "Held", "Weight", "Target").set_index("Symbol")
    # the book of 2026-11-27 against the target decided on 2026-11-25 (what it traded to)
    held_weight = 500 * 99.0 / (NLV - 500 * 100.05 - COMMISSION + 500 * 99.0)
    assert book.loc["AAA", "Weight"] == pytest.approx(held_weight)
    assert book.loc["AAA", "Target"] == pytest.approx(
        500 * 110.0 / (NLV - 500 * 100.05 - COMMISSION + 500 * 110.0)
    )
    limits = table(at, "Blocked session", "Breach")
    assert list(limits["Breach"]) == ["limit symbol_weight: buy 900 BBB ... TT_TRADING_MAX_WEIGHT 25.0%"]
    record = table(at, "Action", "Champion", "Who")
    assert list(record["Champion"]) == [PRODUCTION] and list(record["Who"]) == ["tester"]
    assert any(PRODUCTION in m.value and "seeded" in m.value for m in at.markdown)


def test_equal_weight_buys_one_nth_at_the_first_close_and_holds():
    closes = {"A": [10.0, 20.0], "B": [5.0, 5.0]}
    frame = pd.DataFrame(closes, index=[dt.date(2026, 1, 2), dt.date(2026, 1, 5)])
    base = baselines(frame, 1_000.0)
    assert list(base["equal_weight"]) == [1_000.0, 1_500.0]
    assert list(base["cash"]) == [1_000.0, 1_000.0]
    assert np.isfinite(base["equal_weight"]).all()
