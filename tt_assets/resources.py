"""Dagster resources: thin, configurable wrappers around the database and the market-data sources.

Every field defaults to the embedded setup. `from_env()` builds each resource from the settings
(tt_resources.config.Settings): a variable that is set becomes an `EnvVar` reference (text and integers),
so the Dagster UI shows the variable's name, never its value; a float is passed as its checked value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from tt_resources import config

if TYPE_CHECKING:
    import sqlalchemy as sa


def configured_fields(**fields: str) -> dict[str, Any]:
    """Resource field -> value for each `resource_field=settings_field` whose variable is set: an EnvVar
    reference (EnvVar.int for integers) or, for a float, the checked value. Unset ones are left out, so
    the resource keeps its default. SettingsError names a variable with a bad value."""
    env = config.settings()
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if not env.is_set(field):
            continue
        value, variable = getattr(env, field), config.Settings.variable(field)
        if isinstance(value, bool | float):
            values[name] = value
        else:
            values[name] = dg.EnvVar.int(variable) if isinstance(value, int) else dg.EnvVar(variable)
    return values


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


class IbkrResource(dg.ConfigurableResource):
    """Connection settings for IB Gateway / TWS (IB_HOST, IB_PORT, IB_CLIENT_ID)."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17

    @classmethod
    def from_env(cls) -> IbkrResource:
        return cls(**configured_fields(host="ib_host", port="ib_port", client_id="ib_client_id"))


class MarketDataResource(dg.ConfigurableResource):
    """Where bars come from: `synthetic` (embedded default), `csv` (files under `csv_dir`) or `ibkr`."""

    source: str = "synthetic"
    csv_dir: str | None = None
    ibkr: IbkrResource

    @classmethod
    def from_env(cls) -> MarketDataResource:
        return cls(
            **configured_fields(source="tt_source", csv_dir="tt_csv_dir"),
            ibkr=IbkrResource.from_env(),
        )

    def make_source(self):
        """A fresh `tt_resources.sources.MarketDataSource` for this configuration (caller closes it)."""
        from tt_resources.sources import make_source

        if self.source == "ibkr":
            return make_source(
                "ibkr",
                host=self.ibkr.host,
                port=self.ibkr.port,
                client_id=self.ibkr.client_id,
            )
        if self.source == "csv":
            return make_source("csv", **({"directory": self.csv_dir} if self.csv_dir else {}))
        return make_source("synthetic")


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
