"""Pure pandas/numpy transforms behind the dashboard's charts: stitching windows, rolling Sharpe, downsampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def stitch(steps: pd.DataFrame, episode_ids: Sequence[str], initial: Sequence[float]) -> pd.DataFrame:
    """Chain the per-step rows of consecutive episodes (e.g. walk-forward test windows) into one equity curve.

    `steps` holds tt_portfolio rows (episode_id, step, ts, net_worth, period_return, turnover, costs); each episode
    k starts from `initial[k]` and is rescaled so it continues where episode k-1 ended. Returns ts, net_worth
    (in the first episode's currency units), period_return, drawdown (fraction below the running peak, >= 0),
    turnover, costs (rescaled like net worth).
    """
    parts, level = [], float(initial[0]) if len(initial) else 1.0
    for episode_id, start in zip(episode_ids, initial, strict=True):
        part = steps[steps["episode_id"] == episode_id]
        if part.empty:
            continue
        scale = level / float(start)
        parts.append(
            part.assign(net_worth=part["net_worth"] * scale, costs=part["costs"] * scale)[
                ["ts", "net_worth", "period_return", "turnover", "costs"]
            ]
        )
        level = float(parts[-1]["net_worth"].iloc[-1])
    if not parts:
        return pd.DataFrame(columns=["ts", "net_worth", "period_return", "turnover", "costs", "drawdown"])
    curve = pd.concat(parts, ignore_index=True)
    peak = np.maximum.accumulate(np.maximum(curve["net_worth"].to_numpy(), float(initial[0])))
    return curve.assign(drawdown=1.0 - curve["net_worth"].to_numpy() / peak)


def rolling_sharpe(returns: pd.Series, window: int, bars_per_year: int) -> pd.Series:
    """Annualised Sharpe ratio of per-bar returns over a trailing `window` of bars (NaN until full or flat)."""
    rolling = returns.rolling(window, min_periods=window)
    std = rolling.std()
    return (rolling.mean() / std.where(std > 1e-12)) * np.sqrt(bars_per_year)


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted row indices that keep each bucket's minimum and maximum (plus the ends): at most ~`max_points`.

    Vectorised M4-style downsampling for line charts: peaks and troughs survive, so drawdowns look the same.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(max_points // 2 - 1, 1)
    size = -(-n // buckets)
    filled = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    padded = np.concatenate([filled, np.repeat(filled[-1], buckets * size - n)]).reshape(buckets, size)
    offsets = np.arange(buckets) * size
    keep = np.concatenate([offsets + padded.argmin(axis=1), offsets + padded.argmax(axis=1), [0, n - 1]])
    return np.unique(np.minimum(keep, n - 1))


def bucket_stride(n: int, max_buckets: int) -> int:
    """Steps per bucket so that `n` steps fit in at most `max_buckets` buckets."""
    return max(1, -(-n // max_buckets))


def bucketed(
    frame: pd.DataFrame, max_buckets: int, sums: Sequence[str], means: Sequence[str]
) -> pd.DataFrame:
    """Aggregate consecutive rows into at most `max_buckets` buckets: first ts, summed `sums`, averaged `means`."""
    stride = bucket_stride(len(frame), max_buckets)
    groups = frame.groupby(np.arange(len(frame)) // stride)
    return groups.agg({"ts": "first", **dict.fromkeys(sums, "sum"), **dict.fromkeys(means, "mean")})


def holding_summary(periods: pd.DataFrame) -> pd.DataFrame:
    """Per symbol: positions (runs with quantity > 0) and their mean/median/max holding period in bars."""
    summary = (
        periods.groupby("symbol")["steps"]
        .agg(positions="size", mean_bars="mean", median_bars="median", max_bars="max")
        .reset_index()
    )
    return summary.sort_values(["positions", "symbol"], ascending=[False, True]).reset_index(drop=True)
