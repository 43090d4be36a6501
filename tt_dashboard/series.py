"""Pure pandas/numpy transforms behind the charts. They work on *bucketed curves*: one row per bucket of consecutive
steps with columns ts / end_ts (first and last bar), low / high / close (net worth), r_sum / r_sq / n (period-return
sums), turnover, costs (sums) — as tt_resources.db.reports.portfolio_buckets returns them. A bucket of one step
is exact, so short episodes are drawn as logged and long ones stay a few thousand points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SUMS = ("r_sum", "r_sq", "n", "turnover", "costs")


def from_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """One-step buckets from raw tt_portfolio rows (episode_id, step, ts, net_worth, period_return, turnover,
    costs)."""
    r = steps["period_return"].astype(float)
    return pd.DataFrame(
        {
            "episode_id": steps["episode_id"],
            "ts": steps["ts"],
            "end_ts": steps["ts"],
            "low": steps["net_worth"],
            "high": steps["net_worth"],
            "close": steps["net_worth"],
            "r_sum": r,
            "r_sq": r * r,
            "n": 1,
            "turnover": steps["turnover"],
            "costs": steps["costs"],
        }
    )


def stitch(buckets: pd.DataFrame, episode_ids: Sequence[str], initial: Sequence[float]) -> pd.DataFrame:
    """Chain consecutive episodes (e.g. walk-forward test windows) into one curve starting at `initial[0]`.

    Episode k started from `initial[k]`; it is rescaled to continue where episode k-1 closed. Adds `drawdown`:
    the fraction the bucket's low sits below the running peak (>= 0).
    """
    parts, level = [], float(initial[0])
    for episode_id, start in zip(episode_ids, initial, strict=True):
        part = buckets[buckets["episode_id"] == episode_id]
        if part.empty:
            continue
        scale = level / float(start)
        parts.append(part.assign(**{c: part[c] * scale for c in ("low", "high", "close", "costs")}))
        level = float(parts[-1]["close"].iloc[-1])
    if not parts:
        return pd.DataFrame(columns=[*buckets.columns, "drawdown"])
    curve = pd.concat(parts, ignore_index=True)
    peak_before = np.maximum.accumulate(np.concatenate([[float(initial[0])], curve["high"].to_numpy()]))[:-1]
    low = curve["low"].to_numpy()
    return curve.assign(drawdown=1.0 - low / np.maximum(peak_before, low))


def rebucket(curve: pd.DataFrame, max_buckets: int) -> pd.DataFrame:
    """Merge consecutive buckets so that at most `max_buckets` remain (a no-op when there are fewer)."""
    if len(curve) <= max_buckets:
        return curve.reset_index(drop=True)
    groups = curve.groupby(np.arange(len(curve)) // -(-len(curve) // max_buckets))
    spec = {"ts": "first", "end_ts": "last", "low": "min", "high": "max", "close": "last"}
    spec |= dict.fromkeys(SUMS, "sum") | ({"drawdown": "max"} if "drawdown" in curve else {})
    return groups.agg(spec).reset_index(drop=True)


def line(curve: pd.DataFrame) -> pd.DataFrame:
    """Points (ts, net_worth) that draw the curve: the close of one-step buckets; for wider buckets its low and
    high (low first when the bucket closed up) and then its close, so peaks and troughs survive downsampling."""
    single = curve["n"].to_numpy() <= 1
    if single.all():
        return pd.DataFrame({"ts": curve["end_ts"], "net_worth": curve["close"]})
    up = curve["close"].diff().fillna(0).to_numpy() >= 0
    first = np.where(up, curve["low"], curve["high"])
    second = np.where(up, curve["high"], curve["low"])
    start, end = curve["ts"], curve["end_ts"]
    middle = start + (end - start) / 2
    ts = np.column_stack([start, middle, end]).ravel()
    values = np.column_stack([first, second, curve["close"]]).ravel()
    keep = np.column_stack([~single, ~single, np.ones_like(single)]).ravel()
    return pd.DataFrame({"ts": pd.to_datetime(ts[keep], utc=True), "net_worth": values[keep]})


def rolling_sharpe(curve: pd.DataFrame, window_steps: int, bars_per_year: int) -> pd.Series:
    """Annualised Sharpe ratio over a trailing window of about `window_steps` bars (whole buckets), at each
    bucket's end; NaN until the window is full or when returns are flat."""
    per_bucket = max(float(curve["n"].mean()), 1.0)
    window = max(round(window_steps / per_bucket), 1)
    total, squares, count = (
        curve[c].rolling(window, min_periods=window).sum() for c in ("r_sum", "r_sq", "n")
    )
    mean = total / count
    variance = (squares - count * mean * mean) / (count - 1)
    return mean / np.sqrt(variance.where(variance > 1e-18)) * np.sqrt(bars_per_year)


def headline(curve: pd.DataFrame, initial: float, bars_per_year: int) -> dict[str, float]:
    """net_worth, total_return, sharpe (annualised, whole curve), max_drawdown, costs of a stitched curve."""
    n, total, squares = (float(curve[c].sum()) for c in ("n", "r_sum", "r_sq"))
    mean = total / n
    variance = (squares - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return {
        "net_worth": float(curve["close"].iloc[-1]),
        "total_return": float(curve["close"].iloc[-1]) / initial - 1,
        "sharpe": mean / np.sqrt(variance) * np.sqrt(bars_per_year) if variance > 1e-18 else float("nan"),
        "max_drawdown": float(curve["drawdown"].max()),
        "costs": float(curve["costs"].sum()),
    }


def evaluated_headline(stitched: pd.DataFrame, policy: str, initial: float) -> dict[str, float]:
    """The headline numbers of `policy` as its evaluation defines them: its tt_eval row over all folds
    stitched (`stitched`: rows with fold -1; the agent's seed -1 row is the seed ensemble), with net worth
    and costs in dollars of `initial`. Keys as `headline`'s."""
    row = stitched[(stitched["policy"] == policy) & (stitched["seed"] == -1)].iloc[0]
    return {
        "net_worth": initial * (1 + float(row["total_return"])),
        "total_return": float(row["total_return"]),
        "sharpe": float(row["sharpe"]) if pd.notna(row["sharpe"]) else float("nan"),
        "max_drawdown": float(row["max_drawdown"]),
        "costs": initial * float(row["costs"]),
    }


def seed_spread(stitched: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The per-seed rows behind a seed ensemble: `policy`'s stitched tt_eval rows with seed >= 0, by seed
    (empty for deterministic policies)."""
    rows = stitched[(stitched["policy"] == policy) & (stitched["seed"] >= 0)]
    return rows.sort_values("seed").reset_index(drop=True)


def bucket_stride(n: int, max_buckets: int) -> int:
    """Steps per bucket so that `n` steps fit in at most `max_buckets` buckets."""
    return max(1, -(-n // max_buckets))


def holding_summary(periods: pd.DataFrame) -> pd.DataFrame:
    """Per symbol: positions (runs with quantity > 0) and their mean/median/max holding period in bars."""
    summary = (
        periods.groupby("symbol")["steps"]
        .agg(positions="size", mean_bars="mean", median_bars="median", max_bars="max")
        .reset_index()
    )
    return summary.sort_values(["positions", "symbol"], ascending=[False, True]).reset_index(drop=True)
