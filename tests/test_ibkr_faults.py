"""IB Gateway faults (issue 16) against the wire-level stand-in: each test asserts the stored bars against
what the stand-in served - no gap except recorded holes, no duplicate, no bar discarded."""

from __future__ import annotations

import dataclasses
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.fake_ibgateway import (
    COMPETING,
    DELAYED_ONLY,
    NO_PERMISSIONS,
    NOT_SUBSCRIBED,
    OTHER_IP,
    FakeIBGateway,
    Faults,
    Refusals,
    con_id_of,
)
from tests.refreshing import fetch_result, fetch_results
from tests.test_ibkr import HEAD, NOW, RULES, SETTINGS, WEEKS_AGO, log_rows
from tt_pipeline.market import refresh_partitions
from tt_resources import calendar
from tt_resources.db.holes import open_holes
from tt_resources.db.ibkr_records import IbkrRecorder
from tt_resources.db.prices import quarantined, read_bars
from tt_resources.db.schema import contracts
from tt_resources.ingest import overlap_start
from tt_resources.sources.ibkr import IbkrSource
from tt_resources.sources.pacing import PacingBudget, PacingRules
from tt_resources.watchlist import Listing

pytestmark = pytest.mark.timeout(180)

END = calendar.last_closed_bar("15m", NOW) + pd.Timedelta(seconds=1)


@pytest.fixture
def gateway():
    gw = FakeIBGateway(NOW, rules=RULES, head=HEAD)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def make_source(engine, gateway):
    made: list[IbkrSource] = []

    def make(rules: PacingRules = RULES, **settings) -> IbkrSource:
        source = IbkrSource(
            dataclasses.replace(SETTINGS, port=gateway.port, client_id=5, **settings),
            budget=PacingBudget(engine, rules),
            recorder=IbkrRecorder(engine),
        )
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def served_and_stored(engine, gateway, symbol: str, timeframe: str, asked_as: str | None = None):
    """(what the stand-in sent, what is stored), both by ts; asserts the stored ts are unique."""
    served = gateway.served_bars(asked_as or symbol, timeframe).set_index("ts")
    stored = read_bars(engine, [symbol], timeframe).set_index("ts")
    assert stored.index.is_unique
    return served, stored


def assert_stored_is_expected(engine, gateway, symbol, timeframe, start, *, asked_as=None, missing=()):
    """Stored bars == the stand-in's series over [start, end) minus the `missing` spans, value for value."""
    expected = gateway.expected(asked_as or symbol, timeframe, start, END).set_index("ts")
    for a, b in missing:
        expected = expected[(expected.index < a) | (expected.index >= b)]
    stored = read_bars(engine, [symbol], timeframe).set_index("ts")
    assert stored.index.is_unique
    assert list(stored.index) == list(expected.index)
    assert stored["close"].to_list() == pytest.approx(expected["close"].to_list())
    assert stored["volume"].to_list() == pytest.approx(expected["volume"].to_list())


def test_gateway_restart_is_waited_out_and_the_walk_resumes(engine, gateway, make_source):
    """The socket closes mid-plan and connections are refused for a while: the source reconnects with
    backoff and the walk resumes at the chunk it was on."""
    gateway.faults = Faults(restart_after=2, restart_s=1.5)
    source = make_source(reconnect_s=60.0, backoff_s=0.1, backoff_max_s=0.5)
    results = fetch_results(
        engine, source, [Listing("AAPL"), Listing("MSFT")], ["15m"], start=WEEKS_AGO, now=NOW
    )
    assert [r.status for r in results] == ["updated", "updated"], [r.error for r in results]
    assert len(gateway.restarts) == 1 and source.stats.reconnects >= 1
    assert "dropped" in {r.outcome for r in gateway.historical()}
    for symbol in ("AAPL", "MSFT"):
        assert_stored_is_expected(engine, gateway, symbol, "15m", WEEKS_AGO)
    assert "disconnected" in set(log_rows(engine)["outcome"])


def test_a_gateway_down_too_long_keeps_the_chunks_received_and_the_next_run_finishes(
    engine, gateway, make_source
):
    gateway.faults = Faults(restart_after=2, restart_s=4.0)
    first = fetch_result(
        engine, make_source(reconnect_s=0.5, backoff_s=0.1), Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW
    )
    assert first.status == "failed" and "unreachable for 0.5 s" in first.error
    kept = read_bars(engine, ["AAPL"], "15m")
    assert first.bars_written == len(kept) > 0  # the two chunks answered before the restart
    served, stored = served_and_stored(engine, gateway, "AAPL", "15m")
    assert list(stored.index) == list(served.index)

    # back up (a run whose first connection is refused stops at once): the next run asks from the last
    # stored bar on and ends with no gap and no duplicate
    gateway.faults = Faults()
    gateway.wait_listening()
    source = make_source(reconnect_s=30.0, backoff_s=0.1, backoff_max_s=0.5)
    second = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert second.status == "updated", second.error
    # resumed at the high-water mark, re-reading the stored bars of its last two sessions
    assert second.first_ts == overlap_start(kept["ts"].iloc[-1])
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", WEEKS_AGO)


def test_no_data_mid_history_is_a_hole_that_a_later_run_fills(engine, gateway, make_source):
    """IBKR answers "no data" for the chunk ending inside a halt although older weeks have data: the walk
    goes on to the head timestamp, the hole is recorded and reported, and the next run retries it."""
    start = NOW - pd.Timedelta(weeks=6)
    halt = (NOW - pd.Timedelta(weeks=4), NOW - pd.Timedelta(weeks=3))
    gateway.faults = Faults(no_data={"AAPL": halt}, no_data_times=1)
    first = fetch_result(engine, make_source(), Listing("AAPL"), "15m", start=start, now=NOW)
    assert first.status == "updated" and first.holes_found == first.holes_open == 1
    [hole] = open_holes(engine, "15m", "AAPL")
    assert halt[0] <= hole.end <= halt[1] and hole.attempts == 1 and "returned no data" in hole.reason
    assert hole.end - hole.start == pd.Timedelta(weeks=1)  # one chunk of the step table
    outcomes = [r.outcome for r in gateway.historical()]
    assert outcomes.count("no_data") == 1 and outcomes[-1] == "ok"  # walked on past the hole
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", start, missing=[(hole.start, hole.end)])
    assert "no_data" in set(log_rows(engine)["outcome"])

    second = fetch_result(engine, make_source(), Listing("AAPL"), "15m", start=start, now=NOW)
    assert second.status == "updated" and second.holes_open == 0 and second.bars_written > 0
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", start)
    assert fetch_result(engine, make_source(), Listing("AAPL"), "15m", start=start, now=NOW).status == "fresh"


def test_start_before_the_first_stored_bar_backfills_the_head(engine, gateway, make_source):
    fetch_result(engine, make_source(), Listing("AAPL"), "1h", start=WEEKS_AGO, now=NOW)
    earlier = NOW - pd.Timedelta(weeks=10)
    result = fetch_result(engine, make_source(), Listing("AAPL"), "1h", start=earlier, now=NOW)
    assert result.status == "updated" and result.first_ts < WEEKS_AGO
    assert_stored_is_expected(engine, gateway, "AAPL", "1h", earlier)
    assert (
        fetch_result(engine, make_source(), Listing("AAPL"), "1h", start=earlier, now=NOW).status == "fresh"
    )


@pytest.mark.parametrize("order", [["NYSE", "ARCA"], ["ARCA", "NYSE"]])
def test_two_listings_take_the_watchlists_primary_exchange_or_fail_naming_them(
    engine, gateway, make_source, order
):
    gateway.faults = Faults(listings={"SPYX": order})
    failed = fetch_result(engine, make_source(), Listing("SPYX"), "1d", start=WEEKS_AGO, now=NOW)
    assert failed.status == "failed"
    assert failed.error == (
        f"SPYX: IBKR lists 2 contracts: {order[0]} (conId {con_id_of('SPYX', order[0])}), {order[1]} "
        f"(conId {con_id_of('SPYX', order[1])}); set primary_exchange for it in the watchlist"
    )
    assert read_bars(engine, ["SPYX"], "1d").empty

    arca = Listing("SPYX", primary_exchange="ARCA")
    assert fetch_result(engine, make_source(), arca, "1d", start=WEEKS_AGO, now=NOW).status == "updated"
    with engine.connect() as conn:
        stored = conn.execute(sa.select(contracts).where(contracts.c.symbol == "SPYX")).mappings().one()
    assert (stored["con_id"], stored["primary_exchange"]) == (con_id_of("SPYX", "ARCA"), "ARCA")
    assert_stored_is_expected(engine, gateway, "SPYX", "1d", WEEKS_AGO)


def test_class_shares_are_asked_in_ibkr_spelling_and_stored_under_the_watchlist_symbol(
    engine, gateway, make_source
):
    results = fetch_results(
        engine, make_source(), [Listing("BRK.B"), Listing("BF.B")], ["1h"], start=WEEKS_AGO, now=NOW
    )
    assert {r.status for r in results} == {"updated"}, [r.error for r in results]
    asked = {r.symbol for r in gateway.requests if r.kind in ("contract", "historical")}
    assert asked == {"BRK B", "BF B"}
    for symbol in ("BRK.B", "BF.B"):
        assert_stored_is_expected(engine, gateway, symbol, "1h", WEEKS_AGO, asked_as=symbol.replace(".", " "))
    assert read_bars(engine, ["BRK B"], "1h").empty
    with engine.connect() as conn:
        assert {r.symbol for r in conn.execute(sa.select(contracts.c.symbol))} == {"BRK.B", "BF.B"}


def test_one_bad_bar_is_quarantined_and_unknown_values_are_stored_as_unknown(engine, gateway, make_source):
    bars = gateway.expected("AAPL", "15m", WEEKS_AGO, END)["ts"]
    no_volume, no_wap, crossed = bars.iloc[5], bars.iloc[40], bars.iloc[100]
    gateway.faults = Faults(
        bad_bars={("AAPL", no_volume): "volume", ("AAPL", no_wap): "wap", ("AAPL", crossed): "high<low"}
    )
    [outcome] = refresh_partitions(engine, make_source(), [Listing("AAPL")], "15m", start=WEEKS_AGO, now=NOW)
    assert outcome.fetched.status == "updated" and outcome.fetched.quarantined == 1
    served, stored = served_and_stored(engine, gateway, "AAPL", "15m")
    assert list(stored.index) == [ts for ts in served.index if ts != crossed]  # every good bar kept
    assert np.isnan(stored.at[no_volume, "volume"]) and stored.at[no_volume, "close"] > 0
    assert np.isnan(stored.at[no_wap, "wap"]) and stored.at[no_wap, "volume"] > 0
    assert stored.drop([no_volume]).loc[:, "volume"].notna().all()
    [bad] = quarantined(engine, ["AAPL"], "15m").to_dict("records")
    assert bad["ts"] == crossed and bad["reason"].startswith("high < low")
    assert bad["high"] == served.at[crossed, "high"] < bad["low"]
    # the checks see it: one bar quarantined, one unknown volume, and the partition passes
    assert outcome.quality.quarantined == 1 and outcome.quality.unknown_volume == 1
    assert outcome.quality.ok and outcome.report().quarantined == 1 and outcome.features_written


def test_client_id_in_use_on_every_id_fails_at_once_naming_326_and_the_ids(engine, gateway, make_source):
    gateway.faults = Faults(all_ids_in_use=True)
    source = make_source(client_id_attempts=3)
    results = fetch_results(
        engine, source, [Listing("AAPL"), Listing("MSFT")], ["1d"], start=WEEKS_AGO, now=NOW
    )
    expected = (
        f"IB Gateway at 127.0.0.1:{gateway.port}: error 326 (client id already in use) for client ids 5, 6, 7; "
        "close those API sessions or choose a free id (IB_CLIENT_ID for market data, IB_TRADING_CLIENT_ID for "
        "trading)"
    )
    assert [(r.status, r.error) for r in results] == [("failed", expected)] * 2
    assert not gateway.historical()


def test_client_ids_tried_are_ib_client_ids_from_ib_client_id(engine, gateway, monkeypatch):
    monkeypatch.setenv("IB_PORT", str(gateway.port))
    monkeypatch.setenv("IB_CLIENT_ID", "5")
    monkeypatch.setenv("IB_CLIENT_IDS", "2")
    gateway.faults = Faults(all_ids_in_use=True)
    from tt_cli.common import market_config
    from tt_resources.sources import make_source
    from tt_resources.sources.settings import from_config

    source = make_source(dataclasses.replace(from_config(market_config("ibkr")), pacing=RULES), engine)
    try:
        [result] = fetch_results(engine, source, [Listing("AAPL")], ["1d"], start=WEEKS_AGO, now=NOW)
    finally:
        source.close()
    assert "error 326 (client id already in use) for client ids 5, 6;" in result.error


def test_strict_mode_waits_out_the_window_after_a_violation_and_keeps_the_bars(engine, gateway, make_source):
    strict = dataclasses.replace(RULES, mode="strict", window_s=1.5)
    gateway.faults = Faults(pacing_violations=1)
    source = make_source(rules=strict)
    result = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated" and result.pacing_waits >= 1
    historical = gateway.historical()
    assert [r.outcome for r in historical][:2] == ["pacing", "ok"]
    assert historical[1].at - historical[0].at >= strict.window_s  # IBKR's window waited out
    assert source.budget.violations() == 1
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", WEEKS_AGO)


def test_adaptive_mode_backs_off_the_soft_limit_and_loses_nothing(engine, gateway, make_source):
    """More partitions than the stand-in's soft limit allows at once: the violations are recovered by
    halving the in-flight limit, and every partition ends complete."""
    gateway.rolling_budget = False
    # the limit starts at concurrency / 4 = 4 in flight, twice the soft limit; answers take 0.5-1 s, so the
    # first requests overlap on any machine however loaded
    gateway.faults = Faults(latency_s=(0.5, 1.0), soft_concurrency=2)
    adaptive = dataclasses.replace(RULES, mode="adaptive", concurrency=16, backoff_s=0.1, backoff_max_s=0.5)
    listings = [Listing(f"S{i:02d}") for i in range(12)]
    results = fetch_results(engine, make_source(rules=adaptive), listings, ["1h"], start=WEEKS_AGO, now=NOW)
    assert {r.status for r in results} == {"updated"}, [r.error for r in results]
    soft = [r for r in gateway.historical() if r.outcome == "soft_pacing"]
    assert soft, "the in-flight limit exceeded the stand-in's soft limit at least once"
    assert {r.outcome for r in gateway.historical()} == {"ok", "soft_pacing"}
    for symbol in (listing.symbol for listing in listings):
        assert_stored_is_expected(engine, gateway, symbol, "1h", WEEKS_AGO)


def test_tt_ingest_shows_quarantined_bars_and_open_holes(sqlite_url, tmp_path):
    """The CLI summary counts quarantined bars and open holes and names the partitions with holes."""
    from tests.test_ingest_cli import run, summary_rows

    now = pd.Timestamp.now(tz="UTC").floor("s")
    gateway = FakeIBGateway(now, rules=RULES)
    start = (now - pd.Timedelta(days=60)).normalize()
    bars = gateway.expected("AAPL", "1h", start, now)["ts"]
    gateway.faults = Faults(
        bad_bars={("AAPL", bars.iloc[3]): "high<low"},
        no_data={"MSFT": (start, start + pd.Timedelta(days=31))},
    )
    gateway.start()
    try:
        result = run(
            sqlite_url,
            *(
                "--source",
                "ibkr",
                "--symbols",
                "AAPL,MSFT",
                "--timeframe",
                "1h",
                "--start",
                f"{start:%Y-%m-%d}",
            ),
            IB_PORT=str(gateway.port),
            IB_CLIENT_ID="60",
            TT_DATA_DIR=str(tmp_path),
        )
    finally:
        gateway.stop()
    # columns: partitions fresh updated failed bars requests pacing quarantined holes stored
    cells = summary_rows(result.output)["1h"]
    assert cells[:3] == ["2", "0", "2"] and cells[-3:-1] == ["1", "1"], result.output
    assert "holes MSFT 1h: 1 span(s) the source did not deliver (tt_fetch_hole)" in result.output


# ---------------------------------------------------------------- every IBKR answer handled (issue 25)
def test_queries_ibkr_cancels_are_retried_like_a_timeout_and_lose_nothing(engine, gateway, make_source):
    """162 "API historical data query cancelled" and 366 "No historical data query found" (IBKR dropped the
    query, e.g. an HMDS restart) are retried with backoff, at most max_attempts in a row."""
    gateway.faults = Faults(refusals=Refusals(cancelled=1, not_found=1))
    result = fetch_result(engine, make_source(), Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated", result.error
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", WEEKS_AGO)
    logged = log_rows(engine)
    cancelled = logged[logged["outcome"] == "cancelled"]
    assert sorted(cancelled["error_code"]) == [162, 366]

    gateway.faults = Faults(refusals=Refusals(cancelled=10))
    failed = fetch_result(
        engine, make_source(max_attempts=3), Listing("MSFT"), "15m", start=WEEKS_AGO, now=NOW
    )
    assert failed.status == "failed"
    assert "failed after 3 attempts: IBKR error 162: API historical data query cancelled:" in failed.error


EMPTY_WEEKS = (NOW - pd.Timedelta(weeks=5), NOW - pd.Timedelta(weeks=4))  # two 1-week chunks end in here
EMPTY_YEAR = (HEAD + pd.DateOffset(years=1), HEAD + pd.DateOffset(years=1, days=1))  # one 1-year chunk


@pytest.mark.parametrize(
    ("timeframe", "start", "empty"),
    [("15m", NOW - pd.Timedelta(weeks=6), EMPTY_WEEKS), ("1d", HEAD, EMPTY_YEAR)],
)
def test_an_empty_bar_list_is_a_hole_and_the_bars_after_it_load(
    engine, gateway, make_source, timeframe, start, empty
):
    """The end message with 0 bars and no error, for chunks inside the history, is "no data": a hole in
    tt_fetch_hole, and the walk goes on to store every bar after it; the next run fills the hole."""
    gateway.faults = Faults(refusals=Refusals(empty={"AAPL": empty}))
    first = fetch_result(engine, make_source(), Listing("AAPL"), timeframe, start=start, now=NOW)
    assert first.status == "updated", first.error
    holes = open_holes(engine, timeframe, "AAPL")
    assert first.holes_found == len(holes) >= 1
    assert all(h.reason == "IBKR answered with an empty bar list" for h in holes)
    assert "empty" in {r.outcome for r in gateway.historical()}
    missing = [(h.start, h.end) for h in holes]
    assert_stored_is_expected(engine, gateway, "AAPL", timeframe, start, missing=missing)
    assert read_bars(engine, ["AAPL"], timeframe)["ts"].iloc[-1] > empty[1]  # the bars after it loaded

    gateway.faults = Faults()
    second = fetch_result(engine, make_source(), Listing("AAPL"), timeframe, start=start, now=NOW)
    assert second.status == "updated" and second.holes_open == 0
    assert_stored_is_expected(engine, gateway, "AAPL", timeframe, start)


@pytest.mark.parametrize("notices", [(1100, 1101), (2105, 2106)])
def test_requests_lost_with_1101_or_2106_are_sent_again_at_once(engine, gateway, make_source, notices):
    """Connectivity restored with data lost (1101), or the HMDS farm back after a break (2105, 2106): the
    requests in flight are sent again at once, not after the request timeout."""
    gateway.faults = Faults(refusals=Refusals(lost=1, notices=notices))
    source = make_source(request_timeout_s=60.0)
    result = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated", result.error
    assert source.stats.timeouts == 0
    outcomes = list(log_rows(engine).query("request == 'historical'")["outcome"])
    assert outcomes.count("lost") == 1 and "timeout" not in outcomes
    assert [r.outcome for r in gateway.historical()].count("lost") == 1
    assert_stored_is_expected(engine, gateway, "AAPL", "15m", WEEKS_AGO)


@pytest.mark.parametrize(
    ("code", "text"), [(354, NOT_SUBSCRIBED), (10167, DELAYED_ONLY), (162, NO_PERMISSIONS)]
)
def test_a_permission_error_names_the_cause_and_is_asked_once(engine, gateway, make_source, code, text):
    gateway.faults = Faults(refusals=Refusals(permission={"NOPB": (code, text)}))
    results = fetch_results(
        engine, make_source(), [Listing("NOPB"), Listing("AAPL")], ["1d", "1h"], start=WEEKS_AGO, now=NOW
    )
    expected = (
        f"NOPB: no market data permission at IBKR (IBKR error {code}: {text}); subscribe to this listing's "
        "market data in IBKR's Account Management, or remove it from the watchlist"
    )
    assert [(r.symbol, r.status, r.error) for r in results if r.symbol == "NOPB"] == [
        ("NOPB", "failed", expected)
    ] * 2
    assert {r.status for r in results if r.symbol == "AAPL"} == {"updated"}
    asked = [r for r in gateway.requests if r.symbol == "NOPB" and r.kind != "contract"]
    assert [r.kind for r in asked] == ["head_timestamp"]  # once for both timeframes, no bar request


@pytest.mark.parametrize("refusal", [(162, OTHER_IP), (10197, COMPETING)])
def test_a_competing_session_stops_the_run_once_with_one_line(engine, gateway, make_source, refusal):
    gateway.faults = Faults(refusals=Refusals(session=refusal))
    listings = [Listing("AAPL"), Listing("MSFT"), Listing("NVDA")]
    results = fetch_results(engine, make_source(), listings, ["1d", "1h"], start=WEEKS_AGO, now=NOW)
    expected = (
        f"IBKR refuses market data to this session (IBKR error {refusal[0]}: {refusal[1]}); close the other "
        "session (TWS, mobile or web) logged in with this user, then run again"
    )
    assert {(r.status, r.error) for r in results} == {("failed", expected)}
    asked = [r for r in gateway.requests if r.kind in ("head_timestamp", "historical")]
    assert not gateway.historical() and len(asked) <= len(listings)  # only those already under way


def free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("gateway_state", ["not listening", "refusing"])
def test_a_missing_gateway_fails_every_partition_at_once_with_one_line(engine, gateway, gateway_state):
    """No gateway on the port, or one closing every connection after the handshake: the first connection is
    tried max_attempts times, then the source stops; every later partition fails with the same line and
    without a reconnect window of its own."""
    port = free_port() if gateway_state == "not listening" else gateway.port
    gateway.faults = Faults(refusals=Refusals(connections=False))
    settings = dataclasses.replace(SETTINGS, port=port, client_id=5, max_attempts=3, reconnect_s=300.0)
    source = IbkrSource(settings, budget=PacingBudget(engine, RULES), recorder=IbkrRecorder(engine))
    try:
        listings = [Listing("AAPL"), Listing("MSFT"), Listing("NVDA")]
        results = fetch_results(engine, source, listings, ["1d", "1h"], start=WEEKS_AGO, now=NOW)
    finally:
        source.close()
    [error] = {r.error for r in results}
    assert {r.status for r in results} == {"failed"}
    assert error.startswith(f"IB Gateway at 127.0.0.1:{port}: no API connection after 3 attempt(s) (")
    assert error.endswith("start IB Gateway or TWS with the API enabled on that port (IB_HOST, IB_PORT)")
    # the partitions that were under way together waited their 2 backoffs; none after them waited at all
    assert source.stats.retries <= len(listings) * (settings.max_attempts - 1)
    assert not gateway.historical()


def test_a_gateway_gone_mid_run_gets_one_reconnect_window_for_the_run(engine, gateway, make_source):
    gateway.faults = Faults(restart_after=2, restart_s=30.0)
    source = make_source(reconnect_s=0.5, backoff_s=0.1)
    first = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert first.status == "failed" and "unreachable for 0.5 s (" in first.error
    retries = source.stats.retries
    later = fetch_results(
        engine, source, [Listing("MSFT"), Listing("NVDA")], ["15m"], start=WEEKS_AGO, now=NOW
    )
    assert {(r.status, r.error) for r in later} == {("failed", first.error)}
    assert source.stats.retries == retries  # no second window


@pytest.mark.slow
def test_persistent_pacing_in_adaptive_mode_switches_every_process_to_the_hard_rule(engine, gateway, caplog):
    """A gateway enforcing the hard rule (here 3 requests per 1.5 s, for every bar size) against two
    processes in adaptive mode: the violations persist down to one request in flight, the budget - shared
    through the database - switches both to the hard rule, and every partition finishes with every bar."""
    hard = dataclasses.replace(RULES, max_requests=3, window_s=1.5)
    gateway.rules = hard
    adaptive = dataclasses.replace(hard, mode="adaptive", concurrency=16, backoff_s=0.05, backoff_max_s=0.2)
    sources = [
        IbkrSource(
            dataclasses.replace(SETTINGS, port=gateway.port, client_id=client_id),
            budget=PacingBudget(engine, adaptive),  # one budget object per process, one database
            recorder=IbkrRecorder(engine),
        )
        for client_id in (5, 15)
    ]
    groups = [[Listing("AAPL"), Listing("MSFT")], [Listing("NVDA"), Listing("AMZN")]]
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(fetch_results, engine, source, listings, ["15m"], start=WEEKS_AGO, now=NOW)
                for source, listings in zip(sources, groups, strict=True)
            ]
            results = [r for run in runs for r in run.result()]
    finally:
        for source in sources:
            source.close()
    assert {r.status for r in results} == {"updated"}, [r.error for r in results]
    assert gateway.violations(), "the gateway's hard rule was hit before the switch"
    # the switch was made in the shared budget (the state itself reverts after an idle window, which a
    # loaded machine can reach before this line: assert what the run logged, not the state now)
    switches = [r for r in caplog.records if "every process keeps to the hard rule" in r.getMessage()]
    assert switches, "no switch to the hard rule was logged"
    for symbol in ("AAPL", "MSFT", "NVDA", "AMZN"):
        assert_stored_is_expected(engine, gateway, symbol, "15m", WEEKS_AGO)


@pytest.mark.parametrize("verbose", [False, True])
def test_tt_ingest_without_a_gateway_says_so_in_one_line_and_logs_ib_async_to_the_file(
    sqlite_url, tmp_path, verbose
):
    """No gateway listening: one failure line for every partition, no "no bar in that window" line, and
    ib_async's own records ("API connection failed ...") in <data dir>/logs/tt.log, on the console only with
    `tt --verbose`."""
    from click.testing import CliRunner

    from tt_cli.main import cli

    port = free_port()
    args = [
        "ingest",
        "--source",
        "ibkr",
        "--symbols",
        "AAPL,MSFT",
        "--interval",
        "1d",
        "--start",
        "2026-01-05",
    ]
    env = {
        "DATABASE_URL": sqlite_url,
        "COLUMNS": "120",
        "IB_PORT": str(port),
        "TT_IB_RECONNECT_S": "0.5",
        "TT_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(cli, ["--verbose", *args] if verbose else args, env=env)
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed ")]
    one_line = (
        rf"failed 2 partitions \(AAPL 1d, MSFT 1d\): IB Gateway at 127\.0\.0\.1:{port}: no API connection after "
        r"\d attempt\(s\) \(.+\); start IB Gateway or TWS with the API enabled on that port \(IB_HOST, IB_PORT\) "
        r"\(0 bars stored\)"
    )
    assert len(failed) == 1 and re.fullmatch(one_line, failed[0]), result.output
    assert "no bar in that window" not in result.output and "no bar since it" not in result.output
    assert ("API connection failed" in result.output) is verbose
    assert "API connection failed" in (tmp_path / "logs" / "tt.log").read_text()
