"""Building a training dataset: the bar-quality gate, the aligned panel and its tt_dataset row.

A dataset's identity (`dataset_version`) is its content (Panel.version: timeframe, symbols, feature set,
bars and feature values) plus its split (test_fraction and the first test bar), so the same bars split
differently are two datasets, and training and evaluation resolve the exact row they use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_pipeline.quality import MIN_SYMBOLS, assess_bars
from tt_resources.terms import DEFAULT_SPAN_POLICY, SPAN_POLICIES, SpanPolicy, utc
from tt_rl.panel import Panel, gap_defects


class DatasetError(ValueError):
    """No dataset can be built or loaded; the message names the timeframe, symbols and reasons."""


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its tt_dataset row, the panel, the symbols left out (reason each), the kept
    symbols whose bars break a quality rule or miss bars in the test period only (reason each; a loaded
    dataset knows only the missing bars, which its panel holds), and the span note of the "common_span"
    policy."""

    row: dict[str, Any]
    panel: Panel
    excluded: dict[str, str] = field(default_factory=dict)
    test_defects: dict[str, str] = field(default_factory=dict)
    span_note: str | None = None

    @property
    def version(self) -> str:
        return self.row["dataset_version"]


def dataset_version(content_version: str, test_fraction: float, split_ts) -> str:
    """Identity (hex, 16 chars) of a dataset: content hash + test fraction + first test bar."""
    payload = f"{content_version}|{test_fraction!r}|{utc(split_ts).isoformat()}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_dataset(
    engine: sa.Engine,
    timeframe: str,
    symbols: list[str],
    *,
    test_fraction: float,
    data_dir: Path,
    start=None,
    end=None,
    now=None,
    span_policy: SpanPolicy = DEFAULT_SPAN_POLICY,
) -> Dataset:
    """Select, align and register the dataset of `symbols` over [start, end) (None: all stored bars).

    Symbols whose history starts later or ends earlier than most (more than the fill limit) are handled by
    `span_policy` (see `uneven_spans`). The test period is the window's last `test_fraction` of bar starts;
    the bar-quality gate (the raw_bars checks' rules) and the gap rule (`tt_rl.panel.left_out`: no more than
    the fill limit of consecutive bars missing) see each symbol's bars before it only, so what happens in
    the test period never decides which symbols are traded: a symbol whose bars break a rule there is kept
    and named in `test_defects`, and its missing bars there are no-trade bars (held at its last close),
    named with their dates in `test_defects` too. The panel is saved under
    `<data_dir>/datasets/<timeframe>/<content_version>.npz`. Raises DatasetError when fewer than
    MIN_SYMBOLS symbols remain, when the features do not reach the bars, or when `test_fraction` is not
    in (0, 1)."""
    from tt_resources.db import registry
    from tt_resources.db.corporate_actions import recorded_splits
    from tt_resources.db.holes import accepted_spans
    from tt_resources.db.prices import read_bars
    from tt_rl.panel import DEFAULT_FFILL_LIMIT, aligned_closes, build_panel, gap_defects, left_out

    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    if span_policy not in SPAN_POLICIES:
        raise DatasetError(f"span_policy must be one of {', '.join(SPAN_POLICIES)}, not {span_policy!r}")
    start, end = utc(start), utc(end)
    bars = read_bars(engine, symbols, timeframe)
    groups = dict(tuple(bars.groupby("symbol", sort=False)))
    excluded = {s: "no bars stored" for s in symbols if s not in groups}
    _enough(timeframe, symbols, excluded)
    window = bars
    if start is not None:
        window = window[window["ts"] >= start]
    if end is not None:
        window = window[window["ts"] < end]
    if window.empty:
        spans = ", ".join(
            f"{s} {g['ts'].iloc[0]:%Y-%m-%d}..{g['ts'].iloc[-1]:%Y-%m-%d}" for s, g in groups.items()
        )
        raise DatasetError(
            f"{timeframe}: no stored bar in [{_day(start)}, {_day(end)}) (stored: {spans}); a refresh only "
            "extends a partition after its last bar"
        )
    window, short, span_note = uneven_spans(
        window, span_policy, DEFAULT_FFILL_LIMIT, first_test_bar(window, test_fraction)
    )
    excluded.update(short)
    cutoff = first_test_bar(window, test_fraction)  # common_span may have cut the window
    in_window = dict(tuple(window.groupby("symbol", sort=False)))
    test_defects = {}
    for symbol in symbols:
        if symbol in excluded:
            continue
        own = in_window.get(symbol, window.iloc[:0])
        known = {
            "accepted": accepted_spans(engine, timeframe, symbol),
            "splits": recorded_splits(engine, symbol),
        }
        quality = assess_bars(own[own["ts"] < cutoff], timeframe, now, **known)
        later = assess_bars(own[own["ts"] >= cutoff], timeframe, now, **known)
        if not quality.ok or later.split_jumps:  # an unadjusted split is a fake return wherever it is
            excluded[symbol] = quality.reason() or later.reason()
            continue
        if not later.ok:
            test_defects[symbol] = later.reason()
    passed = _enough(timeframe, symbols, excluded)
    kept = window[window["symbol"].isin(passed)]
    excluded.update(left_out(aligned_closes(kept), timeframe, DEFAULT_FFILL_LIMIT, cutoff))
    passed = _enough(timeframe, symbols, excluded)
    try:
        panel = build_panel(
            engine,
            timeframe,
            passed,
            start=start,
            end=end,
            bars=kept[kept["symbol"].isin(passed)],
            test_start=cutoff,
        )
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if len(panel.symbols) < MIN_SYMBOLS:
        raise DatasetError(
            f"{timeframe}: {len(panel.symbols)} symbol(s) without long gaps in the training span, need "
            f"{MIN_SYMBOLS}"
        )
    excluded.update(  # a symbol whose gap only the warm-up-free panel shows (left_out named the others)
        {
            s: f"gaps longer than {DEFAULT_FFILL_LIMIT} bars in the training span"
            for s in passed
            if s not in panel.symbols
        }
    )
    split = int(panel.index.searchsorted(cutoff, side="left"))
    if split >= len(panel):
        raise DatasetError(
            f"{timeframe}: the panel ends before the test period starts at {cutoff.isoformat()}"
        )
    for symbol, gaps in gap_defects(panel, split).items():
        test_defects[symbol] = "; ".join(filter(None, (test_defects.get(symbol), gaps)))
    split_ts = panel.index[split]
    content = panel.version
    path = data_dir / "datasets" / timeframe / f"{content}.npz"
    if not path.exists():
        panel.save(path)
    row = {
        "dataset_version": dataset_version(content, test_fraction, split_ts),
        "timeframe": timeframe,
        "symbols": list(panel.symbols),
        "start_ts": panel.index[0],
        "end_ts": panel.index[-1],
        "split_ts": split_ts,
        "n_bars": len(panel),
        "path": str(path),
        "created_at": datetime.now(UTC),
        "content_version": content,
        "test_fraction": test_fraction,
    }
    registry.record_dataset(engine, row)
    return Dataset(registry.dataset(engine, row["dataset_version"]), panel, excluded, test_defects, span_note)


def _enough(timeframe: str, symbols: list[str], excluded: dict[str, str]) -> list[str]:
    """The symbols not `excluded`; DatasetError naming every left-out symbol's reason when fewer than
    MIN_SYMBOLS remain."""
    passed = [s for s in symbols if s not in excluded]
    if len(passed) < MIN_SYMBOLS:
        left_out = "; ".join(f"{s}: {why}" for s, why in excluded.items())
        raise DatasetError(
            f"{timeframe}: {len(passed)} of {len(symbols)} symbol(s) pass the bar-quality rules, "
            f"need at least {MIN_SYMBOLS}" + (f" (left out: {left_out})" if left_out else "")
        )
    return passed


def first_test_bar(window: pd.DataFrame, test_fraction: float) -> pd.Timestamp:
    """The first bar start of the test period of long bars (symbol, ts, ...): their last `test_fraction`
    (0..1) of distinct bar starts."""
    starts = np.sort(window["ts"].unique())
    return pd.Timestamp(starts[int(len(starts) * (1 - test_fraction))])


def uneven_spans(
    window: pd.DataFrame, policy: SpanPolicy, tolerance: int, test_start: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, dict[str, str], str | None]:
    """Apply the panel's span policy to long bars (symbol, ts, ...): (bars kept, {dropped symbol: reason},
    note on the span).

    A symbol is short when its first bar comes more than `tolerance` bar starts after the median symbol's
    first bar, or its last bar more than `tolerance` before the median symbol's last bar and before
    `test_start` (None: anywhere). "drop_short" leaves short symbols out (reason: where the symbol starts or
    ends, and where the others do); "common_span" keeps every symbol and cuts the bars to the span they all
    have (the note names the symbols that set it). A symbol whose bars end in the test period is not short:
    that it ends is known only by looking at the test period, so it is kept and its last bars are no-trade
    bars (tt_rl.panel.panel_from_frames)."""
    grid = np.sort(window["ts"].unique())
    spans = window.groupby("symbol", sort=False)["ts"].agg(["min", "max"])
    first = np.searchsorted(grid, spans["min"].to_numpy())
    last = np.searchsorted(grid, spans["max"].to_numpy())
    ref_first, ref_last = int(np.median(first)), int(np.median(last))
    late = first > ref_first + tolerance
    early = last < ref_last - tolerance
    if test_start is not None:
        early &= (spans["max"] < test_start).to_numpy()
    if not (late | early).any():
        return window, {}, None

    def where(k: int) -> str:
        symbol, parts = spans.index[k], []
        if late[k]:
            parts.append(f"starts {spans['min'].iloc[k]:%Y-%m-%d} ({first[k] - ref_first} bars after most)")
        if early[k]:
            parts.append(f"ends {spans['max'].iloc[k]:%Y-%m-%d} ({ref_last - last[k]} bars before most)")
        return f"{symbol} " + " and ".join(parts)

    short = [k for k in range(len(spans)) if late[k] or early[k]]
    if policy == "drop_short":
        reasons = {spans.index[k]: where(k).split(" ", 1)[1] + " (span policy drop_short)" for k in short}
        return window[~window["symbol"].isin(reasons)], reasons, None
    ends = spans["max"]
    if test_start is not None:  # an end in the test period does not cut it (its last bars are no-trade bars)
        ends = ends.where(ends < test_start, window["ts"].max())
    lo, hi = spans["min"].max(), ends.min()
    kept = window[(window["ts"] >= lo) & (window["ts"] <= hi)]
    note = f"common span {lo:%Y-%m-%d}..{hi:%Y-%m-%d}: " + "; ".join(where(k) for k in short)
    return kept, {}, note


def _day(value) -> str:
    return "..." if value is None else f"{value:%Y-%m-%d}"


def load_dataset(engine: sa.Engine, version: str) -> Dataset:
    """The registered dataset `version` with its panel; DatasetError when it is unknown, its file is
    missing or the file's content is not the registered one."""
    from tt_resources.db import registry

    row = registry.dataset(engine, version)
    if row is None:
        raise DatasetError(f"dataset {version} is not registered in tt_dataset")
    path = Path(row["path"] or "")
    if not path.is_file():
        raise DatasetError(f"dataset {version}: panel file {path} is missing")
    panel = Panel.load(path)
    if row["content_version"] is not None and panel.version != row["content_version"]:
        raise DatasetError(
            f"dataset {version}: {path} holds content {panel.version}, registered {row['content_version']}"
        )
    split = int(panel.index.searchsorted(row["split_ts"], side="left"))
    return Dataset(row, panel, test_defects=gap_defects(panel, split))
