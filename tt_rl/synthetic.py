"""Seeded geometric-random-walk bars for tests and benchmarks (not market data)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tt_resources.timeframes import get_timeframe


def synthetic_bars(
    symbols: list[str], timeframe: str = "1d", n_bars: int = 300, *, seed: int = 0, start: str = "2020-01-01"
) -> pd.DataFrame:
    """Long bars frame (symbol, ts, open, high, low, close, volume) with ~20-40% annual volatility."""
    tf = get_timeframe(timeframe)
    rng = np.random.default_rng(seed)
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n_bars, freq=tf.bar)
    n = len(symbols)
    sigma = rng.uniform(0.2, 0.4, n) / np.sqrt(tf.bars_per_year)
    common = rng.normal(0.0, 1.0, (n_bars, 1))
    shocks = 0.5 * common + np.sqrt(0.75) * rng.normal(0.0, 1.0, (n_bars, n))
    close = rng.uniform(20, 300, n) * np.exp(np.cumsum(sigma * shocks + 0.05 / tf.bars_per_year, axis=0))
    close = np.round(close, 2)
    open_ = np.round(close * (1 + rng.normal(0, 0.002, close.shape)), 2)
    spread = np.abs(rng.normal(0, 0.01, close.shape))
    high = np.round(np.maximum(open_, close) * (1 + spread), 2)
    low = np.round(np.minimum(open_, close) * (1 - spread), 2)
    volume = rng.integers(100_000, 5_000_000, close.shape).astype(float)
    return long_bars(symbols, ts, open_, high, low, close, volume)


def long_bars(
    symbols: list[str],
    ts: pd.DatetimeIndex,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> pd.DataFrame:
    """Long bars frame (symbol, ts, open, high, low, close, volume) from (T, N) arrays, one column per symbol."""
    frames = [
        pd.DataFrame(
            {
                "symbol": sym,
                "ts": ts,
                "open": open_[:, j],
                "high": high[:, j],
                "low": low[:, j],
                "close": close[:, j],
                "volume": volume[:, j],
            }
        )
        for j, sym in enumerate(symbols)
    ]
    return pd.concat(frames, ignore_index=True)
