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

import sqlalchemy as sa

from tt_pipeline.quality import MIN_SYMBOLS, assess_bars
from tt_resources.terms import utc
from tt_rl.panel import Panel


class DatasetError(ValueError):
    """No dataset can be built or loaded; the message names the timeframe, symbols and reasons."""


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its tt_dataset row, the panel, and the symbols the gate left out (reason each)."""

    row: dict[str, Any]
    panel: Panel
    excluded: dict[str, str] = field(default_factory=dict)

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
) -> Dataset:
    """Gate, align and register the dataset of `symbols` over [start, end) (None: all stored bars).

    The gate is the raw_bars checks' rules on each symbol's whole stored partition; the symbols that
    break one are left out (named in `excluded`). The panel is saved under
    `<data_dir>/datasets/<timeframe>/<content_version>.npz`. Raises DatasetError when fewer than
    MIN_SYMBOLS symbols remain, when the features do not reach the bars, or when `test_fraction` is not
    in (0, 1)."""
    from tt_resources.db import registry
    from tt_resources.db.prices import read_bars
    from tt_rl.panel import build_panel

    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    start, end = utc(start), utc(end)
    bars = read_bars(engine, symbols, timeframe)
    groups = dict(tuple(bars.groupby("symbol", sort=False)))
    excluded = {}
    for symbol in symbols:
        quality = assess_bars(groups.get(symbol, bars.iloc[:0]), timeframe, now)
        if not quality.ok:
            excluded[symbol] = quality.reason()
    passed = [s for s in symbols if s not in excluded]
    if len(passed) < MIN_SYMBOLS:
        left_out = "; ".join(f"{s}: {why}" for s, why in excluded.items())
        raise DatasetError(
            f"{timeframe}: {len(passed)} of {len(symbols)} symbol(s) pass the bar-quality rules, "
            f"need at least {MIN_SYMBOLS}" + (f" (left out: {left_out})" if left_out else "")
        )
    window = bars[bars["symbol"].isin(passed)]
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
    try:
        panel = build_panel(engine, timeframe, passed, start=start, end=end, bars=window)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if len(panel.symbols) < MIN_SYMBOLS:
        raise DatasetError(
            f"{timeframe}: {len(panel.symbols)} symbol(s) without long gaps in the window, need {MIN_SYMBOLS}"
        )
    excluded.update({s: "gaps longer than the fill limit" for s in passed if s not in panel.symbols})
    split_ts = panel.test_start(test_fraction)
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
    return Dataset(registry.dataset(engine, row["dataset_version"]), panel, excluded)


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
    return Dataset(row, panel)
