"""Dagster resources: thin, configurable wrappers around the database and the market-data sources.

Every field defaults to the embedded setup. `from_env()` builds each resource from the environment
(and `.env`) with `EnvVar` references, so the Dagster UI shows the variable's name, never its value.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from tt_resources import config

if TYPE_CHECKING:
    import sqlalchemy as sa


def _env(name: str, *, integer: bool = False) -> Any:
    """An EnvVar reference when `name` is set in the environment (or `.env`), else None."""
    config.load_env()
    if not os.environ.get(name):
        return None
    return dg.EnvVar.int(name) if integer else dg.EnvVar(name)


def _configured(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class DatabaseResource(dg.ConfigurableResource):
    """The platform database (SQLAlchemy engine), migrated to the latest schema on first use.

    `url` None means DATABASE_URL, else the embedded SQLite file under the data directory."""

    url: str | None = None
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls) -> DatabaseResource:
        return cls(**_configured({"url": _env("DATABASE_URL")}))

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
        return cls(
            **_configured(
                {
                    "host": _env("IB_HOST"),
                    "port": _env("IB_PORT", integer=True),
                    "client_id": _env("IB_CLIENT_ID", integer=True),
                }
            )
        )


class MarketDataResource(dg.ConfigurableResource):
    """Where bars come from: `synthetic` (embedded default), `csv` (files under `csv_dir`) or `ibkr`."""

    source: str = "synthetic"
    csv_dir: str | None = None
    ibkr: IbkrResource

    @classmethod
    def from_env(cls) -> MarketDataResource:
        return cls(
            **_configured({"source": _env("TT_SOURCE"), "csv_dir": _env("TT_CSV_DIR")}),
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
            return make_source("csv", **_configured({"directory": self.csv_dir}))
        return make_source("synthetic")


class WatchlistResource(dg.ConfigurableResource):
    """The watchlist CSV (`path` None: TT_WATCHLIST or data/tensorwatchlist.csv), optionally its first `limit` rows."""

    path: str | None = None
    limit: int | None = None

    @classmethod
    def from_env(cls) -> WatchlistResource:
        return cls(
            **_configured({"path": _env("TT_WATCHLIST"), "limit": _env("TT_WATCHLIST_LIMIT", integer=True)})
        )

    def symbols(self) -> list[str]:
        """The watchlist's symbols in file order; WatchlistError names file and line on bad input."""
        from tt_resources.watchlist import load_watchlist

        return load_watchlist(self.path, limit=self.limit).symbols
