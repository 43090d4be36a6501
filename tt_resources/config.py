"""Process-wide settings read from the environment (and `.env`).

Embedded defaults: no DATABASE_URL -> SQLite file under the data directory;
no TT_SOURCE -> synthetic market data; no DAGSTER_HOME -> `<data dir>/dagster_home`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@cache
def load_env() -> None:
    """Read `.env` from the working directory or the project root once (never overrides real env vars)."""
    load_dotenv(Path.cwd() / ".env", override=False)
    load_dotenv(PROJECT_ROOT / ".env", override=False)


def data_dir() -> Path:
    """Directory for the embedded database, models and datasets (TT_DATA_DIR, default `<project>/data`)."""
    load_env()
    path = Path(os.environ.get("TT_DATA_DIR") or PROJECT_ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """DATABASE_URL, or the embedded SQLite file `<data dir>/tt.sqlite`."""
    load_env()
    return os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir() / 'tt.sqlite'}"


def watchlist_path() -> Path:
    """TT_WATCHLIST, default `<project>/data/tensorwatchlist.csv`."""
    load_env()
    return Path(os.environ.get("TT_WATCHLIST") or PROJECT_ROOT / "data" / "tensorwatchlist.csv")


def source_name() -> str:
    """Market-data source: TT_SOURCE in {synthetic, csv, ibkr}; default synthetic."""
    load_env()
    return os.environ.get("TT_SOURCE", "synthetic").strip().lower() or "synthetic"
