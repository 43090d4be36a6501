"""Bars from a directory of `<SYMBOL>_<timeframe>.csv` or `.parquet` files (see docs/market_data.md).

Columns (case-insensitive, common spellings accepted): a timestamp (`ts`, `timestamp`, `datetime`, `date`,
`time`), `open`, `high`, `low`, `close`, `volume`, optional `wap` (`vwap`, `average`) and `bar_count`
(`barcount`, `count`, `trades`). Timestamps are bar starts, read with one rule for the whole file:
- dates: `2024-06-03`, `2024/06/03`, `20240603`, `3 Jun 2024`, `Jun 3, 2024`; `03/06/2024` (also with `.` or
  `-`) is day-first or month-first as the file shows (a first field above 12: day-first; a second field above
  12: month-first); a file where it does not show needs `date_format` (`day-first` | `month-first`);
- an optional time `[T ]HH:MM[:SS[.f]]` and UTC offset (`Z`, `UTC`, `+02:00`, `-0400`, `-04`), per row, so a
  file may cross a clock change; every row has an offset or none does;
- naive times are in the source's `tz` (TT_CSV_TZ / `tt ingest --tz` at the edge); in 1d files a date, or midnight in the row's own zone,
  names the session of that date.
The bars then pass `bar_grid.conform` (the exchange's grid; 1d bars move to their session's open). A bad file
raises CsvFormatError naming the file and the first bad row - `line N` for CSV (the header is line 1, as an
editor counts), `row N` for Parquet (the first data row is row 1) - and nothing of it is returned, so nothing
of it is written. A file with no bar in the asked window raises OutsideWindow with its span.

Truncation: a CSV file whose last line has no final newline and breaks the file's own pattern (fewer fields
than the header, a volume under 1/100 of the median of the lines before it) was cut while being written and
is rejected naming that line. Splits: a bar-to-bar jump like an unadjusted split (tt_resources.splits) is
rejected naming the line and the ratio, unless `splits.csv` in the directory (columns symbol, date, ratio;
date = the first session at the new price, ratio = new:old shares, e.g. 2:1) names it: then the bars before
it are adjusted on reading as IBKR adjusts them. A declared split the file shows no jump for is taken as
already adjusted in the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NoReturn, get_args

import numpy as np
import pandas as pd

from tt_resources import bar_grid
from tt_resources.calendar import DEFAULT_EXCHANGE
from tt_resources.config import check_zone
from tt_resources.sources.base import Chunk, SourceError, SourceStats, SymbolNotFound, one_chunk
from tt_resources.splits import back_adjust, describe_jump, parse_ratio, ratio_text, split_jumps
from tt_resources.terms import PRICE_COLUMNS, SOURCE_BAR_COLUMNS, DateFormat, aware_utc
from tt_resources.timeframes import get_timeframe
from tt_resources.watchlist import Listing

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
SPLITS_FILE = "splits.csv"  # the splits a directory's files are not adjusted for (see module doc)
TRUNCATED_VOLUME = 0.01  # a last line's volume under this share of the median volume before it: truncated
DATE_FORMATS: tuple[str, ...] = get_args(DateFormat)  # field order of dates like 03/06/2024

_TIMESTAMP = re.compile(
    r"""^\s*(?:
        (?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})       # 2024-06-03, 2024/6/3
      | (?P<y8>\d{4})(?P<m8>\d{2})(?P<d8>\d{2})                              # 20240603
      | (?P<a>\d{1,2})(?P<sep2>[-/.])(?P<b>\d{1,2})(?P=sep2)(?P<ya>\d{4})   # 03/06/2024: day or month first
      | (?P<dn>\d{1,2})[-\s](?P<mon>[a-z]{3,9})\.?[-\s](?P<yn>\d{4})        # 3 Jun 2024, 03-Jun-2024
      | (?P<mon2>[a-z]{3,9})\.?\s(?P<dn2>\d{1,2}),?\s(?P<yn2>\d{4})         # Jun 3, 2024
    )
    (?:(?:T|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<frac>\.\d{1,9})?)?)?
    \s*(?P<tz>Z|UTC|GMT|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_MONTHS = {f"{pd.Timestamp(2000, month, 1):%b}".lower(): month for month in range(1, 13)}  # jan: 1


class CsvFormatError(SourceError):
    """A bars file breaks a rule; the message names the file and the first bad row."""


@dataclass(frozen=True)
class Rows:
    """How messages name a file's data rows: `line N` in a CSV file (the header is line 1, as an editor
    counts), `row N` in a Parquet file (the first data row is row 1)."""

    path: Path
    index: np.ndarray  # position in the data -> the row's number among the file's data rows, from 0

    def __call__(self, position: int) -> str:
        number = int(self.index[position])
        return f"row {number + 1}" if self.path.suffix == ".parquet" else f"line {number + 2}"

    def fail(self, position: int, reason: str) -> NoReturn:
        """Raise the file's one-line CsvFormatError for the row at `position`."""
        raise CsvFormatError(f"{self.path}: {self(position)}: {reason}; nothing from this file is used")


class OutsideWindow(SourceError):
    """A bars file holds bars, but none in the window asked for; the message gives the file's span."""


class CsvSource:
    """Reads `<directory>/<SYMBOL>_<timeframe>.{csv,parquet}`.

    `tz` is the IANA zone of naive timestamps (None: naive intraday times are rejected); `date_format` the
    field order of `03/06/2024`-style dates when a file does not show it. ValueError for an unknown zone
    or format."""

    name = "csv"
    concurrency = 1

    def __init__(
        self, directory: str | Path, tz: str | None = None, date_format: DateFormat | None = None
    ) -> None:
        self.directory = Path(directory)
        self.tz = tz
        self.date_format = date_format
        check_zone(self.tz)
        if self.date_format is not None and self.date_format not in DATE_FORMATS:
            raise ValueError(f"date format {self.date_format!r}: use one of {', '.join(DATE_FORMATS)}")
        self.stats = SourceStats()

    def path(self, symbol: str, timeframe: str) -> Path:
        for suffix in (".parquet", ".csv"):
            candidate = self.directory / f"{symbol}_{timeframe}{suffix}"
            if candidate.exists():
                return candidate
        raise SymbolNotFound(f"no file {symbol}_{timeframe}.csv or .parquet in {self.directory}")

    def fetch_chunks(self, listing: Listing, timeframe: str, start, end) -> Iterator[Chunk]:
        """[start, end) as one chunk (see fetch)."""
        yield from one_chunk(lambda: self.fetch(listing, timeframe, start, end), self.stats, start, end)

    def fetch(self, listing: Listing, timeframe: str, start, end) -> pd.DataFrame:
        """Bars of the listing's file starting in [start, end), on its calendar's grid; the whole file is
        validated first.

        OutsideWindow when the file has bars but none in the window."""
        tf = get_timeframe(timeframe)
        start, end = aware_utc(start, "start"), aware_utc(end, "end")
        path = self.path(listing.symbol, tf.name)
        self.stats.requests += 1
        declared = read_splits(self.directory / SPLITS_FILE).get(listing.symbol, [])
        bars = read_bars_file(path, tf.name, self.tz, self.date_format, listing.calendar, splits=declared)
        window = bars[(bars["ts"] >= start) & (bars["ts"] < end)]
        if window.empty:
            raise OutsideWindow(outside_window(path, bars["ts"], start, end))
        self.stats.bars += len(window)
        return window.reset_index(drop=True)

    def close(self) -> None:
        """Nothing to release."""


def outside_window(path: Path, ts: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """The one line for a file without a bar in [start, end): its span and the flag that would reach it."""
    first, last = ts.iloc[0], ts.iloc[-1]
    span = f"{len(ts):,} bars from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    window = f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"
    if last < start:
        hint = f"all before the window {window}; pass --start {first:%Y-%m-%d} (or earlier) to ingest them"
    elif first >= end:
        hint = f"all after the window {window}; pass a later --end, or none"
    else:
        hint = f"none in the window {window}"
    return f"{path}: nothing stored: its {span} lie {hint}"


def read_bars_file(
    path: Path,
    timeframe: str,
    tz: str | None = None,
    date_format: str | None = None,
    exchange: str = DEFAULT_EXCHANGE,
    *,
    splits: Sequence[tuple[date, float]] = (),
) -> pd.DataFrame:
    """Load and validate one bars file into a bars frame on `exchange`'s grid (see module doc), adjusted for
    the declared `splits` ((first session date, ratio)) it shows; CsvFormatError names the file and row."""
    raw, rows = _read(path)
    columns = _map_columns(path, raw)
    frame = pd.DataFrame({"ts": _timestamps(raw[columns["ts"]], timeframe, tz, date_format, rows)})
    for name in SOURCE_BAR_COLUMNS[1:]:
        source = columns.get(name)
        values = raw[source] if source else pd.Series(np.nan, index=raw.index)
        frame[name] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        unparsable = frame[name].isna() & raw[source].notna() if source else None
        if unparsable is not None and unparsable.any():
            row = int(np.argmax(unparsable.to_numpy()))
            rows.fail(row, f"{name} is not a number ({raw[source].iloc[row]!r})")
    _truncated(path, raw, frame, rows)
    _check(frame, raw[columns["ts"]], rows)
    try:
        bars = bar_grid.conform(frame, path.stem, timeframe, exchange=exchange, subject=str(path), rows=rows)
    except bar_grid.OffGridError as exc:
        raise CsvFormatError(f"{exc}; nothing from this file is used") from None
    return _adjusted(path, bars, splits, rows)


def _adjusted(path: Path, bars: pd.DataFrame, splits, rows: Rows) -> pd.DataFrame:
    """`bars` adjusted for each declared split the file shows a jump for; CsvFormatError at the first jump
    like an unadjusted split that is not declared."""
    jumps = split_jumps(bars)
    session = pd.DatetimeIndex(jumps["ts"]).tz_convert("America/New_York").date if len(jumps) else []
    shown = {(day, round(r, 6)) for day, r in zip(session, jumps["ratio"], strict=True)}
    applied = [
        (pd.Timestamp(day).tz_localize("America/New_York"), r)
        for day, r in splits
        if (day, round(r, 6)) in shown
    ]
    if applied:
        bars = back_adjust(bars, applied)
        jumps = split_jumps(bars)
    if len(jumps):
        jump = jumps.iloc[0]
        rows.fail(
            int(jump["position"]),
            f"{describe_jump(jump)}; adjust the file, or name the split in {path.parent / SPLITS_FILE} "
            f"(symbol,date,ratio: {path.stem.rsplit('_', 1)[0]},{jump['ts'].tz_convert('America/New_York'):%Y-%m-%d},"
            f"{ratio_text(jump['ratio'])}) to have it adjusted on reading",
        )
    return bars


def read_splits(path: Path) -> dict[str, list[tuple[date, float]]]:
    """symbol -> [(first session date, ratio)] of a splits file (columns symbol, date, ratio; see module doc);
    {} when there is none. CsvFormatError names the line of a bad row."""
    if not path.exists():
        return {}
    raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("symbol", "date", "ratio") if c not in raw.columns]
    if missing:
        raise CsvFormatError(f"{path}: missing column(s) {', '.join(missing)} (need symbol, date, ratio)")
    found: dict[str, list[tuple[date, float]]] = {}
    for i, row in enumerate(raw.itertuples()):
        try:
            day = pd.Timestamp(str(row.date).strip()).date()
            ratio = parse_ratio(row.ratio)
        except ValueError as exc:
            raise CsvFormatError(
                f"{path}: line {i + 2}: {exc} (need a date like 2026-06-10 and a ratio like 2:1)"
            ) from None
        found.setdefault(str(row.symbol).strip(), []).append((day, ratio))
    return found


def _truncated(path: Path, raw: pd.DataFrame, frame: pd.DataFrame, rows: Rows) -> None:
    """CsvFormatError when the file's last line has no final newline and breaks the file's own pattern: fewer
    fields than the line before, or a volume under TRUNCATED_VOLUME of the median of the lines before it."""
    if path.suffix == ".parquet" or len(raw) < 2:
        return
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        if handle.read(1) == b"\n":
            return
    last = len(raw) - 1
    filled, before = (int(raw.iloc[i].notna().sum()) for i in (last, last - 1))
    volume = frame["volume"].to_numpy("float64")
    typical = float(np.nanmedian(volume[max(0, last - 20) : last]))
    why = None
    if filled < before:
        why = f"{filled} fields where the line before has {before}"
    elif volume[last] < typical * TRUNCATED_VOLUME:
        why = f"volume {volume[last]:g}, under 1/100 of the median {typical:g} of the lines before it"
    if why is not None:
        rows.fail(last, f"the last line has no final newline and {why}: the file looks cut off while written")


def _read(path: Path) -> tuple[pd.DataFrame, Rows]:
    """The file's data rows (blank CSV lines dropped) and how messages name them."""
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path).reset_index(drop=True)
        else:
            raw = pd.read_csv(path, dtype=str, skip_blank_lines=False).dropna(how="all")
    except pd.errors.EmptyDataError:
        raise CsvFormatError(f"{path}: empty file (no header, no rows)") from None
    except (OSError, ValueError) as exc:
        raise CsvFormatError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
    if raw.empty:
        raise CsvFormatError(f"{path}: no rows (only the header {','.join(map(str, raw.columns))})")
    return raw, Rows(path, raw.index.to_numpy())


def _map_columns(path: Path, raw: pd.DataFrame) -> dict[str, str]:
    by_lower = {str(c).strip().lower(): c for c in raw.columns}
    columns = {}
    for name, aliases in ALIASES.items():
        found = next((by_lower[a] for a in aliases if a in by_lower), None)
        if found is not None:
            columns[name] = found
    missing = [n for n in ALIASES if n not in columns and n not in OPTIONAL]
    header = ",".join(map(str, raw.columns))
    separator = next((name for sep, name in ((";", "';'"), ("\t", "tab")) if sep in header), None)
    if missing and separator is not None:
        raise CsvFormatError(
            f"{path}: the columns are separated by {separator}, not commas (header {header!r}); "
            "save the file with commas"
        )
    if missing:
        raise CsvFormatError(f"{path}: missing column(s) {', '.join(missing)} (found: {header})")
    return columns


def _timestamps(
    values: pd.Series, timeframe: str, tz: str | None, date_format: str | None, rows: Rows
) -> pd.DatetimeIndex:
    """Bar starts in UTC; in 1d files a date, or midnight where the row was written, as 00:00 UTC of that
    date, which bar_grid.conform reads as the session date."""
    missing = values.isna().to_numpy()
    if missing.any():
        rows.fail(int(np.argmax(missing)), "timestamp missing")
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # Parquet, zone-aware
        wall = values.dt.tz_localize(None)
        offset = (wall - values.dt.tz_convert(None)).to_numpy()
    elif pd.api.types.is_datetime64_dtype(values):  # Parquet, naive
        wall, offset = values, np.full(len(values), np.timedelta64("NaT"), "m8[ns]")
    else:
        wall, offset = _parse_text(values.astype("string"), date_format, rows)
    aware = ~np.isnat(offset)
    if aware.any() and not aware.all():
        row = int(np.argmax(aware != aware[0]))
        has = "has a" if aware[row] else "has no"
        rows.fail(row, f"{values.iloc[row]!r} {has} UTC offset, unlike {rows(0)}: all rows or none need one")
    wall = pd.DatetimeIndex(wall).as_unit("ns")
    dated = (wall == wall.normalize()) if timeframe == "1d" else np.zeros(len(wall), dtype=bool)
    instants = wall.to_numpy().copy()  # dated rows stay at 00:00 of their date, read as UTC
    timed = np.flatnonzero(~dated)
    if aware.all():
        instants[timed] = wall[timed] - offset[timed]
    elif len(timed):
        if tz is None:
            rows.fail(
                int(timed[0]),
                f"naive timestamp {values.iloc[timed[0]]!r} and no time zone: give UTC offsets in the file or "
                "name the file's zone with --tz / TT_CSV_TZ (e.g. America/New_York)",
            )
        local = wall[timed].tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        if local.isna().any():
            row = int(timed[np.argmax(local.isna())])
            rows.fail(row, f"{values.iloc[row]!r} does not exist or is ambiguous in {tz} (a clock change)")
        instants[timed] = local.tz_convert(None)
    return pd.DatetimeIndex(instants).tz_localize("UTC")


def _parse_text(text: pd.Series, date_format: str | None, rows: Rows) -> tuple[pd.Series, np.ndarray]:
    """Wall-clock datetimes and UTC offsets (NaT: none) of timestamp strings, one date rule for the file."""
    parts = text.str.extract(_TIMESTAMP)
    unmatched = (parts.isna().all(axis=1) & text.notna()).to_numpy()
    if unmatched.any():
        row = int(np.argmax(unmatched))
        rows.fail(
            row,
            f"unparsable timestamp {text.iloc[row]!r} (write e.g. 2024-06-03T09:30:00-04:00, 2024-06-03 or "
            "03/06/2024)",
        )

    def number(column: str) -> pd.Series:
        return parts[column].astype("float64")

    year = number("y").fillna(number("y8")).fillna(number("yn")).fillna(number("yn2"))
    month = number("m").fillna(number("m8")).fillna(_month_numbers(parts, rows))
    day = number("d").fillna(number("d8")).fillna(number("dn")).fillna(number("dn2"))
    order = _date_order(parts, text, date_format, rows)
    first, second = number("a"), number("b")
    year = year.fillna(number("ya"))
    month = month.fillna(first if order == "month-first" else second)
    day = day.fillna(second if order == "month-first" else first)
    wall = pd.to_datetime(
        pd.DataFrame(
            {
                "year": year,
                "month": month,
                "day": day,
                "hour": number("H").fillna(0),
                "minute": number("M").fillna(0),
                "second": number("S").fillna(0),
            }
        ),
        errors="coerce",
    ) + pd.to_timedelta(parts["frac"].astype("float64").fillna(0), unit="s")
    invalid = (wall.isna() & text.notna()).to_numpy()
    if invalid.any():
        row = int(np.argmax(invalid))
        rule = f" ({order})" if pd.notna(parts["a"].iloc[row]) else ""
        rows.fail(row, f"{text.iloc[row]!r} is not a valid date and time{rule}")
    return wall, _offsets(parts)


def _month_numbers(parts: pd.DataFrame, rows: Rows) -> pd.Series:
    names = parts["mon"].fillna(parts["mon2"])
    numbers = names.str[:3].str.lower().map(_MONTHS)
    unknown = (numbers.isna() & names.notna()).to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        rows.fail(row, f"{names.iloc[row]!r} is not a month name")
    return numbers.astype("float64")


def _date_order(parts: pd.DataFrame, text: pd.Series, date_format: str | None, rows: Rows) -> str | None:
    """`day-first` or `month-first` for dates like 03/06/2024: `date_format`, else what the file shows.

    CsvFormatError when the file shows both orders, or neither and no format is given."""
    first, second = parts["a"].astype("float64").to_numpy(), parts["b"].astype("float64").to_numpy()
    slashed = ~np.isnan(first)
    if date_format or not slashed.any():
        return date_format
    day_first, month_first = first > 12, second > 12
    if day_first.any() and month_first.any():
        a, b = int(np.argmax(day_first)), int(np.argmax(month_first))
        rows.fail(
            max(a, b),
            f"{text.iloc[b]!r} is month-first but {text.iloc[a]!r} ({rows(a)}) is day-first; "
            "write one order throughout",
        )
    if day_first.any():
        return "day-first"
    if month_first.any():
        return "month-first"
    row = int(np.argmax(slashed))
    rows.fail(
        row,
        f"dates such as {text.iloc[row]!r} read both day-first and month-first (no field above 12 in the "
        "file tells which): pass --date-format day-first or month-first (or set TT_CSV_DATE_FORMAT)",
    )


def _offsets(parts: pd.DataFrame) -> np.ndarray:
    """UTC offsets (`Z`, `UTC`, `GMT`, `+HH[:MM]`) of the extracted timestamp parts as timedelta64[ns]; NaT
    where none is written."""
    minutes = parts["oh"].astype("float64") * 60 + parts["om"].astype("float64").fillna(0)
    signed = minutes.where(parts["sign"] == "+", -minutes).mask(parts["tz"].notna() & parts["sign"].isna(), 0)
    return pd.to_timedelta(signed, unit="min").to_numpy("m8[ns]")


def _check(frame: pd.DataFrame, written: pd.Series, rows: Rows) -> None:
    """Order, uniqueness and price rules; the first bad row is reported with every rule it breaks and its
    timestamp as `written`."""
    delta = frame["ts"].diff()
    o, h, lo, c = (frame[n] for n in PRICE_COLUMNS)
    rules = {
        "timestamp before the previous row's": delta < pd.Timedelta(0),
        "duplicate timestamp": delta == pd.Timedelta(0),
        **{f"{n} missing or not positive": ~(frame[n] > 0) for n in PRICE_COLUMNS},
        "volume missing or negative": ~(frame["volume"] >= 0),
        "high < low": h < lo,
        "open outside [low, high]": (o < lo) | (o > h),
        "close outside [low, high]": (c < lo) | (c > h),
    }
    bad = np.logical_or.reduce([mask.to_numpy() for mask in rules.values()])
    if bad.any():
        row = int(np.argmax(bad))
        reasons = ", ".join(name for name, mask in rules.items() if mask.iloc[row])
        rows.fail(row, f"{reasons} (timestamp {written.iloc[row]!s})")
