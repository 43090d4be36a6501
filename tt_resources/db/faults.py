"""Database faults in the middle of a run: a lost connection (a terminated backend, a server restart or
failover) and a full disk, told apart from every other error, retried once when a reconnect can help.

A run that meets one loses at most the unit of work it hit (a partition): `with_reconnect` runs the work
again once after a lost connection (SQLAlchemy has invalidated the pool's connections by then, so the
second attempt opens a new one) and raises DatabaseFault, one line naming the cause, when that fails too or
the disk is full. The messages never contain a password (the drivers' texts name host and port only).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

# seconds before the one reconnect attempt: a restarting server is accepting connections again by then
RECONNECT_PAUSE_S = 1.0
SQLITE_FULL = 13  # sqlite3's result code for "database or disk is full"
PG_DISK_FULL = "53100"
# SQLSTATE classes of a connection the server ended: 08 connection exception, 57 operator intervention
# (57P01 admin shutdown = pg_terminate_backend, 57P02 crash shutdown, 57P03 cannot connect now)
PG_CONNECTION_CLASSES = ("08", "57")
LOST = "database connection lost"


class DatabaseFault(RuntimeError):
    """The database went away or is full and one reconnect attempt did not help; the message is one line."""


def database_fault(exc: BaseException) -> str | None:
    """One line naming the cause when `exc` is a lost database connection or a full database disk, e.g.
    `database connection lost: terminating connection due to administrator command`; None for any other
    error (a bug or bad data must not be retried or hidden)."""
    if isinstance(exc, DatabaseFault):
        return str(exc)
    if not isinstance(exc, sa.exc.DBAPIError):
        return None
    orig = exc.orig
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == PG_DISK_FULL or getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL:
        return f"database disk full: {text}"
    if exc.connection_invalidated or (_is_postgres(orig) and _connection_ended(exc, sqlstate)):
        return f"{LOST}: {text}"
    return None


def with_reconnect[T](work: Callable[[], T], *, pause_s: float = RECONNECT_PAUSE_S) -> T:
    """work(); after a lost connection, one reconnect attempt (work() again after `pause_s`). DatabaseFault
    (one line: the cause, and the second attempt's when it differs) when the second attempt fails on the
    database too or the disk is full; any other error propagates unchanged. `work` must be safe to repeat
    (the platform's writes are idempotent)."""
    try:
        return work()
    except Exception as exc:
        first = database_fault(exc)
        if first is None:
            raise
        if isinstance(exc, DatabaseFault) or not first.startswith(LOST):
            raise DatabaseFault(first) from None
    time.sleep(pause_s)
    try:
        return work()
    except Exception as exc:
        again = database_fault(exc)
        if again is None:
            raise
        detail = "" if again == first else f": {again.removeprefix(LOST + ': ')}"
        raise DatabaseFault(f"{first}; the reconnect attempt failed too{detail}") from None


def _is_postgres(orig: BaseException) -> bool:
    return type(orig).__module__.startswith("psycopg")


def _connection_ended(exc: sa.exc.DBAPIError, sqlstate: str | None) -> bool:
    """A psycopg error with no SQLSTATE is the client's (connection refused, closed); 08/57 the server's."""
    if sqlstate is None:
        return isinstance(exc, sa.exc.OperationalError)
    return sqlstate[:2] in PG_CONNECTION_CLASSES
