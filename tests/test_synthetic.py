"""The synthetic market: deterministic, on the NYSE grid, consistent across timeframes, realistic statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tt_resources import calendar
from tt_resources.sign_persistence import SESSION_STRENGTH, persistence_drift
from tt_resources.sources.synthetic import SyntheticSource, ar1
from tt_resources.watchlist import Listing

NOW = pd.Timestamp("2026-11-20 22:00", tz="UTC")


def source(seed: int = 3, now: pd.Timestamp = NOW, **kw) -> SyntheticSource:
    return SyntheticSource(seed=seed, clock=lambda: now, **kw)


def test_same_seed_and_symbol_give_the_same_bars():
    a = source().fetch(Listing("AAPL"), "1h", NOW - pd.Timedelta(days=30), NOW)
    b = source().fetch(Listing("AAPL"), "1h", NOW - pd.Timedelta(days=30), NOW)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(
        a["close"], source(seed=4).fetch(Listing("AAPL"), "1h", a["ts"].iloc[0], NOW)["close"]
    )
    assert not np.allclose(a["close"], source().fetch(Listing("MSFT"), "1h", a["ts"].iloc[0], NOW)["close"])


def test_later_clock_never_changes_earlier_bars():
    start, end = pd.Timestamp("2025-12-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC")
    early = source(now=end).fetch(Listing("XOM"), "15m", start, NOW)
    late = source().fetch(Listing("XOM"), "15m", start, end)
    assert len(early) == len(calendar.expected_bar_starts("15m", start, end)) > 500  # December's sessions
    pd.testing.assert_frame_equal(early, late)


@pytest.mark.parametrize("timeframe", ["15m", "1h", "1d"])
def test_bars_lie_on_the_calendar_grid_and_are_valid(timeframe):
    start = NOW - pd.Timedelta(days=60)
    bars = source().fetch(Listing("JPM"), timeframe, start, NOW)
    assert pd.DatetimeIndex(bars["ts"]).equals(
        calendar.expected_bar_starts(timeframe, start, NOW).rename(None)
    )
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["volume"] > 0).all() and (bars["bar_count"] >= 1).all()
    assert bars["wap"].between(bars["low"], bars["high"]).all()


def test_open_bars_are_not_served():
    mid_session = pd.Timestamp("2026-11-20 15:10", tz="UTC")  # 10:10 New York
    bars = source(now=mid_session).fetch(Listing("JPM"), "15m", mid_session - pd.Timedelta(days=1), NOW)
    assert bars["ts"].iloc[-1] == pd.Timestamp("2026-11-20 14:45", tz="UTC")


@pytest.mark.parametrize("timeframe", ["1h", "1d"])
def test_coarser_bars_aggregate_the_fifteen_minute_path(timeframe):
    start = NOW - pd.Timedelta(days=20)
    src = source()
    fine = src.fetch(Listing("KO"), "15m", start, NOW)
    coarse = src.fetch(Listing("KO"), timeframe, start, NOW).set_index("ts")
    table = calendar.bar_table(timeframe, start, NOW)
    fine["bucket"] = table["ts"].to_numpy()[np.searchsorted(table["ts"], fine["ts"], side="right") - 1]
    grouped = fine.groupby("bucket").agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    pd.testing.assert_frame_equal(
        coarse[["open", "high", "low", "close", "volume"]], grouped, check_names=False, check_freq=False
    )


def test_returns_have_fat_tails_volatility_clustering_and_common_factors():
    src = source()
    start = NOW - pd.DateOffset(years=3)
    listings = [
        Listing("AAA", sector="Energy"),
        Listing("BBB", sector="Energy"),
        Listing("CCC", sector="Utilities"),
    ]
    daily = {
        listing.symbol: np.log(src.fetch(listing, "1d", start, NOW).set_index("ts")["close"]).diff().dropna()
        for listing in listings
    }
    fine = np.log(src.fetch(listings[0], "15m", NOW - pd.DateOffset(years=1), NOW)["close"]).diff().dropna()
    assert fine.kurt() > 1.0  # excess kurtosis: fat tails
    assert daily["AAA"].abs().autocorr(1) > 0.05  # volatility clustering
    same_sector = daily["AAA"].corr(daily["BBB"])
    other_sector = daily["AAA"].corr(daily["CCC"])
    assert other_sector > 0.1  # the market factor
    assert same_sector > other_sector  # plus the sector factor
    assert 0.005 < daily["AAA"].std() < 0.05


def test_sign_persistence_drifts_in_the_direction_of_the_last_return_drift_included():
    noise = np.array([0.01, -0.02, -0.5, 0.0])  # the second period rises only by its drift
    np.testing.assert_array_equal(persistence_drift(noise, 0.1), [0.0, 0.1, 0.1, -0.1])
    assets = np.array([[0.01, -0.01], [0.0, 0.0]])  # periods x assets: each asset has its own sign
    np.testing.assert_array_equal(persistence_drift(assets, 0.1), [[0.0, 0.0], [0.1, -0.1]])


def test_planted_sign_persistence_is_a_known_edge_and_none_is_plain():
    """TT_SYNTHETIC_SIGNAL=sign_persistence: each session drifts SESSION_STRENGTH (log) in the direction of the
    previous session's close -> close move; the plain market ("none") has no such edge. Holding yesterday's
    risers earns about SESSION_STRENGTH a day more than holding yesterday's fallers."""

    start = NOW - pd.Timedelta(days=3 * 365)
    edges = {}
    for signal in ("sign_persistence", "none"):
        market = source(signal=signal)
        log_returns = np.concatenate(
            [
                np.diff(np.log(market.fetch(Listing(sym), "1d", start, NOW)["close"].to_numpy()))
                for sym in ("AAPL", "XOM", "JPM", "KO", "NVDA", "PFE")
            ]
        )
        edges[signal] = float(np.mean(log_returns[1:] * np.sign(log_returns[:-1])))
    assert edges["sign_persistence"] - edges["none"] == pytest.approx(SESSION_STRENGTH, rel=0.25)
    assert abs(edges["none"]) < 0.5 * SESSION_STRENGTH
    # the planted drift is in the session (open -> close), not the overnight gap
    plain, planted = (
        source(signal=s).fetch(Listing("KO"), "1d", start, NOW) for s in ("none", "sign_persistence")
    )
    np.testing.assert_allclose(
        planted["open"] / planted["close"].shift(), plain["open"] / plain["close"].shift()
    )


def test_unknown_signal_is_refused():
    with pytest.raises(ValueError, match="unknown synthetic signal 'momentum'"):
        source(signal="momentum")


def test_the_platforms_synthetic_market_stops_at_its_pinned_end_and_ingest_follows_its_clock(
    sqlite_engine, monkeypatch
):
    from tt_pipeline.market import refresh_partitions
    from tt_resources.sources import make_source
    from tt_resources.sources.base import source_now
    from tt_resources.sources.settings import SYNTHETIC_END, SourceSettings

    pinned = make_source(SourceSettings())  # the embedded default: TT_SYNTHETIC_END's default day
    assert source_now(pinned) == pd.Timestamp(SYNTHETIC_END, tz="UTC")
    start = pd.Timestamp(SYNTHETIC_END, tz="UTC") - pd.Timedelta(days=20)
    first = refresh_partitions(sqlite_engine, pinned, [Listing("AAA")], "1d", start=start)
    assert [o.report().status for o in first] == ["updated"]
    # the last bar is the last session closed by the pinned day, whatever the wall clock says
    assert first[0].last_ts.normalize() == calendar.nyse().previous_session(SYNTHETIC_END).tz_localize("UTC")
    # a second refresh (another day: the market is the same) finds the partition fresh, fetching nothing
    again = make_source(SourceSettings())
    second = refresh_partitions(sqlite_engine, again, [Listing("AAA")], "1d", start=start)
    assert [o.report().status for o in second] == ["fresh"] and again.stats.requests == 0
    assert source_now(make_source(SourceSettings(synthetic_end="now"))) > pinned.clock()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ar1_is_bit_for_bit_scipys_lfilter(seed):
    from scipy.signal import lfilter

    shocks = np.random.default_rng(seed).standard_normal(5_000) * 10.0 ** np.random.default_rng(
        seed
    ).integers(-3, 3)
    assert np.array_equal(ar1(shocks, 0.25, 0.97), lfilter([0.25], [1.0, -0.97], shocks))
