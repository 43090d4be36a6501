"""Training panel: aligned prices and features of N symbols over T bars of one timeframe."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tt_resources.terms import FEATURE_COLUMNS
from tt_rl.features import compute_features

log = logging.getLogger(__name__)

DEFAULT_FFILL_LIMIT = 3  # bars a symbol's missing close may be carried forward


@dataclass(frozen=True)
class Panel:
    """prices: float64 (T, N) closes; opens: float64 (T, N) opening prices; features: float32 (T, N, F) in
    `feature_names` order; index: bar starts; missing: bool (T, N), True on a bar the symbol did not have
    (its close, open and features carried forward from its last bar: a no-trade bar, see `gaps`)."""

    timeframe: str
    symbols: tuple[str, ...]
    index: pd.DatetimeIndex
    prices: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_COLUMNS
    opens: np.ndarray = field(kw_only=True)
    missing: np.ndarray | None = field(default=None, kw_only=True)  # None: every symbol has every bar

    def __post_init__(self) -> None:
        # one time unit (ns, UTC) whatever the reader returned, so `version` and `save` do not depend on it
        object.__setattr__(self, "index", pd.DatetimeIndex(self.index).tz_convert("UTC").as_unit("ns"))
        t, n = len(self.index), len(self.symbols)
        missing = np.zeros((t, n), bool) if self.missing is None else np.asarray(self.missing, bool)
        object.__setattr__(self, "missing", missing)
        shapes = (self.prices.shape, self.opens.shape, self.features.shape, missing.shape)
        if shapes != ((t, n), (t, n), (t, n, len(self.feature_names)), (t, n)):
            raise ValueError(
                f"panel shapes disagree: index {t}, symbols {n}, prices {self.prices.shape}, "
                f"opens {self.opens.shape}, features {self.features.shape}, missing {missing.shape}"
            )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def version(self) -> str:
        """Content hash (hex, 16 chars) of timeframe, symbols, index, prices, opens, features and the missing
        bars (only when there are any, so a panel without gaps keeps the hash it had before they were kept)."""
        digest = hashlib.sha256()
        digest.update(f"{self.timeframe}|{','.join(self.symbols)}|{','.join(self.feature_names)}".encode())
        digest.update(self.index.asi8.tobytes())
        digest.update(np.ascontiguousarray(self.prices).tobytes())
        digest.update(np.ascontiguousarray(self.opens).tobytes())
        digest.update(np.ascontiguousarray(self.features).tobytes())
        if self.missing.any():
            digest.update(np.packbits(self.missing).tobytes())
        return digest.hexdigest()[:16]

    def gaps(self, start: int = 0) -> list[Gap]:
        """The runs of bars a symbol did not have (carried forward, no trades) that reach bar `start` or
        later, by symbol then time."""
        return [
            Gap(self.symbols[j], self.index[first], self.index[last], last - first + 1)
            for j, first, last in missing_runs(self.missing)
            if last >= start
        ]

    def slice(self, start: int, stop: int) -> Panel:
        """Bars [start, stop) by position."""
        return Panel(
            self.timeframe,
            self.symbols,
            self.index[start:stop],
            self.prices[start:stop],
            self.features[start:stop],
            self.feature_names,
            opens=self.opens[start:stop],
            missing=self.missing[start:stop],
        )

    def test_start(self, test_fraction: float) -> pd.Timestamp:
        """First bar of the held-out test period: the last `test_fraction` (0..1) of the bars."""
        return self.index[int(len(self) * (1 - test_fraction))]

    def split(self, test_start: pd.Timestamp | str) -> tuple[Panel, Panel]:
        """(train, test): bars before `test_start` and bars from it on."""
        cut = int(self.index.searchsorted(pd.Timestamp(test_start), side="left"))
        return self.slice(0, cut), self.slice(cut, len(self))

    def save(self, path: str | Path) -> Path:
        """Write an uncompressed .npz file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez(
                fh,
                timeframe=np.array(self.timeframe),
                symbols=np.array(self.symbols),
                feature_names=np.array(self.feature_names),
                index=self.index.asi8,
                prices=self.prices,
                opens=self.opens,
                features=self.features,
                missing=self.missing,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Panel:
        """Read a `save`d file; ValueError when it predates opening prices (rebuild the dataset). A file
        from before missing bars were kept has none marked."""
        with np.load(Path(path), allow_pickle=False) as data:
            if "opens" not in data:
                raise ValueError(f"{path}: panel saved without opening prices; rebuild its dataset")
            return cls(
                str(data["timeframe"]),
                tuple(str(s) for s in data["symbols"]),
                pd.DatetimeIndex(data["index"].astype("datetime64[ns]")).tz_localize("UTC"),
                data["prices"],
                data["features"],
                tuple(str(s) for s in data["feature_names"]),
                opens=data["opens"],
                missing=data.get("missing"),
            )


@dataclass(frozen=True)
class Gap:
    """`bars` consecutive bars, `first`..`last` (bar starts), that `symbol` did not have."""

    symbol: str
    first: pd.Timestamp
    last: pd.Timestamp
    bars: int

    def describe(self, timeframe: str) -> str:
        """e.g. "no bars 2026-04-27..2026-05-04 (6 bars)" (with times for intraday timeframes)."""
        form = "%Y-%m-%d" if timeframe == "1d" else "%Y-%m-%d %H:%M"
        return (
            f"no bars {self.first:{form}}..{self.last:{form}} ({self.bars} bar{'s' if self.bars > 1 else ''})"
        )


def gap_defects(panel: Panel, start: int, stop: int | None = None) -> dict[str, str]:
    """{symbol: its gaps reaching bars [start, stop) (default: to the end)}, e.g. "no bars 2026-04-27..2026-05-04
    (6 bars): no trades, held at its last close": the test-period defects of a kept symbol."""
    stop = len(panel) if stop is None else stop
    notes: dict[str, list[str]] = {}
    for gap in panel.gaps(start):
        if gap.first <= panel.index[stop - 1]:
            notes.setdefault(gap.symbol, []).append(gap.describe(panel.timeframe))
    return {s: "; ".join(found) + ": no trades, held at its last close" for s, found in notes.items()}


def missing_runs(missing: np.ndarray) -> list[tuple[int, int, int]]:
    """(column, first row, last row) of every run of True in `missing` (T, N) bool, by column then row."""
    runs = []
    for j in range(missing.shape[1]):
        edges = np.diff(np.concatenate(([0], missing[:, j].astype(np.int8), [0])))
        runs += [
            (j, int(a), int(b) - 1)
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
        ]
    return runs


def panel_from_frames(
    timeframe: str,
    bars: pd.DataFrame,
    features: pd.DataFrame | None = None,
    *,
    ffill_limit: int = DEFAULT_FFILL_LIMIT,
    test_start: pd.Timestamp | None = None,
) -> Panel:
    """Align long bars (symbol, ts, open, close, ...) and optional long features (symbol, ts, FEATURE_COLUMNS).

    The panel starts at the first bar every symbol has. A bar a symbol lacks is carried forward (its close,
    an open equal to that close, its features) and marked `missing`: a no-trade bar. Which symbols are kept
    is decided on the training span only, the bars before `test_start` (None: every bar; see `left_out`):
    symbols missing more than `ffill_limit` consecutive bars there, or whose bars end there, are dropped with
    one warning naming each (its gap's dates, or where it ends); in the test period a kept symbol's gaps of
    any length stay no-trade bars (`Panel.gaps`). tt_pipeline.datasets applies an explicit span policy first.
    Warm-up bars where any feature is missing are cut; a feature missing after the warm-up raises ValueError
    (symbol and bars named). Features are computed from the bars when `features` is None.
    """
    if bars.empty:
        raise ValueError(f"no bars for timeframe {timeframe}")
    if features is None:
        features = pd.concat(
            [compute_features(g).assign(symbol=sym) for sym, g in bars.groupby("symbol", sort=True)],
            ignore_index=True,
        )
    close = aligned_closes(bars)
    dropped = left_out(close, timeframe, ffill_limit, test_start)
    if dropped:
        log.warning(
            "dropping %d symbol(s): %s", len(dropped), "; ".join(f"{s} {why}" for s, why in dropped.items())
        )
        close = close.drop(columns=list(dropped))
    if close.shape[1] == 0:
        raise ValueError(f"no symbol of timeframe {timeframe} has complete bars")
    symbols = list(close.columns)
    no_bar = close.isna()  # bars a symbol lacks: only there are its prices and features carried forward
    close = close.ffill()
    # a bar a symbol lacks did not trade: it opens (and closes) at the carried-forward close
    opens = bars.pivot(index="ts", columns="symbol", values="open").reindex_like(close).where(~no_bar, close)
    wide = {}
    for name in FEATURE_COLUMNS:
        values = features.pivot(index="ts", columns="symbol", values=name).reindex(
            index=close.index, columns=symbols
        )
        wide[name] = values.where(~no_bar, values.ffill())
    cube = np.stack([wide[name].to_numpy(dtype="float64") for name in FEATURE_COLUMNS], axis=-1)
    first = _warm_up_end(timeframe, symbols, close.index, ~np.isnan(cube).any(axis=2))
    index = pd.DatetimeIndex(close.index[first:])
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return Panel(
        timeframe,
        tuple(symbols),
        index,
        close.to_numpy(dtype="float64")[first:],
        cube[first:].astype(np.float32),
        opens=opens[symbols].to_numpy(dtype="float64")[first:],
        missing=no_bar.to_numpy()[first:],
    )


def aligned_closes(bars: pd.DataFrame) -> pd.DataFrame:
    """Closes of long bars (symbol, ts, close, ...) as a wide frame (ts x symbol, sorted) from the first bar
    every symbol has; NaN where a symbol has no bar."""
    close = bars.pivot(index="ts", columns="symbol", values="close").sort_index()
    return close.loc[close.apply(pd.Series.first_valid_index).max() :]


def left_out(
    close: pd.DataFrame, timeframe: str, ffill_limit: int, test_start: pd.Timestamp | None = None
) -> dict[str, str]:
    """{symbol: reason} of the symbols the training span rules out: `close` is `aligned_closes`'s frame
    (T x N, NaN where a symbol has no bar), the training span its bars before `test_start` (None: all).

    A symbol is left out when more than `ffill_limit` consecutive bars are missing in the training span
    ("no bars 2026-04-27..2026-05-04 (6 bars) in the training span, more than 3 carried forward"), or when its
    bars end there ("ends 2026-03-02, the others 2026-11-27"); of a gap that runs on into the test period
    only its part in the training span counts. Gaps in the test period never leave a symbol out: who is
    traded is decided before the test starts."""
    index = pd.DatetimeIndex(close.index)
    cut = len(index)
    if test_start is not None:
        start = pd.Timestamp(test_start)
        if (index.tz is None) != (start.tz is None):
            start = (
                start.tz_localize("UTC") if start.tz is None else start.tz_convert("UTC").tz_localize(None)
            )
        cut = int(index.searchsorted(start, side="left"))
    reasons: dict[str, str] = {}
    for j, first, last in missing_runs(close.isna().to_numpy()):
        seen = min(last, cut - 1)  # the run's last bar in the training span
        symbol = str(close.columns[j])
        if seen - first + 1 <= ffill_limit or symbol in reasons:
            continue
        if last == len(index) - 1:  # its bars stop for good
            reasons[symbol] = f"ends {index[first - 1]:%Y-%m-%d}, the others {index[-1]:%Y-%m-%d}"
        else:
            gap = Gap(symbol, index[first], index[seen], seen - first + 1).describe(timeframe)
            reasons[symbol] = f"{gap} in the training span, more than {ffill_limit} carried forward"
    return reasons


def _warm_up_end(timeframe: str, symbols: list[str], index: pd.Index, complete: np.ndarray) -> int:
    """First bar from which every symbol has all its features (`complete`: bool (T, N)).

    Raises ValueError naming the symbol and the bars when a symbol has no features at all or misses any
    after its own warm-up: the panel never fills a missing feature."""
    first = 0
    for j, symbol in enumerate(symbols):
        if not complete[:, j].any():
            raise ValueError(f"no {timeframe} features for {symbol}: refresh the partition first")
        own = int(np.argmax(complete[:, j]))
        holes = np.flatnonzero(~complete[own:, j]) + own
        if len(holes):
            raise ValueError(
                f"{timeframe} features of {symbol} missing for {len(holes)} bar(s) from "
                f"{pd.Timestamp(index[holes[0]]).isoformat()} to {pd.Timestamp(index[holes[-1]]).isoformat()}"
                " after the warm-up; refresh the partition so its features reach its last bar"
            )
        first = max(first, own)
    return first


def build_panel(
    engine,
    timeframe: str,
    symbols: list[str],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    ffill_limit: int = DEFAULT_FFILL_LIMIT,
    bars: pd.DataFrame | None = None,
    test_start: pd.Timestamp | None = None,
) -> Panel:
    """Panel from the database: bars via read_bars (unless the caller already read them: `bars`, long frame of
    exactly these symbols over [start, end)) and their stored features (read_features), which must reach
    every bar after the warm-up (ValueError otherwise); the symbols are chosen on the bars before
    `test_start` (`panel_from_frames`)."""
    from tt_resources.db.features import read_features
    from tt_resources.db.prices import read_bars

    if bars is None:
        bars = read_bars(engine, symbols, timeframe, start=start, end=end)
    if bars.empty:
        raise ValueError(f"no {timeframe} bars in the database for {', '.join(symbols)}")
    stored = read_features(engine, symbols, timeframe, start=start, end=end)
    return panel_from_frames(timeframe, bars, stored, ffill_limit=ffill_limit, test_start=test_start)
