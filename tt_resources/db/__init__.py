"""Database layer: schema, engine, migrations, bulk writers and the price/feature stores."""

from tt_resources.db.bulk import UpsertResult, insert_frame, read_frame, upsert_frame, upsert_time_series
from tt_resources.db.engine import (
    DatabaseConnectionError,
    check_connection,
    create_engine,
    describe,
    normalise_url,
)
from tt_resources.db.features import read_features, upsert_features
from tt_resources.db.migrate import current_revision, upgrade
from tt_resources.db.prices import (
    BarValidationError,
    high_water_marks,
    read_bars,
    upsert_price_bars,
    validate_bars,
)

__all__ = [
    "BarValidationError",
    "DatabaseConnectionError",
    "UpsertResult",
    "check_connection",
    "create_engine",
    "current_revision",
    "describe",
    "high_water_marks",
    "insert_frame",
    "normalise_url",
    "read_bars",
    "read_features",
    "read_frame",
    "upgrade",
    "upsert_features",
    "upsert_frame",
    "upsert_price_bars",
    "upsert_time_series",
    "validate_bars",
]
