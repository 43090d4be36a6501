"""Bars from a directory of `<SYMBOL>_<timeframe>.csv` or `.parquet` files (see docs/market_data.md).

Columns (case-insensitive, common spellings accepted): a timestamp (`ts`, `timestamp`, `datetime`, `date`,
`time`), `open`, `high`, `low`, `close`, `volume`, optional `wap` (`vwap`, `average`) and `bar_count`
(`barcount`, `count`, `trades`). Timestamps are bar starts: aware values are converted to UTC; naive ones
need the source's `tz`; in 1d files a plain date means that NYSE session's open. A bad file raises
CsvFormatError naming the file and the first bad row (1-based data row, header excluded); nothing of it is
returned, so nothing of it is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tt_resources import calendar, config
from tt_resources.sources import SourceError, SourceStats, SymbolNotFound
from tt_resources.terms import PRICE_COLUMNS, SOURCE_BAR_COLUMNS, aware_utc
from tt_resources.timeframes import get_timeframe

ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "datetime", "date", "time"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "vol"),
    "wap": ("wap", "vwap", "average"),
    "bar_count": ("bar_count", "barcount", "count", "trades"),
}
OPTIONAL = ("wap", "bar_count")


class CsvFormatError(SourceError):
    """A bars file breaks a rule; the message names the file and the first bad row."""


def default_directory() -> Path:
    """TT_CSV_DIR, default `<data dir>/csv`."""
    return config.settings().tt_csv_dir or config.data_dir() / "csv"


class CsvSource:
    """Reads `<directory>/<SYMBOL>_<timeframe>.{csv,parquet}`; `tz` is the zone of naive timestamps."""

    name = "csv"

    def __init__(self, directory: str | Path | None = None, tz: str | None = None) -> None:
        self.directory = Path(directory) if directory else default_directory()
        self.tz = tz
        self.stats = SourceStats()

    def path(self, symbol: str, timeframe: str) -> Path:
        for suffix in (".parquet", ".csv"):
            candidate = self.directory / f"{symbol}_{timeframe}{suffix}"
            if candidate.exists():
                return candidate
        raise SymbolNotFound(f"no file {symbol}_{timeframe}.csv or .parquet in {self.directory}")

    def fetch(self, symbol: str, timeframe: str, start, end) -> pd.DataFrame:
        """Bars of the file starting in [start, end); the whole file is validated first."""
        get_timeframe(timeframe)
        path = self.path(symbol, timeframe)
        self.stats.requests += 1
        bars = read_bars_file(path, timeframe, self.tz)
        window = bars[(bars["ts"] >= aware_utc(start, "start")) & (bars["ts"] < aware_utc(end, "end"))]
        self.stats.bars += len(window)
        return window.reset_index(drop=True)

    def bind(self, engine) -> None:
        """Keeps no records in the database."""

    def close(self) -> None:
        """Nothing to release."""


def read_bars_file(path: Path, timeframe: str, tz: str | None = None) -> pd.DataFrame:
    """Load and validate one bars file into a bars frame; CsvFormatError names the file and row."""
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as exc:
        raise CsvFormatError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
    columns = _map_columns(path, raw)
    ts = _timestamps(path, raw[columns["ts"]], timeframe, tz)
    frame = pd.DataFrame({"ts": ts})
    for name in SOURCE_BAR_COLUMNS[1:]:
        source = columns.get(name)
        values = raw[source] if source else pd.Series(np.nan, index=raw.index)
        frame[name] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        unparsable = frame[name].isna() & raw[source].notna() if source else None
        if unparsable is not None and unparsable.any():
            _fail(path, unparsable, f"{name} is not a number ({raw[source][unparsable].iloc[0]!r})")
    _check(path, frame)
    return frame


def _map_columns(path: Path, raw: pd.DataFrame) -> dict[str, str]:
    by_lower = {str(c).strip().lower(): c for c in raw.columns}
    columns = {}
    for name, aliases in ALIASES.items():
        found = next((by_lower[a] for a in aliases if a in by_lower), None)
        if found is not None:
            columns[name] = found
    missing = [n for n in ALIASES if n not in columns and n not in OPTIONAL]
    if missing:
        raise CsvFormatError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, raw.columns))})"
        )
    return columns


def _fail(path: Path, mask: pd.Series | np.ndarray, reason: str) -> None:
    row = int(np.argmax(np.asarray(mask))) + 1
    raise CsvFormatError(f"{path}: row {row}: {reason}; nothing from this file is used")


def _timestamps(path: Path, values: pd.Series, timeframe: str, tz: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=False, format="mixed")
        bad = parsed.isna()
        if bad.any():
            _fail(path, bad, f"unparsable timestamp {values[bad].iloc[0]!r}")
    if parsed.dt.tz is not None:
        return parsed.dt.tz_convert("UTC")
    if timeframe == "1d" and (parsed == parsed.dt.normalize()).all():
        opens = calendar.nyse().schedule["open"].reindex(pd.DatetimeIndex(parsed))
        if opens.isna().any():
            closed = opens.isna().to_numpy()
            _fail(path, closed, f"{parsed[closed].iloc[0].date()} is not an NYSE session")
        return pd.Series(opens.to_numpy(), index=values.index).dt.tz_convert("UTC")
    if tz is None:
        raise CsvFormatError(
            f"{path}: row 1: naive timestamp {values.iloc[0]!r} and no time zone configured "
            "(give offsets in the file or set the source's tz)"
        )
    try:
        return parsed.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise").dt.tz_convert("UTC")
    except (ValueError, TypeError) as exc:
        raise CsvFormatError(f"{path}: timestamps cannot be localised to {tz}: {exc}") from None


def _check(path: Path, frame: pd.DataFrame) -> None:
    """Order, uniqueness and price rules; the first bad row is reported with every rule it breaks."""
    delta = frame["ts"].diff()
    rules = {
        "timestamp before the previous row's": delta < pd.Timedelta(0),
        "duplicate timestamp": delta == pd.Timedelta(0),
        **{f"{n} missing or not positive": ~(frame[n] > 0) for n in PRICE_COLUMNS},
        "volume missing or negative": ~(frame["volume"] >= 0),
        "high < low": frame["high"] < frame["low"],
    }
    bad = np.logical_or.reduce([mask.to_numpy() for mask in rules.values()])
    if bad.any():
        row = int(np.argmax(bad))
        reasons = ", ".join(name for name, mask in rules.items() if mask.iloc[row])
        _fail(path, bad, f"{reasons} (ts {frame['ts'].iloc[row].isoformat()})")
