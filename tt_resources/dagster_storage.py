"""The Dagster instance's settings checked before Dagster reads them: every environment variable its
dagster.yaml names (`{env: DAGSTER_PG_HOST}`) is set, and its PostgreSQL storage answers.

Dagster itself would fail later with a long traceback (an unset variable), or retry a wrong password many
times; here each problem is one line naming the variable or the storage, never the password.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

# the fields of Dagster's `postgres_db` storage block and the URL part each one fills
PG_FIELDS = ("username", "password", "hostname", "port", "db_name")


class DagsterStorageError(ValueError):
    """DAGSTER_HOME's dagster.yaml names an unset variable or storage that cannot be reached; one line."""


def check_instance_settings(home: Path) -> None:
    """DagsterStorageError when `<home>/dagster.yaml` names an unset (or empty) environment variable, a
    non-numeric port, or PostgreSQL storage that cannot be connected to. No dagster.yaml: nothing to check."""
    path = home / "dagster.yaml"
    if not path.exists():
        return
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DagsterStorageError(f"{path}: cannot be read as YAML ({type(exc).__name__})") from None
    for name in _env_references(settings):
        if not os.environ.get(name):
            raise DagsterStorageError(f"{name} is not set; {path} uses it (see README: Dagster storage)")
    postgres = (settings.get("storage") or {}).get("postgres") if isinstance(settings, dict) else None
    if isinstance(postgres, dict) and isinstance(postgres.get("postgres_db"), dict):
        db = postgres["postgres_db"]
        port = db.get("port")
        if port is not None and not str(_value(port)).isdigit():
            named = f"{port['env']}: " if isinstance(port, dict) else ""
            raise DagsterStorageError(f"{named}the port of the PostgreSQL storage in {path} is not a number")
        _check_postgres(path, {k: _value(v) for k, v in db.items()})


def _env_references(node) -> list[str]:
    """The variables named by `{env: NAME}` anywhere in a parsed YAML document, in order."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return [node["env"]]
        return [name for value in node.values() for name in _env_references(value)]
    if isinstance(node, list):
        return [name for value in node for name in _env_references(value)]
    return []


def _value(node):
    return os.environ.get(node["env"]) if isinstance(node, dict) and set(node) == {"env"} else node


def _check_postgres(path: Path, db: dict) -> None:
    """One connection to the storage database; DagsterStorageError naming host and database on failure."""
    from sqlalchemy.engine import URL

    from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine

    url = URL.create(
        "postgresql+psycopg",
        username=db.get("username"),
        password=db.get("password"),
        host=db.get("hostname"),
        port=int(db.get("port") or 5432),
        database=db.get("db_name"),
    )
    engine = create_engine(url)
    try:
        check_connection(engine)
    except DatabaseConnectionError as exc:
        raise DagsterStorageError(f"Dagster storage ({path}): {exc}") from None
    finally:
        engine.dispose()
