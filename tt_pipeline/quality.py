"""The bar-quality rules: one definition behind the raw_bars checks, the dataset gate and the CLI's
verdicts, and the per-partition data version (no Dagster; pandas/numpy imported lazily so that loading the
code location stays fast)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tt_resources.terms import OHLCV_COLUMNS, PRICE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

MIN_COVERAGE = 0.95  # the old system's success criterion: >= 95 % of the calendar's expected bars
MIN_SYMBOLS = 2  # a portfolio needs at least two instruments


@dataclass(frozen=True)
class BarQuality:
    """Quality of one symbol's stored bars for one timeframe (counts are bars)."""

    n_bars: int
    expected: int  # calendar bar starts between the first and the last stored bar, accepted holes left out
    coverage: float  # share of the expected bars that are stored, 0..1
    duplicates: int  # bars sharing a calendar slot with another bar
    off_grid: int  # bars whose start is not a calendar bar start
    future: int  # bars starting after the last closed bar
    bad_ohlc: int  # non-finite, non-positive, low > min(open, close), high < max(open, close), volume < 0
    unknown_volume: int = 0  # bars whose volume the source does not know (stored NULL; IBKR sends -1)
    quarantined: int = 0  # bars the source sent that break a bar rule, kept out (tt_bar_quarantine)
    split_jumps: int = 0  # bar-to-bar jumps that look like an unadjusted split (no corporate action recorded)
    first_split_jump: str = ""  # the first of them, one line

    @property
    def ok(self) -> bool:
        """True when every raw_bars rule passes."""
        return not self.failed_rules()

    def failed_rules(self) -> list[str]:
        """Names of the RAW_BARS_RULES this partition breaks, in rule order."""
        return [name for name, (_, passes) in RAW_BARS_RULES.items() if not passes(self)]

    def reason(self) -> str | None:
        """One line saying why the partition fails (None when it passes), e.g.
        `coverage 91.2% < 95%; 3 bar(s) off the calendar grid`."""
        if self.n_bars == 0:
            return "no bars stored"
        found = {
            "coverage": f"coverage {self.coverage:.1%} < {MIN_COVERAGE:.0%} ({self.expected} bars expected)",
            "no_duplicates": f"{self.duplicates} bar(s) share a calendar slot",
            "monotonic_timestamps": ", ".join(
                text
                for count, text in (
                    (self.off_grid, f"{self.off_grid} bar(s) off the calendar grid"),
                    (self.future, f"{self.future} bar(s) after the last closed bar"),
                )
                if count
            ),
            "ohlc_sanity": f"{self.bad_ohlc} bar(s) with bad prices or volume",
            "no_split_jumps": f"{self.split_jumps} jump(s) like an unadjusted split, first {self.first_split_jump}",
        }
        if self.quarantined:  # the missing bars the coverage rule counts include these
            found["coverage"] += f", {self.quarantined} of them quarantined"
        failed = self.failed_rules()
        return "; ".join(f"{rule}: {found[rule]}" for rule in failed) if failed else None


RAW_BARS_RULES: dict[str, tuple[str, Callable[[BarQuality], bool]]] = {
    "coverage": (
        f"at least {MIN_COVERAGE:.0%} of the calendar's expected bars are stored",
        lambda q: q.n_bars > 0 and q.coverage >= MIN_COVERAGE,
    ),
    "no_duplicates": ("one bar per calendar bar slot", lambda q: q.n_bars > 0 and q.duplicates == 0),
    "monotonic_timestamps": (
        "strictly increasing bar starts on the calendar grid, none after the last closed bar",
        lambda q: q.n_bars > 0 and q.off_grid == 0 and q.future == 0,
    ),
    "ohlc_sanity": (
        "finite positive prices, low <= open/close <= high, volume >= 0 or unknown (bars breaking this when "
        "fetched are quarantined, not stored: metadata `quarantined`)",
        lambda q: q.n_bars > 0 and q.bad_ohlc == 0,
    ),
    "no_split_jumps": (
        "no bar-to-bar jump like an unadjusted split (open / previous close = 1 / a split ratio such as 2:1, "
        "3:2, 1:10, with volume inverse) unless the split is recorded in tt_corporate_action: no fake return",
        lambda q: q.n_bars > 0 and q.split_jumps == 0,
    ),
}


def assess_bars(
    bars: pd.DataFrame,
    timeframe: str,
    now: pd.Timestamp | None = None,
    *,
    quarantined: int = 0,
    accepted: Sequence[tuple[pd.Timestamp, pd.Timestamp]] = (),
    splits: Sequence[tuple[pd.Timestamp, float]] = (),
) -> BarQuality:
    """Check one symbol's bars (columns ts, open, high, low, close, volume; any order) against the calendar.

    A NaN volume is unknown, not bad (counted in `unknown_volume`); `quarantined` is the partition's count
    in tt_bar_quarantine, reported alongside. Bars expected inside `accepted` spans ([start, end) holes a
    user accepted as empty) are not counted missing; jumps at recorded `splits` ((first session, ratio))
    are not fake returns."""
    import numpy as np
    import pandas as pd

    from tt_resources.calendar import expected_bar_starts, last_closed_bar
    from tt_resources.splits import describe_jump, split_jumps

    if bars.empty:
        return BarQuality(0, 0, 0.0, 0, 0, 0, 0, quarantined=quarantined)
    bars = bars.sort_values("ts")
    ts = pd.DatetimeIndex(bars["ts"])
    grid = expected_bar_starts(timeframe, ts[0], ts[-1] + pd.Timedelta(1, "ns"))
    expected = grid
    for start, end in accepted:
        expected = expected[(expected < start) | (expected >= end)]
    jumps = split_jumps(bars, splits)
    on_grid = ts.isin(grid)
    slots = np.searchsorted(grid.asi8, ts.as_unit("ns").asi8, side="right") - 1
    last_closed = last_closed_bar(timeframe, now or pd.Timestamp.now(tz="UTC"))
    prices = bars[list(PRICE_COLUMNS)].to_numpy(dtype="float64")
    volume = bars["volume"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(prices).all(axis=1)
            | (prices <= 0).any(axis=1)
            | (prices[:, 2] > np.minimum(prices[:, 0], prices[:, 3]))
            | (prices[:, 1] < np.maximum(prices[:, 0], prices[:, 3]))
            | (volume < 0)
        )
    return BarQuality(
        n_bars=len(ts),
        expected=len(expected),
        coverage=float(ts.isin(expected).sum() / len(expected)) if len(expected) else float(len(grid) > 0),
        duplicates=int(len(slots) - len(np.unique(slots))),
        off_grid=int((~on_grid).sum()),
        future=len(ts) if last_closed is None else int((ts > last_closed).sum()),
        bad_ohlc=int(bad.sum()),
        unknown_volume=int(np.isnan(volume).sum()),
        quarantined=quarantined,
        split_jumps=len(jumps),
        first_split_jump=describe_jump(jumps.iloc[0]) if len(jumps) else "",
    )


def content_version(bars: pd.DataFrame) -> str:
    """Data version of one partition's stored bars: last bar start, bar count and a checksum of the values."""
    import pandas as pd

    if bars.empty:
        return "empty"
    columns = list(OHLCV_COLUMNS)
    checksum = int(pd.util.hash_pandas_object(bars[columns], index=False).sum()) & (2**64 - 1)
    return f"{pd.Timestamp(bars['ts'].max()).isoformat()}|{len(bars)}|{checksum:016x}"


def iso(value) -> str | None:
    """ISO-8601 text of a timestamp-like value (None/NaT -> None), for metadata."""
    import pandas as pd

    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()
