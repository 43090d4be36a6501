"""Stock splits in bar series: the ratios a split takes, a change between stored bars and the source's answer
now (a split, or a revision), split-like jumps inside one series, and back-adjustment.

A split's `ratio` is new shares per old share (2.0 = 2:1, 0.1 = 1:10 reverse). IBKR serves TRADES bars
adjusted as of the request: every bar before the split's first session has its prices divided by the ratio
and its volume multiplied by it, so the series has no jump. An unadjusted series shows a jump at the first
session: open / previous close ~ 1 / ratio with volume ~ x ratio.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from tt_resources.terms import PRICE_COLUMNS

_FORWARD = (Fraction(3, 2), Fraction(5, 4), 2, Fraction(5, 2), 3, 4, 5, 6, 7, 8, 10, 15, 20, 25, 30, 40, 50)
# every ratio of one price change >= 1/3 (5:4 is only matched exactly, in overlaps; see jump_ratio)
SPLIT_RATIOS: tuple[Fraction, ...] = tuple(
    sorted({Fraction(r) for r in _FORWARD} | {1 / Fraction(r) for r in _FORWARD})
)
OVERLAP_RTOL = 0.01  # stored / served prices: the ratio within 1 % (IBKR rounds adjusted prices to cents)
VOLUME_RTOL = 0.02  # served / stored volume within 2 % of the ratio (volumes are rounded to lots)
JUMP_LOG_TOL = 0.05  # a jump: |log(open / previous close) + log(ratio)| <= 0.05 (a 5 % move on the day)
JUMP_MIN_MOVE = np.log(1.4)  # jumps smaller than 3:2's are ordinary moves
VOLUME_WINDOW = 5  # bars on each side whose median volume a jump's volume change is read from


def ratio_text(ratio: float) -> str:
    """`2:1`, `3:2`, `1:10`: new shares : old shares."""
    frac = Fraction(ratio).limit_denominator(100)
    return f"{frac.numerator}:{frac.denominator}"


def parse_ratio(text: str) -> float:
    """`2:1`, `2-for-1`, `1:10`, `2` -> new shares per old share; ValueError for anything else."""
    parts = str(text).strip().lower().replace("-for-", ":").replace("/", ":").split(":")
    if len(parts) == 1:
        parts.append("1")
    new, old = (float(p) for p in parts)  # ValueError for non-numbers
    if not (new > 0 and old > 0) or new == old:
        raise ValueError(f"split ratio {text!r}: need two different positive share counts, e.g. 2:1")
    return new / old


@dataclass(frozen=True)
class Change:
    """Stored bars that the source now serves differently. kind: split (every compared bar changed by
    one `ratio` in price, volume inverse) | revision (anything else; ratio None)."""

    kind: str
    ratio: float | None
    first_ts: pd.Timestamp  # first changed bar
    changed: int
    compared: int
    evidence: str


def compare_overlap(stored: pd.DataFrame, served: pd.DataFrame) -> Change | None:
    """Compare the bars both frames hold (same ts; columns ts, open, high, low, close, volume): None when
    every one is unchanged (volume unknown on either side is not compared)."""
    both = stored.merge(served, on="ts", suffixes=("_s", "_n")).sort_values("ts").reset_index(drop=True)
    if both.empty:
        return None
    old = both[[f"{c}_s" for c in PRICE_COLUMNS]].to_numpy("float64")
    new = both[[f"{c}_n" for c in PRICE_COLUMNS]].to_numpy("float64")
    vol_old, vol_new = (both[f"volume{s}"].to_numpy("float64") for s in ("_s", "_n"))
    known = np.isfinite(vol_old) & np.isfinite(vol_new)
    changed = ~np.isclose(old, new, rtol=1e-9, atol=0).all(axis=1) | (
        known & ~np.isclose(vol_old, vol_new, rtol=1e-9, atol=0)
    )
    if not changed.any():
        return None
    first = int(np.argmax(changed))
    ratio = _one_ratio(old / new, vol_new[known] / vol_old[known])
    row = both.iloc[first]
    example = (
        f"{row['ts']:%Y-%m-%d %H:%M} UTC close {row['close_s']:g} -> {row['close_n']:g}, "
        f"volume {row['volume_s']:g} -> {row['volume_n']:g}"
    )
    n, total = int(changed.sum()), len(both)
    if ratio is not None and n == total:
        evidence = (
            f"all {total} re-read bars changed by x{1 / ratio:.6g} in price and x{ratio:.6g} in volume, "
            f"e.g. {example}"
        )
        return Change("split", ratio, row["ts"], n, total, evidence)
    return Change(
        "revision", None, row["ts"], n, total, f"{n} of {total} re-read bars changed, e.g. {example}"
    )


def _one_ratio(price_ratios: np.ndarray, volume_ratios: np.ndarray) -> float | None:
    """The split ratio when every stored / served price is one ratio of SPLIT_RATIOS and every served / stored
    volume is that ratio too; else None."""
    middle = float(np.median(price_ratios))
    ratio = min(SPLIT_RATIOS, key=lambda r: abs(np.log(middle / float(r))))
    r = float(ratio)
    if not np.allclose(price_ratios, r, rtol=OVERLAP_RTOL, atol=0):
        return None
    if len(volume_ratios) and not np.allclose(volume_ratios[volume_ratios > 0], r, rtol=VOLUME_RTOL, atol=0):
        return None
    return r


def split_jumps(bars: pd.DataFrame, declared: Iterable[tuple[pd.Timestamp, float]] = ()) -> pd.DataFrame:
    """Bar-to-bar jumps of one series (sorted by ts) that look like an unadjusted split: open / previous close
    within JUMP_LOG_TOL of 1 / ratio for a SPLIT_RATIOS ratio, and the median volume of the VOLUME_WINDOW bars
    from it changed in the split's direction by more than the square root of the ratio. Jumps whose session
    date and ratio are `declared` (recorded corporate actions: session open or date, ratio) are left out.

    Columns: position (row in `bars`), ts, ratio, prev_close, open, volume_change."""
    empty = pd.DataFrame(columns=["position", "ts", "ratio", "prev_close", "open", "volume_change"])
    if len(bars) < 2:
        return empty
    close = bars["close"].to_numpy("float64")
    opens = bars["open"].to_numpy("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.log(opens[1:] / close[:-1])  # log(1 / ratio) at a split
    candidates = np.flatnonzero(np.abs(gap) >= JUMP_MIN_MOVE) + 1
    if not len(candidates):
        return empty
    logs = np.log(np.array([float(r) for r in SPLIT_RATIOS]))
    volume = bars["volume"].to_numpy("float64")
    allowed = {(pd.Timestamp(ts).date(), round(float(r), 6)) for ts, r in declared}
    found = []
    for i in candidates:
        k = int(np.argmin(np.abs(gap[i - 1] + logs)))
        if abs(gap[i - 1] + logs[k]) > JUMP_LOG_TOL:
            continue
        before = np.nanmedian(volume[max(0, i - VOLUME_WINDOW) : i]) if i else np.nan
        after = np.nanmedian(volume[i : i + VOLUME_WINDOW])
        with np.errstate(divide="ignore", invalid="ignore"):
            moved = np.log(after / before)
        if not np.isfinite(moved) or moved / logs[k] <= 0.5:  # volume not changed in the split's direction
            continue
        ts = pd.Timestamp(bars["ts"].iloc[i])
        ratio = float(SPLIT_RATIOS[k])
        if (ts.tz_convert("America/New_York").date(), round(ratio, 6)) in allowed:
            continue
        found.append((i, ts, ratio, close[i - 1], opens[i], float(np.exp(moved))))
    return pd.DataFrame(found, columns=empty.columns) if found else empty


def describe_jump(jump) -> str:
    """One line for a split_jumps row."""
    return (
        f"{jump.ts:%Y-%m-%d %H:%M} UTC: previous close {jump.prev_close:g} -> open {jump.open:g} "
        f"(x{jump.open / jump.prev_close:.3f}) with volume x{jump.volume_change:.2f} looks like an "
        f"unadjusted {ratio_text(jump.ratio)} split"
    )


def back_adjust(bars: pd.DataFrame, splits: Iterable[tuple[pd.Timestamp, float]]) -> pd.DataFrame:
    """`bars` as IBKR serves them after `splits` ((first session's open or date, ratio)): every bar before
    a split's first session has prices (open, high, low, close, wap) divided by its ratio and volume
    multiplied by it."""
    adjusted = bars.copy()
    ts = pd.DatetimeIndex(adjusted["ts"])
    for first, ratio in splits:
        first = pd.Timestamp(first)
        before = ts < (first if first.tzinfo else first.tz_localize("America/New_York").tz_convert("UTC"))
        for column in (*PRICE_COLUMNS, "wap"):
            if column in adjusted:
                adjusted.loc[before, column] = adjusted.loc[before, column] / ratio
        adjusted.loc[before, "volume"] = adjusted.loc[before, "volume"] * ratio
    return adjusted
