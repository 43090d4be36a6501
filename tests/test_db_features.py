"""Feature store on both backends: idempotent wide upserts, NULL for non-finite values, readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tt_resources.db import read_features, upsert_features
from tt_resources.terms import FEATURE_COLUMNS


def make_features(symbol: str = "AAPL", n: int = 4, start: str = "2024-01-02") -> pd.DataFrame:
    values = np.arange(n * len(FEATURE_COLUMNS), dtype=float).reshape(n, -1) / 7
    frame = pd.DataFrame(values, columns=list(FEATURE_COLUMNS))
    frame.insert(0, "ts", pd.date_range(start, periods=n, freq="D", tz="UTC"))
    frame.insert(0, "timeframe", "1d")
    frame.insert(0, "symbol", symbol)
    return frame


def test_upsert_is_idempotent_and_updates_changes(engine):
    frame = make_features()
    frame.loc[0, "ret_1"] = np.nan  # first bar has no previous close
    frame.loc[1, "vol_10"] = np.inf
    assert upsert_features(engine, frame).inserted == 4
    assert upsert_features(engine, frame).unchanged == 4
    revised = pd.concat([frame, make_features(n=6).iloc[4:]], ignore_index=True)
    revised.loc[3, "rsi_14"] = 55.5
    result = upsert_features(engine, revised)
    assert (result.inserted, result.updated, result.unchanged) == (2, 1, 3)
    stored = read_features(engine, ["AAPL"], "1d")
    assert list(stored.columns) == ["symbol", "ts", *FEATURE_COLUMNS]
    assert len(stored) == 6 and stored.loc[3, "rsi_14"] == 55.5
    assert np.isnan(stored.loc[0, "ret_1"]) and np.isnan(stored.loc[1, "vol_10"])
    assert stored.loc[2, "hl_range"] == frame.loc[2, "hl_range"]  # exact float round trip


def test_read_features_window_and_symbols(engine):
    upsert_features(engine, pd.concat([make_features("A"), make_features("AA")]))
    window = read_features(engine, "A", "1d", start=pd.Timestamp("2024-01-03", tz="UTC"))
    assert window["symbol"].tolist() == ["A"] * 3
    assert window["ts"].iloc[0] == pd.Timestamp("2024-01-03", tz="UTC")
    assert read_features(engine, None, "1h").empty


def test_bad_frames_are_named(engine):
    with pytest.raises(ValueError, match=r"lacks column.*mom_20"):
        upsert_features(engine, make_features().drop(columns=["mom_20"]))
    with pytest.raises(ValueError, match=r"unknown timeframe.*4h"):
        upsert_features(engine, make_features().assign(timeframe="4h"))
    with pytest.raises(ValueError, match="duplicate key"):
        upsert_features(engine, pd.concat([make_features(), make_features()]))
    assert read_features(engine, None, "1d").empty


def test_incremental_features_equal_one_pass(engine):
    """Issue 26: rsi_14 differed by up to 1.9e-6 between features stored bar by bar and in one pass (a
    limited look-back for Wilder's smoothing), so identical bars gave another dataset version. Stored in
    three increments, the features equal one pass over the whole series exactly (600 bars: beyond any
    look-back)."""
    from tt_pipeline.market import update_features
    from tt_rl.features import compute_features
    from tt_rl.synthetic import synthetic_bars

    bars = synthetic_bars(["AAPL"], n_bars=600, seed=3).drop(columns="symbol").reset_index(drop=True)
    done = None
    for stop in (300, 301, 600):
        assert update_features(engine, "AAPL", "1d", bars.iloc[:stop], done=done) == stop - (
            0 if done is None else int(bars["ts"].searchsorted(done, side="right"))
        )
        done = bars["ts"].iloc[stop - 1]
    stored = read_features(engine, ["AAPL"], "1d").drop(columns="symbol")
    one_pass = compute_features(bars)
    pd.testing.assert_frame_equal(
        stored.reset_index(drop=True), one_pass, check_exact=True, check_dtype=False
    )
