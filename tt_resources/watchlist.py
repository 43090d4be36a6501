"""The watchlist: which US stocks the platform tracks (data/tensorwatchlist.csv by default).

CSV with a `symbol` header and optional `exchange`, `currency`, `sector` and `primary_exchange` columns.
`primary_exchange` names the listing exchange: the trading calendar the symbol's bars follow (NYSE, NASDAQ,
ARCA, AMEX or an exchange_calendars code; empty: NYSE) and the listing IBKR's answer is narrowed to when it
lists several for a symbol (e.g. NYSE vs ARCA). The file is loaded once into `Listing` records that travel with each symbol through ingest and the
sources. Symbols are stripped and upper-cased; blank lines are
skipped; a file that is not UTF-8 text, an empty file, duplicates, symbols that break `check_symbol`'s rule
and primary exchanges without a calendar are errors that name the file and line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tt_resources import config

SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9.\- ]{0,11}")
SYMBOL_RULE = "1-12 of A-Z 0-9 . - space, starting with a letter or digit"
COLUMNS = ("symbol", "exchange", "currency", "sector", "primary_exchange")


class WatchlistError(ValueError):
    """The watchlist file is unusable; the message names the file and (where there is one) the line."""


def check_symbol(text: str) -> str:
    """`text` stripped and upper-cased, e.g. `brk.b` -> `BRK.B`; ValueError naming it and the rule otherwise.

    The one symbol rule of the platform: the watchlist and `--symbols` both use it.
    """
    symbol = text.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"invalid symbol {symbol!r} (allowed: {SYMBOL_RULE})")
    return symbol


@dataclass(frozen=True)
class Listing:
    """Where a symbol trades: the exchange IBKR routes to (SMART: best execution), its currency, its sector
    (empty: unknown), its primary (listing) exchange (empty: unknown) and the calendar code of the sessions its
    bars follow (tt_resources.calendar; XNYS unless the primary exchange names another).
    `Listing("AAPL")` is a symbol the watchlist says nothing about."""

    symbol: str
    exchange: str = "SMART"
    currency: str = "USD"
    sector: str = ""
    primary_exchange: str = ""
    calendar: str = "XNYS"  # calendar.DEFAULT_EXCHANGE (not imported: exchange_calendars is slow to load)


DEFAULTS = {f: Listing.__dataclass_fields__[f].default for f in COLUMNS[1:]}


@dataclass(frozen=True)
class Watchlist:
    """The loaded watchlist: one Listing per symbol, file order."""

    path: Path
    listings: tuple[Listing, ...]

    @property
    def symbols(self) -> list[str]:
        return [listing.symbol for listing in self.listings]

    @property
    def frame(self) -> pd.DataFrame:
        """One row per symbol with the COLUMNS."""
        rows = [[getattr(listing, c) for c in COLUMNS] for listing in self.listings]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def listing(self, symbol: str) -> Listing:
        """The symbol's listing; `Listing(symbol)` when the watchlist does not hold it."""
        return self.by_symbol().get(symbol) or Listing(symbol)

    def by_symbol(self) -> dict[str, Listing]:
        return {listing.symbol: listing for listing in self.listings}

    def __len__(self) -> int:
        return len(self.listings)


def load_watchlist(path: str | Path | None = None, limit: int | None = None) -> Watchlist:
    """Read and validate the watchlist CSV (default: TT_WATCHLIST or data/tensorwatchlist.csv).

    `limit` keeps the first N symbols (after validating the whole file).
    """
    path = Path(path) if path is not None else config.watchlist_path()
    if limit is not None and limit < 1:
        raise WatchlistError(f"{path}: limit must be a positive number of symbols, got {limit}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise WatchlistError(f"{path}: cannot read the watchlist ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise WatchlistError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the watchlist as UTF-8 CSV"
        ) from None
    if "\x00" in text:
        raise WatchlistError(f"{path}: not UTF-8 text (NUL byte); save the watchlist as UTF-8 CSV")
    if not text.strip():
        raise WatchlistError(f"{path}: the watchlist file is empty")
    listings = _parse(path, text)
    return Watchlist(path=path, listings=tuple(listings[:limit] if limit else listings))


def _parse(path: Path, text: str) -> list[Listing]:
    """Validated listings in file order."""
    from tt_resources.calendar import CalendarError, exchange_code

    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    names = [name.strip().lower() for name in header or []]
    if "symbol" not in names:
        raise WatchlistError(
            f"{path}:1: header must have a 'symbol' column (got {','.join(names) or 'nothing'})"
        )
    index = {name: names.index(name) for name in COLUMNS if name in names}
    rows: list[Listing] = []
    first_line: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields):
            continue
        values = {name: fields[i].strip() if i < len(fields) else "" for name, i in index.items()}
        try:
            symbol = check_symbol(values["symbol"])
        except ValueError as exc:
            raise WatchlistError(f"{path}:{line}: {exc}") from None
        if symbol in first_line:
            raise WatchlistError(
                f"{path}:{line}: duplicate symbol {symbol} (first on line {first_line[symbol]})"
            )
        first_line[symbol] = line
        primary = (values.get("primary_exchange") or DEFAULTS["primary_exchange"]).upper()
        try:
            code = exchange_code(primary)
        except CalendarError as exc:
            raise WatchlistError(f"{path}:{line}: {symbol}: {exc}") from None
        rows.append(
            Listing(
                symbol,
                exchange=(values.get("exchange") or DEFAULTS["exchange"]).upper(),
                currency=(values.get("currency") or DEFAULTS["currency"]).upper(),
                sector=values.get("sector") or DEFAULTS["sector"],
                primary_exchange=primary,
                calendar=code,
            )
        )
    if not rows:
        raise WatchlistError(f"{path}: the watchlist has no symbols")
    return rows


def listings_of(symbols: Iterable[str], path: str | Path | None = None) -> list[Listing]:
    """The listing of each symbol in the watchlist at `path` (default: TT_WATCHLIST or
    data/tensorwatchlist.csv), `Listing(symbol)` for one it does not hold or when there is no readable file."""
    try:
        watchlist = load_watchlist(path)
    except WatchlistError:
        return [Listing(symbol) for symbol in symbols]
    return [watchlist.listing(symbol) for symbol in symbols]
