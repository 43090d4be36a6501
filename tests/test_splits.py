"""Splits and revisions: detected in each fetch's re-read overlap and repaired (the real IbkrSource against the
IB Gateway stand-in serving history split-adjusted as of its clock); split-like jumps found in a series."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tests.fake_ibgateway import FakeIBGateway
from tt_pipeline.datasets import build_dataset
from tt_pipeline.market import refresh_partitions
from tt_pipeline.retraining import retrain_request
from tt_resources import calendar
from tt_resources.db.corporate_actions import recorded_actions
from tt_resources.db.features import read_features
from tt_resources.db.ibkr_records import IbkrRecorder
from tt_resources.db.prices import read_bars
from tt_resources.sources.ibkr import IbkrSettings, IbkrSource, chunk_plan
from tt_resources.sources.pacing import PacingBudget, PacingRules
from tt_resources.splits import back_adjust, compare_overlap, parse_ratio, ratio_text, split_jumps
from tt_resources.watchlist import Listing

pytestmark = pytest.mark.timeout(180)

BEFORE = pd.Timestamp("2026-06-05 21:30", tz="UTC")  # Friday after the close
AFTER = pd.Timestamp("2026-06-17 21:30", tz="UTC")  # SPLT split 2:1 from 2026-06-10
HEAD = pd.Timestamp("2026-04-20 13:30", tz="UTC")  # as in the issue: 33 1d, 231 1h, 858 15m bars
TIMEFRAMES = ("1d", "1h", "15m")
RULES = PacingRules(
    max_requests=1000, window_s=1.0, identical_s=0.2, per_contract=50, per_contract_window_s=0.5, margin_s=0.1
)
SETTINGS = IbkrSettings(
    connect_timeout_s=5.0, request_timeout_s=10.0, max_attempts=4, backoff_s=0.02, backoff_max_s=0.2
)
LISTINGS = [Listing("SPLT"), Listing("KEEP")]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def split_run(request, tmp_path_factory):
    """Run 1 at BEFORE stores SPLT and KEEP (1d, 1h, 15m) with features and builds the 1h dataset; the clock
    moves past SPLT's 2:1 split; run 2 at AFTER. Shared by the tests below (one scenario per backend)."""
    engine = request.getfixturevalue(f"{request.param}_module_engine")
    gateway = FakeIBGateway(BEFORE, rules=RULES, head=HEAD)
    gateway.split("SPLT", "2026-06-10", 2.0)
    gateway.start()
    data_dir = tmp_path_factory.mktemp("datasets")
    source = IbkrSource(
        dataclasses.replace(SETTINGS, port=gateway.port, client_id=7),
        budget=PacingBudget(engine, RULES),
        recorder=IbkrRecorder(engine),
    )
    try:
        for tf in TIMEFRAMES:
            refresh_partitions(engine, source, LISTINGS, tf, now=BEFORE)
        stored_before = read_bars(engine, ["SPLT"], "1d")
        before = build_dataset(
            engine, "1h", ["SPLT", "KEEP"], test_fraction=0.3, data_dir=data_dir, now=BEFORE
        )
        sent = len(gateway.historical())
        gateway.now = AFTER
        outcomes = {tf: refresh_partitions(engine, source, LISTINGS, tf, now=AFTER) for tf in TIMEFRAMES}
        repair_requests = len(gateway.historical()) - sent
        after = build_dataset(engine, "1h", ["SPLT", "KEEP"], test_fraction=0.3, data_dir=data_dir, now=AFTER)
        yield engine, gateway, stored_before, outcomes, before, after, repair_requests
    finally:
        source.close()
        gateway.stop()


@pytest.fixture(scope="module")
def sqlite_module_engine(tmp_path_factory, sqlite_template):
    import shutil

    from tt_resources.db.engine import create_engine

    path = tmp_path_factory.mktemp("split") / "tt.sqlite"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_module_engine(pg_database):
    engine = pg_database.migrated()
    yield engine
    engine.dispose()


@pytest.mark.slow  # the shared scenario: two runs against the stand-in (10-25 s per backend)
def test_every_stored_bar_equals_what_the_gateway_serves_after_the_split(split_run):
    engine, gateway, stored_before, outcomes, *_ = split_run
    for symbol in ("SPLT", "KEEP"):
        for tf in TIMEFRAMES:
            stored = read_bars(engine, [symbol], tf)
            end = calendar.last_closed_bar(tf, AFTER) + pd.Timedelta(seconds=1)
            served = gateway.expected(symbol, tf, HEAD, end)
            assert list(stored["ts"]) == list(served["ts"]), (symbol, tf)
            assert stored["close"].to_list() == pytest.approx(served["close"].to_list()), (symbol, tf)
            assert stored["volume"].to_list() == pytest.approx(served["volume"].to_list()), (symbol, tf)
    # the 1d bar of 2026-06-04 was stored at its unadjusted price and is now half of it, volume doubled
    old = stored_before.set_index("ts").loc[pd.Timestamp("2026-06-04 13:30", tz="UTC")]
    new = read_bars(engine, ["SPLT"], "1d").set_index("ts").loc[pd.Timestamp("2026-06-04 13:30", tz="UTC")]
    assert new["close"] == pytest.approx(old["close"] / 2, abs=1e-4) and new["volume"] == old["volume"] * 2
    statuses = {(o.symbol, tf): o.report().status for tf in TIMEFRAMES for o in outcomes[tf]}
    # the repair found in SPLT 1d brought SPLT 1h and 15m up to date too
    assert statuses == {
        **{("KEEP", tf): "updated" for tf in TIMEFRAMES},
        **{("SPLT", tf): "updated" for tf in TIMEFRAMES},
    } | {("SPLT", "1h"): "fresh", ("SPLT", "15m"): "fresh"}


@pytest.mark.slow  # the shared scenario: two runs against the stand-in (10-25 s per backend)
def test_one_corporate_action_is_recorded_and_named_in_the_summary(split_run):
    engine, _, _, outcomes, *_ = split_run
    actions = recorded_actions(engine)
    assert len(actions) == 1
    action = actions.iloc[0]
    assert (action["symbol"], action["kind"], action["ratio"], action["timeframe"]) == (
        "SPLT",
        "split",
        2.0,
        "1d",
    )
    assert action["first_session"] == pd.Timestamp("2026-06-08 13:30", tz="UTC")  # the first after 06-05
    assert action["source"] == "ibkr" and "x0.5 in price and x2 in volume" in action["evidence"]
    [splt_1d] = [o.report() for o in outcomes["1d"] if o.symbol == "SPLT"]
    assert splt_1d.changes.startswith("split 2:1 (first session 2026-06-08 or later): history fetched again")
    assert "(1d, 1h, 15m)" in splt_1d.changes
    assert [o.report().changes for o in outcomes["1h"]] == [None, None]  # repaired already: nothing new


@pytest.mark.slow  # the shared scenario: two runs against the stand-in (10-25 s per backend)
def test_features_carry_no_fake_return_and_the_split_gives_one_new_dataset(split_run):
    engine, _, _, _, before, after, _ = split_run
    for tf, at in (("1d", "2026-06-05 13:30"), ("15m", "2026-06-05 19:45"), ("1d", "2026-06-10 13:30")):
        bars = read_bars(engine, ["SPLT"], tf)
        feats = read_features(engine, ["SPLT"], tf)
        assert len(feats) == len(bars)  # features up to the last bar, recomputed over the replaced history
        ts = pd.Timestamp(at, tz="UTC")
        ret = feats.set_index("ts").loc[ts, "ret_1"]
        closes = bars.set_index("ts")["close"]
        i = closes.index.get_loc(ts)
        assert ret == pytest.approx(closes.iloc[i] / closes.iloc[i - 1] - 1, abs=1e-9)
        assert abs(ret) < 0.2, (tf, at, ret)  # the stored series was -0.4975 here before the repair
    assert after.version != before.version and after.panel.symbols == ("KEEP", "SPLT")
    request = retrain_request(engine, "1h", after.version, min_sharpe=0.0, config={})
    assert request is not None and request.reason == "new dataset"
    assert request.run_key == f"1h:dataset:{after.version}"  # the one request for this dataset version


@pytest.mark.slow  # the shared scenario: two runs against the stand-in (10-25 s per backend)
def test_a_split_repair_costs_the_symbols_history_once(split_run):
    engine, *_, repair_requests = split_run
    history = 0
    for tf in TIMEFRAMES:
        first = read_bars(engine, ["SPLT"], tf)["ts"].iloc[0]
        history += len(chunk_plan(tf, first, calendar.last_closed_bar(tf, AFTER) + pd.Timedelta(seconds=1)))
    # KEEP's tails from 06-04 (1d: 1, 1h: 1, 15m: two 1 W chunks) + SPLT's 1d tail that found the split (1)
    # + SPLT's history once; SPLT 1h and 15m are fresh then
    assert repair_requests == 4 + 1 + history


def test_compare_overlap_tells_a_split_from_a_revision():
    ts = pd.date_range("2026-06-01 13:30", periods=3, freq="D", tz="UTC")
    stored = pd.DataFrame(
        {"ts": ts, "open": 100.0, "high": 102.0, "low": 99.0, "close": 101.0, "volume": 1000.0}
    )
    assert compare_overlap(stored, stored.copy()) is None
    adjusted = stored.assign(**{c: stored[c] / 3 for c in ("open", "high", "low", "close")}, volume=3000.0)
    split = compare_overlap(stored, adjusted)
    assert (split.kind, split.ratio, split.changed, split.compared) == ("split", 3.0, 3, 3)
    revised = stored.copy()
    revised.loc[2, "close"] = 100.5
    change = compare_overlap(stored, revised)
    assert (change.kind, change.first_ts, change.changed) == ("revision", ts[2], 1)
    reverse = stored.assign(**{c: stored[c] * 10 for c in ("open", "high", "low", "close")}, volume=100.0)
    assert compare_overlap(stored, reverse).ratio == pytest.approx(0.1)


def test_split_jumps_find_an_unadjusted_split_and_skip_declared_ones():
    ts = pd.DatetimeIndex(
        calendar.expected_bar_starts(
            "1d", pd.Timestamp("2026-05-01", tz="UTC"), pd.Timestamp("2026-06-30", tz="UTC")
        )
    )
    close = 100 * np.exp(np.cumsum(np.full(len(ts), 0.001)))
    volume = np.full(len(ts), 1e6)
    bars = pd.DataFrame({"ts": ts, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close})
    bars["volume"] = volume
    assert split_jumps(bars).empty
    at = int(ts.searchsorted(pd.Timestamp("2026-06-10 13:30", tz="UTC")))
    unadjusted = back_adjust(bars, [(ts[at], 1 / 2)])  # the inverse of adjusting: before at x2, volume /2
    [jump] = split_jumps(unadjusted).itertuples()
    assert (jump.position, jump.ratio, jump.ts) == (at, 2.0, ts[at])
    assert split_jumps(unadjusted, [(ts[at], 2.0)]).empty
    assert split_jumps(back_adjust(unadjusted, [(ts[at], 2.0)])).empty
    crash = bars.copy()  # a -50 % day on ordinary volume is a crash, not a split
    crash.loc[at:, ["open", "high", "low", "close"]] /= 2
    assert split_jumps(crash).empty


def test_ratios_read_and_written():
    assert [parse_ratio(t) for t in ("2:1", "3-for-2", "1:10", "4")] == [2.0, 1.5, 0.1, 4.0]
    assert [ratio_text(r) for r in (2.0, 1.5, 0.1)] == ["2:1", "3:2", "1:10"]
    with pytest.raises(ValueError):
        parse_ratio("1:1")


@pytest.mark.slow  # three tt ingest runs against the stand-in (5-10 s)
def test_an_accepted_hole_makes_the_partition_pass(sqlite_url, tmp_path):
    """A suspension the gateway never has bars for: after the last attempt the CLI says how to accept it and
    that the bars are stored; `tt ingest --accept-hole` makes coverage count it as expected-empty."""
    from tests.fake_ibgateway import Faults
    from tests.test_ingest_cli import run
    from tt_resources.db.engine import create_engine
    from tt_resources.db.holes import open_holes

    now = pd.Timestamp.now(tz="UTC").floor("s")  # the CLI's clock
    start = (now - pd.Timedelta(days=90)).normalize()
    gateway = FakeIBGateway(now, rules=RULES)
    halt = (
        start + pd.DateOffset(months=2) - pd.Timedelta(days=3),
        start + pd.DateOffset(months=2) + pd.Timedelta(days=3),
    )
    gateway.faults = Faults(no_data={"SUSP": halt})  # the second month's chunk: "no data", always
    gateway.start()
    env = {
        "IB_PORT": str(gateway.port),
        "IB_CLIENT_ID": "61",
        "TT_DATA_DIR": str(tmp_path),
        "TT_IB_HOLE_ATTEMPTS": "1",
    }
    args = ("--source", "ibkr", "--symbols", "SUSP", "--interval", "1h", "--start", f"{start:%Y-%m-%d}")
    try:
        first = run(sqlite_url, *args, **env)
        engine = create_engine(sqlite_url)
        [hole] = open_holes(engine, "1h", "SUSP")
        span = f"{hole.start:%Y-%m-%d}..{hole.end - pd.Timedelta(days=1):%Y-%m-%d}"
        accepted = run(sqlite_url, *args, "--accept-hole", f"SUSP:1h:{span}:suspended", **env)
        bad = run(sqlite_url, *args, "--accept-hole", "SUSP:1h:2026-04-06", **env)
    finally:
        gateway.stop()
    assert first.exit_code == 1, first.output
    assert (
        "failed every retry and is no longer asked for; if the market had no bars there (a suspension), "
        "accept it: tt ingest --accept-hole SUSP:1h:FIRST..LAST:suspended" in " ".join(first.output.split())
    )
    assert (
        "; its bars are kept, features not updated (" in first.output
    )  # the failure says the bars were kept
    assert accepted.exit_code == 0, accepted.output
    assert f"accepted SUSP 1h {span} as empty (suspended): 1 hole(s)" in " ".join(accepted.output.split())
    assert open_holes(engine, "1h", "SUSP") == []
    assert bad.exit_code == 2 and "need SYMBOL:TIMEFRAME:FIRST..LAST[:NOTE]" in bad.output
    engine.dispose()


def test_a_revised_bar_in_the_overlap_is_recorded_stored_and_named(sqlite_engine, tmp_path):
    """A CSV file whose bar of the day before was corrected after the first run: the re-read overlap finds it,
    a revision row is written, the new values are stored and the summary names it."""
    from tt_resources.sources.csv import CsvSource

    sessions = calendar.expected_bar_starts("1d", pd.Timestamp("2026-05-01", tz="UTC"), AFTER)
    lines = ["date,open,high,low,close,volume"] + [
        f"{ts:%Y-%m-%d},{100 + i * 0.1:.2f},{101 + i * 0.1:.2f},{99 + i * 0.1:.2f},{100.5 + i * 0.1:.2f},1000000"
        for i, ts in enumerate(sessions)
    ]
    path = tmp_path / "REV_1d.csv"
    path.write_text("\n".join(lines[:-1]) + "\n")  # the first run: every session but the last
    source, listing = CsvSource(tmp_path), [Listing("REV")]
    first = pd.Timestamp(sessions[0]).isoformat()
    refresh_partitions(
        sqlite_engine, source, listing, "1d", start=first, now=sessions[-2] + pd.Timedelta(hours=8)
    )
    fields = lines[-2].split(",")
    corrected = round(float(fields[4]) - 0.25, 2)
    revised = ",".join([*fields[:4], f"{corrected:.2f}", "1250000"])  # yesterday's close and volume corrected
    path.write_text("\n".join([*lines[:-2], revised, lines[-1]]) + "\n")
    [outcome] = refresh_partitions(
        sqlite_engine, source, listing, "1d", start=first, now=sessions[-1] + pd.Timedelta(hours=8)
    )
    report = outcome.report()
    assert report.status == "updated" and report.changes.startswith(
        "revision: 1 of 2 re-read bars changed, e.g."
    )
    [action] = recorded_actions(sqlite_engine).itertuples()
    assert (action.kind, action.first_session) == ("revision", sessions[-2]) and pd.isna(action.ratio)
    stored = read_bars(sqlite_engine, ["REV"], "1d").set_index("ts")
    assert stored.loc[sessions[-2], "close"] == corrected and stored.loc[sessions[-2], "volume"] == 1_250_000
    feats = read_features(sqlite_engine, ["REV"], "1d").set_index("ts")
    assert feats.loc[sessions[-2], "ret_1"] == pytest.approx(corrected / stored["close"].iloc[-3] - 1)


def test_the_raw_bars_rule_flags_a_stored_unadjusted_split_unless_it_is_recorded():
    """The issue's stored series: run 2 overwrote the overlap bar halved, so 06-04 close 381.48 is followed by
    06-05 at half: the no_split_jumps rule fails (for any source); a recorded split there passes it."""
    from tt_pipeline.quality import assess_bars

    ts = pd.DatetimeIndex(calendar.expected_bar_starts("1d", pd.Timestamp("2026-04-20", tz="UTC"), AFTER))
    close = np.linspace(370, 382, len(ts))
    bars = pd.DataFrame({"ts": ts, "open": close, "high": close + 2, "low": close - 2, "close": close})
    bars["volume"] = 1e6
    at = int(ts.searchsorted(pd.Timestamp("2026-06-05 13:30", tz="UTC")))
    bars.loc[at:, ["open", "high", "low", "close"]] /= 2
    bars.loc[at:, "volume"] *= 2
    quality = assess_bars(bars, "1d", AFTER)
    assert quality.failed_rules() == ["no_split_jumps"] and quality.split_jumps == 1
    assert quality.reason().startswith("no_split_jumps: 1 jump(s) like an unadjusted split, first 2026-06-05")
    assert "unadjusted 2:1 split" in quality.reason()
    assert assess_bars(bars, "1d", AFTER, splits=[(ts[at], 2.0)]).ok
