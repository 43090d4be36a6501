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
    `feature_names` order; index: bar starts."""

    timeframe: str
    symbols: tuple[str, ...]
    index: pd.DatetimeIndex
    prices: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_COLUMNS
    opens: np.ndarray = field(kw_only=True)

    def __post_init__(self) -> None:
        # one time unit (ns, UTC) whatever the reader returned, so `version` and `save` do not depend on it
        object.__setattr__(self, "index", pd.DatetimeIndex(self.index).tz_convert("UTC").as_unit("ns"))
        t, n = len(self.index), len(self.symbols)
        shapes = (self.prices.shape, self.opens.shape, self.features.shape)
        if shapes != ((t, n), (t, n), (t, n, len(self.feature_names))):
            raise ValueError(
                f"panel shapes disagree: index {t}, symbols {n}, prices {self.prices.shape}, "
                f"opens {self.opens.shape}, features {self.features.shape}"
            )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def version(self) -> str:
        """Content hash (hex, 16 chars) of timeframe, symbols, index, prices, opens and features."""
        digest = hashlib.sha256()
        digest.update(f"{self.timeframe}|{','.join(self.symbols)}|{','.join(self.feature_names)}".encode())
        digest.update(self.index.asi8.tobytes())
        digest.update(np.ascontiguousarray(self.prices).tobytes())
        digest.update(np.ascontiguousarray(self.opens).tobytes())
        digest.update(np.ascontiguousarray(self.features).tobytes())
        return digest.hexdigest()[:16]

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
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Panel:
        """Read a `save`d file; ValueError when it predates opening prices (rebuild the dataset)."""
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
            )


def panel_from_frames(
    timeframe: str,
    bars: pd.DataFrame,
    features: pd.DataFrame | None = None,
    *,
    ffill_limit: int = DEFAULT_FFILL_LIMIT,
) -> Panel:
    """Align long bars (symbol, ts, open, close, ...) and optional long features (symbol, ts, FEATURE_COLUMNS).

    The panel starts at the first bar every symbol has. Missing closes are carried forward up to
    `ffill_limit` bars; symbols with longer gaps, or whose bars end earlier, are dropped with one warning
    naming each (where it ends, or its gap); tt_pipeline.datasets applies an explicit span policy first. Warm-up bars where any feature is missing are cut; a
    feature missing after the warm-up raises ValueError (symbol and bars named). Features are computed from
    the bars when `features` is None.
    """
    if bars.empty:
        raise ValueError(f"no bars for timeframe {timeframe}")
    if features is None:
        features = pd.concat(
            [compute_features(g).assign(symbol=sym) for sym, g in bars.groupby("symbol", sort=True)],
            ignore_index=True,
        )
    close = bars.pivot(index="ts", columns="symbol", values="close").sort_index()
    start = close.apply(pd.Series.first_valid_index).max()  # first bar every symbol has
    close = close.loc[start:]
    no_bar = close.isna()  # bars a symbol lacks: only there are its features carried forward too
    close = close.ffill(limit=ffill_limit)
    # a bar a symbol lacks did not trade: it opens (and closes) at the carried-forward close
    opens = bars.pivot(index="ts", columns="symbol", values="open").reindex_like(close).where(~no_bar, close)
    gappy = sorted(close.columns[close.isna().any()])
    if gappy:  # a symbol whose bars stop early is named with its last bar, not as a gap
        ends = close[gappy].apply(pd.Series.last_valid_index)
        log.warning(
            "dropping %d symbol(s): %s",
            len(gappy),
            "; ".join(
                f"{s} ends {ends[s]:%Y-%m-%d}, the others {close.index[-1]:%Y-%m-%d}"
                if close[s].loc[ends[s] :].iloc[1:].isna().all()
                else f"{s} has a gap longer than {ffill_limit} bars"
                for s in gappy
            ),
        )
        close = close.drop(columns=gappy)
    if close.shape[1] == 0:
        raise ValueError(f"no symbol of timeframe {timeframe} has complete bars")
    symbols = list(close.columns)
    no_bar = no_bar[symbols]
    wide = {}
    for name in FEATURE_COLUMNS:
        values = features.pivot(index="ts", columns="symbol", values=name).reindex(
            index=close.index, columns=symbols
        )
        wide[name] = values.where(~no_bar, values.ffill(limit=ffill_limit))
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
    )


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
) -> Panel:
    """Panel from the database: bars via read_bars (unless the caller already read them: `bars`, long frame of
    exactly these symbols over [start, end)) and their stored features (read_features), which must reach
    every bar after the warm-up (ValueError otherwise)."""
    from tt_resources.db.features import read_features
    from tt_resources.db.prices import read_bars

    if bars is None:
        bars = read_bars(engine, symbols, timeframe, start=start, end=end)
    if bars.empty:
        raise ValueError(f"no {timeframe} bars in the database for {', '.join(symbols)}")
    stored = read_features(engine, symbols, timeframe, start=start, end=end)
    return panel_from_frames(timeframe, bars, stored, ffill_limit=ffill_limit)
