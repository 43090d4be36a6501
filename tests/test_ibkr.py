"""The real IbkrSource (and so the real ib_async client) against the wire-level fake IB Gateway."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import sqlalchemy as sa
from ib_async import IB, Stock
from ib_async.wrapper import RequestError

from tests.fake_ibgateway import IN_YEARS, FakeIBGateway, Faults
from tests.refreshing import fetch_result, fetch_results
from tt_resources import calendar
from tt_resources.db.holes import open_holes
from tt_resources.db.ibkr_records import IbkrRecorder
from tt_resources.db.prices import read_bars
from tt_resources.db.schema import contracts, fetch_log
from tt_resources.sources.ibkr import IbkrSettings, IbkrSource, chunk_plan, run_on_ib_loop
from tt_resources.sources.pacing import PacingBudget, PacingRules
from tt_resources.watchlist import Listing, listings_of

pytestmark = pytest.mark.timeout(120)

NOW = pd.Timestamp("2026-11-18 21:30", tz="UTC")  # Wednesday after the close
HEAD = pd.Timestamp("2024-05-01 13:30", tz="UTC")
WEEKS_AGO = NOW - pd.Timedelta(weeks=3)
RULES = PacingRules(
    max_requests=1000,
    window_s=1.0,
    identical_s=0.2,
    per_contract=50,
    per_contract_window_s=0.5,
    margin_s=0.1,
)
# A generous request timeout: on a loaded machine a 0.5 s one expires on healthy requests and the retry
# adds requests the chunk-plan assertions do not expect. The timeout tests pass FAST_TIMEOUT themselves.
SETTINGS = IbkrSettings(
    connect_timeout_s=5.0, request_timeout_s=10.0, max_attempts=4, backoff_s=0.02, backoff_max_s=0.2
)
FAST_TIMEOUT = 0.5


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


def assert_matches_gateway(engine, gateway: FakeIBGateway, symbol: str, timeframe: str, start: pd.Timestamp):
    """Stored bars == the stand-in's series over [start, last closed bar]: no gap, no duplicate."""
    stored = read_bars(engine, [symbol], timeframe)
    end = calendar.last_closed_bar(timeframe, gateway.now) + pd.Timedelta(seconds=1)
    expected = gateway.expected(symbol, timeframe, start, end)
    assert stored["ts"].is_unique
    assert list(stored["ts"]) == list(expected["ts"])
    assert stored["close"].to_list() == pytest.approx(expected["close"].to_list())
    assert stored["volume"].to_list() == pytest.approx(expected["volume"].to_list())


def log_rows(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(fetch_log).order_by(fetch_log.c.id)).mappings().all())


def test_default_histories_are_stitched_from_the_step_table_chunks(engine, gateway, make_source):
    source = make_source()
    results = fetch_results(engine, source, [Listing("AAPL")], ["1d", "1h", "15m"], now=NOW)
    assert [r.status for r in results] == ["updated"] * 3, [r.error for r in results]
    historical = gateway.historical()
    for result in results:
        end = calendar.last_closed_bar(result.timeframe, NOW) + pd.Timedelta(seconds=1)
        start = max(
            end
            - {"1d": pd.DateOffset(years=3), "1h": pd.DateOffset(years=2), "15m": pd.DateOffset(years=1)}[
                result.timeframe
            ],
            HEAD,
        )
        assert_matches_gateway(engine, gateway, "AAPL", result.timeframe, start)
        sent = [
            r
            for r in historical
            if r.bar_size == {"1d": "1 day", "1h": "1 hour", "15m": "15 mins"}[result.timeframe]
        ]
        assert len(sent) == len(chunk_plan(result.timeframe, start, end))
    assert [r.duration for r in historical[:3]] == ["1 Y", "1 Y", "202 D"]  # 1d back to the head timestamp
    assert sum(r.duration == "1 M" for r in historical) == 24
    assert sum(r.duration == "1 W" for r in historical) == 52
    assert {r.outcome for r in gateway.requests} == {"ok"}
    # every request is in tt_fetch_log; the contract is cached with its head timestamp
    rows = log_rows(engine)
    assert (rows["request"] == "historical").sum() == len(historical)
    assert set(rows["outcome"]) == {"ok"} and rows["latency_s"].notna().all()
    assert rows.loc[rows["request"] == "historical", "bars"].sum() == sum(r.bars for r in historical)
    with engine.connect() as conn:
        contract = conn.execute(sa.select(contracts)).mappings().one()
    assert contract["symbol"] == "AAPL" and contract["con_id"] > 0 and contract["head_ts"] == HEAD


def test_second_run_makes_no_request_and_tail_update_after_the_clock_advances(engine, gateway, make_source):
    fetch_results(
        engine,
        make_source(),
        [Listing("AAPL"), Listing("MSFT")],
        ["1d", "1h", "15m"],
        start=WEEKS_AGO,
        now=NOW,
    )
    sent = len(gateway.requests)

    fresh = make_source()  # a new process: contracts come from tt_contracts
    again = fetch_results(
        engine, fresh, [Listing("AAPL"), Listing("MSFT")], ["1d", "1h", "15m"], start=WEEKS_AGO, now=NOW
    )
    assert {r.status for r in again} == {"fresh"} and fresh.stats.requests == 0
    assert len(gateway.requests) == sent

    gateway.now = NOW + pd.Timedelta(days=1)  # Thursday after the close
    tail = fetch_results(
        engine, fresh, [Listing("AAPL"), Listing("MSFT")], ["1d", "1h", "15m"], now=gateway.now
    )
    assert {r.status for r in tail} == {"updated"}
    new = gateway.requests[sent:]
    assert [r.kind for r in new] == ["historical"] * 6  # no contract or head lookups: cached in the database
    assert [r.duration for r in new] == ["3 D"] * 6  # Thursday and the two sessions re-read
    for symbol in ("AAPL", "MSFT"):
        for timeframe in ("1d", "1h", "15m"):
            assert_matches_gateway(engine, gateway, symbol, timeframe, WEEKS_AGO)


def test_pacing_violations_are_backed_off_and_retried(engine, gateway, make_source):
    gateway.faults = Faults(pacing_violations=2)
    source = make_source()
    result = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated" and result.pacing_waits >= 2
    assert [r.outcome for r in gateway.historical()][:3] == ["pacing", "pacing", "ok"]
    assert source.stats.retries == 2
    assert_matches_gateway(engine, gateway, "AAPL", "15m", WEEKS_AGO)
    rows = log_rows(engine)
    pacing = rows[rows["outcome"] == "pacing"]
    assert len(pacing) == 2 and set(pacing["error_code"]) == {162}


def test_unknown_symbol_is_recorded_and_the_others_continue(engine, gateway, make_source):
    gateway.faults = Faults(unknown_symbols={"NOPE"})
    results = fetch_results(
        engine, make_source(), [Listing("NOPE"), Listing("AAPL")], ["1d", "15m"], start=WEEKS_AGO, now=NOW
    )
    status = {(r.symbol, r.timeframe): r for r in results}
    assert status[("NOPE", "1d")].status == status[("NOPE", "15m")].status == "failed"
    assert "IBKR error 200" in status[("NOPE", "1d")].error
    assert status[("AAPL", "1d")].status == status[("AAPL", "15m")].status == "updated"
    assert sum(r.kind == "contract" and r.symbol == "NOPE" for r in gateway.requests) == 1  # asked once
    rows = log_rows(engine)
    not_found = rows[rows["outcome"] == "not_found"]
    assert list(not_found["symbol"]) == ["NOPE"] and list(not_found["error_code"]) == [200]
    assert read_bars(engine, ["NOPE"], "1d").empty


def test_contracts_are_asked_for_on_the_watchlists_exchange_and_currency(
    engine, gateway, tmp_path, monkeypatch
):
    """The ibkr source of make_source looks contracts up where the watchlist lists them (SMART/USD when it says
    nothing) and stores what IBKR answered."""
    from tt_resources.sources import make_source
    from tt_resources.sources.settings import SourceSettings

    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol,exchange,currency\nSAP,IBIS,EUR\nAAPL,,\n")
    settings = SourceSettings(
        "ibkr", ibkr=dataclasses.replace(SETTINGS, port=gateway.port, client_id=5), pacing=RULES
    )
    source = make_source(settings, engine)
    try:
        results = fetch_results(
            engine, source, listings_of(["SAP", "AAPL"], watchlist), ["1d"], start=WEEKS_AGO, now=NOW
        )
    finally:
        source.close()
    assert {r.status for r in results} == {"updated"}
    asked = {r.symbol: r.listing for r in gateway.requests if r.kind == "contract"}
    assert asked == {"SAP": ("IBIS", "EUR"), "AAPL": ("SMART", "USD")}
    with engine.connect() as conn:
        stored = {r.symbol: (r.exchange, r.currency) for r in conn.execute(sa.select(contracts))}
    assert stored == asked


def test_a_symbol_without_data_leaves_holes_retried_until_the_attempts_run_out(engine, gateway, make_source):
    gateway.faults = Faults(no_data_symbols={"EMPTY"})
    start = NOW - pd.Timedelta(days=90)
    results = [
        fetch_result(engine, make_source(), Listing("EMPTY"), "1h", start=start, now=NOW, hole_attempts=2)
        for _ in range(3)
    ]
    assert [r.status for r in results] == ["updated", "updated", "fresh"]
    assert results[0].bars_written == 0 and results[0].holes_found == results[0].holes_open == 3
    assert results[1].holes_found == 3 and results[2].holes_open == 3  # kept open, no longer asked
    assert [r.outcome for r in gateway.historical()] == ["no_data"] * 6  # every chunk, then each hole again
    holes = open_holes(engine, "1h", "EMPTY")
    assert [h.attempts for h in holes] == [2, 2, 2] and "HMDS query returned no data" in holes[0].reason
    assert holes[0].start == start and holes[-1].end == calendar.last_closed_bar("1h", NOW) + pd.Timedelta(
        seconds=1
    )
    assert list(log_rows(engine).query("request == 'historical'")["outcome"]) == ["no_data"] * 6


def test_timeout_is_cancelled_and_retried(engine, gateway, make_source):
    gateway.faults = Faults(silent_requests=1)
    source = make_source(request_timeout_s=FAST_TIMEOUT)
    result = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated" and source.stats.timeouts == 1
    kinds = [r.kind for r in gateway.requests if r.kind != "contract" and r.kind != "head_timestamp"]
    assert kinds[:3] == ["historical", "cancel_historical", "historical"]
    assert_matches_gateway(engine, gateway, "AAPL", "15m", WEEKS_AGO)
    assert "timeout" in set(log_rows(engine)["outcome"])


def test_persistent_timeout_fails_only_that_partition_with_a_clear_error(engine, gateway, make_source):
    gateway.faults = Faults(silent_symbols={"HANG"})
    results = fetch_results(
        engine,
        make_source(max_attempts=2, request_timeout_s=FAST_TIMEOUT),
        [Listing("HANG"), Listing("AAPL")],
        ["15m"],
        start=WEEKS_AGO,
        now=NOW,
    )
    hang, aapl = results
    assert hang.status == "failed" and aapl.status == "updated"
    assert "HANG 15m historical request" in hang.error and "failed after 2 attempts" in hang.error
    assert "no answer within 0.5 s" in hang.error
    assert read_bars(engine, ["HANG"], "15m").empty


def test_dropped_connection_reconnects_with_a_new_client_id_and_resumes(engine, gateway, make_source):
    gateway.faults = Faults(drop_after_bars=300, hold_client_id=True)
    source = make_source()
    result = fetch_result(engine, source, Listing("AAPL"), "15m", start=WEEKS_AGO, now=NOW)
    assert result.status == "updated", result.error
    assert source.stats.reconnects == 1 and source.client_id == 6  # id 5 was still held by the gateway
    outcomes = [r.outcome for r in gateway.historical()]
    assert outcomes == ["ok", "ok", "dropped", "ok"]
    assert_matches_gateway(engine, gateway, "AAPL", "15m", WEEKS_AGO)
    assert result.bars_fetched == result.bars_written == 390


def test_throttle_keeps_within_the_budget(engine, gateway, make_source):
    tight = PacingRules(
        mode="strict",
        max_requests=4,
        window_s=1.0,
        identical_s=0.3,
        per_contract=2,
        per_contract_window_s=0.3,
        margin_s=0.1,
    )
    gateway.rules = tight
    source = make_source(rules=tight)
    start = NOW - pd.Timedelta(weeks=5)
    results = fetch_results(engine, source, [Listing("AAPL"), Listing("MSFT")], ["15m"], start=start, now=NOW)
    assert {r.status for r in results} == {"updated"}
    historical = gateway.historical()
    assert len(historical) == 10
    assert "pacing" not in {r.outcome for r in historical}  # the gateway saw no violation
    times = [r.at for r in historical]
    for i, t in enumerate(times):
        assert sum(t - 1.0 < u <= t for u in times[: i + 1]) <= 4
    assert source.stats.pacing_waits > 0
    assert_matches_gateway(engine, gateway, "MSFT", "15m", start)


def test_gateway_answers_rule_breaking_requests_like_ibkr(gateway):
    async def session() -> tuple[list, list]:
        ib = IB()
        ib.RaiseRequestErrors = True
        errors: list[tuple[int, str]] = []
        ib.errorEvent += lambda req_id, code, message, contract: errors.append((code, message))
        await ib.connectAsync("127.0.0.1", gateway.port, 9, timeout=2, readonly=True)
        contract = Stock("AAPL", "SMART", "USD")
        answers = []
        try:
            for duration, bar_size in [
                ("2 W", "15 mins"),
                ("400 D", "1 day"),
                ("1 D", "15 mins"),
                ("1 D", "15 mins"),
            ]:
                try:
                    bars = await ib.reqHistoricalDataAsync(
                        contract, "20261118-21:00:00", duration, bar_size, "TRADES", True, 2, timeout=1
                    )
                    answers.append(len(bars))
                except RequestError as exc:
                    answers.append((exc.code, exc.message))
        finally:
            ib.disconnect()
        return answers, [e for e in errors if e[0] < 2100]

    (too_long, in_years, ok, identical), errors = run_on_ib_loop(session())
    assert too_long[0] == 162 and "Time length exceed max" in too_long[1]
    # 321 is a validation warning to ib_async: the request is left to time out, as against the real gateway
    assert in_years == 0
    assert (321, IN_YEARS) in errors and "longer than 365 days must be made in years" in IN_YEARS
    assert ok == 26
    assert identical[0] == 162 and "pacing violation" in identical[1]  # identical request within 15 s
