"""Dagster resources: thin, configurable wrappers around the database, the market-data sources and the
watchlist.

Every field defaults to the embedded setup. `from_env()` builds each resource from the settings
(tt_resources.config.Settings): a variable that is set becomes an `EnvVar` reference (text and integers),
so the Dagster UI shows the variable's name, never its value; a float or a name from a closed set (a
`terms.py` Literal, here a string enum) is passed as its checked value. `tt` passes the market_data
resource's fields as run config (tt_cli.common.market_config).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import dagster as dg
from pydantic import PrivateAttr

from tt_resources import config
from tt_resources.sources.settings import MARKET_DATA_FIELDS, SYNTHETIC_END
from tt_resources.terms import DateFormat, PacingMode, SourceName

if TYPE_CHECKING:
    import sqlalchemy as sa


def choices(name: str, names: Any) -> type[enum.StrEnum]:
    """The values of the Literal `names` as a string enum: Dagster config takes a Literal but not an optional
    one, and a set variable passes through these fields as its checked value (an EnvVar cannot fill an enum);
    the Launchpad offers the enum's values, and its members equal the plain strings."""
    return enum.StrEnum(name, {value: value for value in get_args(names)})


Source = choices("Source", SourceName)
CsvDateFormat = choices("CsvDateFormat", DateFormat)
Pacing = choices("Pacing", PacingMode)


def configured_fields(**fields: str) -> dict[str, Any]:
    """Resource field -> value for each `resource_field=settings_field` whose variable is set: an EnvVar
    reference (EnvVar.int for integers) or, for a float or one of a closed set of names (an enum field, which
    an EnvVar cannot fill), the checked value. Unset ones are left out, so the resource keeps its default.
    SettingsError names a variable with a bad value."""
    env = config.settings()
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if not env.is_set(field):
            continue
        value, variable = getattr(env, field), config.Settings.variable(field)
        if isinstance(value, bool | float) or _is_choice(field):
            values[name] = value
        else:
            values[name] = dg.EnvVar.int(variable) if isinstance(value, int) else dg.EnvVar(variable)
    return values


def _is_choice(field: str) -> bool:
    """True when the settings field holds one of a closed set of names (a Literal, or an optional one)."""
    annotation = config.Settings.model_fields[field].annotation
    return any(get_origin(a) is Literal for a in (annotation, *get_args(annotation)))


class DatabaseResource(dg.ConfigurableResource):
    """The platform database (SQLAlchemy engine), migrated to the latest schema on first use.

    `url` None means DATABASE_URL, else the embedded SQLite file under the data directory."""

    url: str | None = None
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls) -> DatabaseResource:
        return cls(**configured_fields(url="database_url"))

    def get_engine(self) -> sa.Engine:
        """The engine, created and migrated once per resource instance."""
        if self._engine is None:
            from tt_resources.db.engine import check_connection, create_engine
            from tt_resources.db.migrate import upgrade

            engine = create_engine(self.url)
            check_connection(engine)
            upgrade(engine)
            self._engine = engine
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class MarketDataResource(dg.ConfigurableResource):
    """Where bars come from: `synthetic` (embedded default; `synthetic_signal` planted, its clock stopped at
    `synthetic_end`), `csv` (files under
    `csv_dir`, None: `<data dir>/csv`; naive times in `csv_tz`, dates like 03/06/2024 in `csv_date_format`)
    or `ibkr` (IB Gateway / TWS at `ib_host`:`ib_port`, client ids `ib_client_id` and the next
    `ib_client_ids` - 1, `ib_timeout_s` per answer, `ib_reconnect_s` for a gateway that went away, pacing
    `ib_pacing` with `ib_max_requests` per `ib_window_s` when strict, `ib_concurrency` requests in flight);
    `hole_attempts` fetches of an undelivered span before later runs stop asking. Each field is the setting
    of the same meaning (tt_resources.sources.settings.MARKET_DATA_FIELDS)."""

    source: Source = Source.synthetic
    synthetic_signal: str = "sign_persistence"
    synthetic_end: str = SYNTHETIC_END
    csv_dir: str | None = None
    csv_tz: str | None = None
    csv_date_format: CsvDateFormat | None = None
    hole_attempts: int = 3
    ib_host: str = "127.0.0.1"
    ib_port: int = 4002
    ib_client_id: int = 17
    ib_client_ids: int = 8
    ib_timeout_s: float = 60.0
    ib_reconnect_s: float = 300.0
    ib_pacing: Pacing = Pacing.adaptive
    ib_max_requests: int = 60
    ib_window_s: float = 600.0
    ib_concurrency: int = 16

    @classmethod
    def from_env(cls) -> MarketDataResource:
        return cls(**configured_fields(**MARKET_DATA_FIELDS))

    def source_settings(self):
        """The tt_resources.sources.settings.SourceSettings of this configuration."""
        from tt_resources.sources.settings import from_config

        values = {name: getattr(self, name) for name in MARKET_DATA_FIELDS}
        return from_config({**values, "csv_dir": self.csv_dir or str(config.csv_dir())})


class WatchlistResource(dg.ConfigurableResource):
    """The watchlist CSV (`path` None: TT_WATCHLIST or data/tensorwatchlist.csv), optionally its first `limit` rows."""

    path: str | None = None
    limit: int | None = None

    @classmethod
    def from_env(cls) -> WatchlistResource:
        return cls(**configured_fields(path="tt_watchlist", limit="tt_watchlist_limit"))

    def symbols(self) -> list[str]:
        """The watchlist's symbols in file order; WatchlistError names file and line on bad input."""
        from tt_resources.watchlist import load_watchlist

        return load_watchlist(self.path, limit=self.limit).symbols

    def listings(self, symbols: list[str]):
        """The tt_resources.watchlist.Listing of each symbol (the whole file's, `Listing(symbol)` for one it
        does not hold), in the given order; WatchlistError names file and line on bad input."""
        from tt_resources.watchlist import load_watchlist

        watchlist = load_watchlist(self.path)
        return [watchlist.listing(symbol) for symbol in symbols]
