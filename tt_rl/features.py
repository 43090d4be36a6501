"""Per-symbol bar features, vectorised with pandas (no Python loop over bars).

Input: one symbol/timeframe bars frame (at least `tt_resources.terms.OHLCV_COLUMNS`), any order.
Output: ts + exactly `tt_resources.db.schema.FEATURE_COLUMNS`, sorted by ts; warm-up rows hold NaN.
A row depends on every bar before it (Wilder's RSI is an exponential average from the first bar), so the
stored features are always computed over a partition's whole stored series (tt_pipeline.market).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tt_resources.terms import FEATURE_COLUMNS, OHLCV_COLUMNS

RSI_BARS = 14


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Features of one symbol's bars: returns, realised volatility (per bar), momentum, RSI, volume z-score,
    high-low range. Units: fractions per bar (vol is not annualised), RSI 0..100. An unknown volume (NaN)
    leaves the volume statistics to the known ones and scores 0 (no information) at its own bar."""
    missing = [c for c in OHLCV_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars frame lacks column(s) {', '.join(missing)}")
    bars = bars.sort_values("ts", kind="stable")
    close = bars["close"].astype("float64").reset_index(drop=True)
    volume = bars["volume"].astype("float64").reset_index(drop=True)
    log_ret = np.log(close).diff()

    delta = close.diff()
    wilder = {"alpha": 1.0 / RSI_BARS, "adjust": False, "min_periods": RSI_BARS}
    avg_gain = delta.clip(lower=0.0).ewm(**wilder).mean()
    avg_loss = (-delta).clip(lower=0.0).ewm(**wilder).mean()
    total = avg_gain + avg_loss
    rsi = (100.0 * avg_gain / total.where(total > 0)).where(total > 0, 50.0).where(avg_gain.notna())

    # over the known volumes of the last 20 bars (at least 10); a bar whose volume the source did not know
    # (NULL, IBKR's -1) carries no volume information: its z-score is the neutral 0, not a gap in the panel
    vol_mean = volume.rolling(20, min_periods=10).mean()
    vol_std = volume.rolling(20, min_periods=10).std()
    volume_z = ((volume - vol_mean) / vol_std.where(vol_std > 0)).where(vol_std != 0, 0.0)
    volume_z = volume_z.mask(volume.isna() & vol_mean.notna(), 0.0)

    out = pd.DataFrame(
        {
            "ts": bars["ts"].to_numpy(),
            "ret_1": close.pct_change(fill_method=None),
            "log_ret_1": log_ret,
            "vol_10": log_ret.rolling(10).std(),
            "vol_20": log_ret.rolling(20).std(),
            "mom_20": close / close.shift(20) - 1.0,
            "rsi_14": rsi,
            "volume_z_20": volume_z,
            "hl_range": (bars["high"].to_numpy(dtype="float64") - bars["low"].to_numpy(dtype="float64"))
            / close.to_numpy(),
        }
    )
    return out[["ts", *FEATURE_COLUMNS]]
