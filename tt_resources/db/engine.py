"""Engine creation for both backends, URL normalisation and password-safe descriptions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from tt_resources import config
from tt_resources.urls import authority_problem

SUPPORTED_URLS = "sqlite:///<file> or postgresql[+psycopg]://user:password@host:port/database"


class DatabaseConnectionError(RuntimeError):
    """The database cannot be reached; the message names host and database, never the password."""


class DatabaseURLError(ValueError):
    """The database URL is not one the platform supports; the message never contains the password."""


def normalise_url(url: str | URL) -> URL:
    """Map `postgres://` / `postgresql://` / `postgresql+psycopg2://` to the psycopg 3 driver.

    DatabaseURLError (one line, never any part of user:password) for text that is not a URL, one whose
    user:password@host:port cannot be read as meant (tt_resources.urls.authority_problem) or a scheme other
    than SQLite and PostgreSQL.
    """
    problem = authority_problem(url) if isinstance(url, str) else None
    if problem is not None:
        raise DatabaseURLError(f"the database URL (DATABASE_URL): {problem}")
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (sa.exc.ArgumentError, ValueError):
        raise DatabaseURLError(f"the database URL is not a URL; use {SUPPORTED_URLS}") from None
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseURLError(
            f"unsupported database URL {shown} (scheme {parsed.drivername!r}); use {SUPPORTED_URLS}"
        )
    return parsed


def describe(url: str | URL) -> str:
    """Human description of a database with no secret in it, e.g. `postgresql db 'tt' on 127.0.0.1:5432`."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database or ':memory:'}"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.get_backend_name()} database {parsed.database!r} on {parsed.host or 'localhost'}{port}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA cache_size=-32768")  # 32 MiB (default 2): big bulk transactions stop spilling pages
    cur.close()


def create_engine(url: str | URL | None = None) -> sa.Engine:
    """An Engine for `url` (default: DATABASE_URL or the embedded SQLite file). Does not connect."""
    parsed = normalise_url(url or config.database_url())
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def check_connection(engine: sa.Engine) -> None:
    """Open and close one connection; DatabaseConnectionError (password-free, one line) when that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        reason = (
            str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise DatabaseConnectionError(f"cannot connect to {describe(engine.url)}: {reason}") from None
