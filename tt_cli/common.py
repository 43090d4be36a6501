"""Helpers shared by the `tt` subcommands: bad-input errors (exit code 2) and opening the database."""

from __future__ import annotations

import click
import sqlalchemy as sa


class BadInput(click.ClickException):
    """One-line error for bad input or an unreachable database; exit code 2."""

    exit_code = 2


def open_database(url: str | None = None) -> sa.Engine:
    """Engine for `url` (default DATABASE_URL or the embedded SQLite file), reachable and migrated to head.

    An unreachable database raises BadInput naming host and database, never the password.
    """
    from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine
    from tt_resources.db.migrate import upgrade

    engine = create_engine(url)
    try:
        check_connection(engine)
    except DatabaseConnectionError as exc:
        raise BadInput(str(exc)) from None
    upgrade(engine)
    return engine
