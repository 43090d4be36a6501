"""Fast generic writers and readers for pandas frames (SQLAlchemy 2 Core, both backends).

Writers convert whole columns at once (pandas -> Arrow -> numpy) and never loop over rows in Python:
- PostgreSQL: binary COPY FROM STDIN (see pgcopy; row order is kept only where it decides generated ids).
  Upserts COPY into a temporary stage table, anti-join away identical rows, then run one
  INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE (values) IS DISTINCT FROM (excluded values).
- SQLite: executemany on the raw DBAPI cursor with 200-row VALUES statements; upserts run
  INSERT ... ON CONFLICT DO NOTHING (counts inserts) then ... DO UPDATE WHERE changed (counts updates).
Timestamps are tz-aware UTC in frames; `UTCDateTime` columns store them as timestamptz on PostgreSQL and as
SQLAlchemy's naive-UTC text ('YYYY-MM-DD HH:MM:SS.ffffff') on SQLite, so Core reads round-trip.
NaN, inf and None are stored as NULL (JSON columns too).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tt_resources.db.pgcopy import copy_into
from tt_resources.db.types import UTCDateTime


@dataclass(frozen=True)
class UpsertResult:
    """Row counts of one upsert: every input row is exactly one of inserted, updated or unchanged."""

    rows: int
    inserted: int
    updated: int
    unchanged: int

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.rows + other.rows,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


EMPTY_RESULT = UpsertResult(0, 0, 0, 0)


@contextmanager
def _transaction(conn_or_engine: sa.Engine | sa.Connection):
    """Yield a Connection: a new transaction for an Engine, the caller's own transaction for a Connection."""
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.begin() as conn:
            yield conn
    else:
        yield conn_or_engine


# ---------------------------------------------------------------- column conversion


def utc_timestamps(values: pd.Series | pd.Index, name: str) -> pd.Series:
    """`values` as datetime64[us, UTC]; ValueError naming `name` for naive timestamps. The vectorised
    `tt_resources.terms.aware_utc`, except that missing values stay NaT (stored as NULL)."""
    series = pd.Series(values)
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        if series.isna().all():
            return pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
        series = pd.to_datetime(series)
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"column {name!r} holds naive timestamps; the database stores UTC instants only")
    return series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def float_values(values: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing values (no copy for plain numeric columns)."""
    if values.dtype.kind in "fiub":
        return values.to_numpy(dtype=np.float64)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def float_array(values: np.ndarray) -> pa.Array:
    """A float64 array as an Arrow float64 column; NaN and inf become null (stored as NULL)."""
    return pa.array(values, type=pa.float64(), mask=~np.isfinite(values))


def _dictionary(values: pd.Series) -> pa.DictionaryArray:
    """Text as an Arrow dictionary array (each distinct value once; None/NaN become null)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, distinct = values.cat.codes.to_numpy(), values.cat.categories
    else:
        codes, distinct = pd.factorize(values)
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, type=pa.int32(), mask=codes < 0),
        pa.array(np.asarray(distinct, dtype=object), type=pa.string()),
    )


def json_arrays(matrix: np.ndarray) -> pa.Array:
    """Each row of a numeric (K, N) matrix as JSON array text (K,), encoded column-wise by Arrow (K json.dumps
    calls cost several times more): shortest round-trip digits of the matrix's dtype, non-finite values as null."""
    floats = matrix if matrix.dtype.kind == "f" else matrix.astype(np.float64)
    columns = [pa.array(column, mask=~np.isfinite(column)).cast(pa.string()) for column in floats.T]
    body = pc.binary_join_element_wise(*columns, ", ", null_handling="replace", null_replacement="null")
    return pc.binary_join_element_wise("[", body, "]", "")


def _arrow_column(column: sa.Column, values: pd.Series) -> pa.Array:
    """One frame column as an Arrow array of the database column's type (NaN, inf and None become null)."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return pa.array(utc_timestamps(values, column.name), type=pa.timestamp("us", tz="UTC"))
    if isinstance(kind, sa.JSON):
        if len(values) and isinstance(values.iloc[0], np.ndarray):
            return json_arrays(np.stack(values.to_list()))
        missing = pd.isna(values).to_numpy() if isinstance(values, pd.Series) else pd.isna(list(values))
        text = [None if gone else json.dumps(v) for v, gone in zip(values, missing, strict=True)]
        return _dictionary(pd.Series(text, dtype=object))
    if isinstance(kind, sa.Boolean):
        return pa.array(values, type=pa.bool_(), from_pandas=True)
    if isinstance(kind, sa.Integer):
        return pa.array(values, type=pa.int64(), from_pandas=True)
    if isinstance(kind, sa.Float):
        return float_array(float_values(pd.Series(values)))
    return _dictionary(pd.Series(values))


def to_arrow(table: sa.Table, frame: pd.DataFrame) -> pa.Table:
    """The frame's columns (all must exist in `table`) as an Arrow table typed like the database columns."""
    unknown = [c for c in frame.columns if c not in table.c]
    if unknown:
        raise ValueError(
            f"{table.name} has no column(s) {', '.join(map(str, unknown))}; valid: {', '.join(table.c.keys())}"
        )
    columns = [c.name for c in table.columns if c.name in frame.columns]
    return pa.table({c: _arrow_column(table.c[c], frame[c]) for c in columns})


def _sqlite_values(array: pa.ChunkedArray) -> list:
    """Python values for sqlite3: timestamps as SQLAlchemy's naive-UTC text, nulls as None."""
    array = array.combine_chunks()
    if pa.types.is_timestamp(array.type):
        array = pc.dictionary_encode(array)  # bars share few distinct instants: format each once
        array = pa.DictionaryArray.from_arrays(
            # Arrow's text form of timestamp[us] is SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff" (20x strftime's speed)
            array.indices,
            array.dictionary.cast(pa.timestamp("us")).cast(pa.string()),
        )
    if pa.types.is_dictionary(array.type):
        words = np.asarray([*array.dictionary.to_pylist(), None], dtype=object)
        return words[array.indices.fill_null(-1).to_numpy(zero_copy_only=False)].tolist()
    if array.null_count:
        return array.to_pylist()
    return array.to_numpy(zero_copy_only=False).tolist()


def _sqlite_params(data: pa.Table, order: Sequence[str]) -> np.ndarray:
    """(rows, columns) object array of Python values in `order`, filled column by column."""
    params = np.empty((data.num_rows, len(order)), dtype=object)
    for j, name in enumerate(order):
        params[:, j] = _sqlite_values(data.column(name))
    return params


# ---------------------------------------------------------------- writers


def insert_frame(conn_or_engine: sa.Engine | sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Append every row of `frame` to `table` (no conflict handling); returns the number of rows.

    PostgreSQL uses binary COPY; SQLite executemany. On an Engine this is one transaction; on a Connection
    it joins the caller's transaction.
    """
    if frame.empty:
        return 0
    return insert_table(conn_or_engine, table, to_arrow(table, frame))


def insert_table(conn_or_engine: sa.Engine | sa.Connection, table: sa.Table, data: pa.Table) -> int:
    """`insert_frame` for rows already in Arrow form, typed as `to_arrow` types them (timestamp[us, UTC],
    int64, float64 with nulls, bool, dictionary or plain strings; JSON columns as JSON text)."""
    unknown = [c for c in data.column_names if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
    with _transaction(conn_or_engine) as conn:
        return _insert(conn, table, data)


def upsert_frame(
    conn_or_engine: sa.Engine | sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    key_columns: Sequence[str],
    *,
    audit_columns: Sequence[str] = (),
) -> UpsertResult:
    """Insert new rows, update changed ones, leave identical ones untouched; one transaction.

    `audit_columns` (e.g. ingested_at) are written on insert and on change but never make a row "changed".
    Duplicate keys inside `frame` are a ValueError.
    """
    if frame.empty:
        return EMPTY_RESULT
    _check_keys(table, frame, key_columns)
    data = to_arrow(table, frame)
    with _transaction(conn_or_engine) as conn:
        return _upsert(conn, table, data, key_columns, audit_columns)


def upsert_time_series(
    conn_or_engine: sa.Engine | sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    *,
    partition_columns: Sequence[str] = ("symbol", "timeframe"),
    ts_column: str = "ts",
    audit_columns: Sequence[str] = (),
) -> UpsertResult:
    """`upsert_frame` for rows keyed by (partition_columns..., ts_column), appending the new tail fast.

    Rows later than their partition's high-water mark (max stored ts) go straight in (COPY on PostgreSQL);
    only the overlap takes the upsert path. If a concurrent writer appended first, the whole batch is
    retried through the upsert path. One transaction.
    """
    if frame.empty:
        return EMPTY_RESULT
    key_columns = (*partition_columns, ts_column)
    _check_keys(table, frame, key_columns)
    data = to_arrow(table, frame)
    try:
        with _transaction(conn_or_engine) as conn, _savepoint(conn, owned=conn is not conn_or_engine):
            past = _past_high_water_mark(conn, table, data, partition_columns, ts_column)
            appended = _insert(conn, table, data if past.all() else data.filter(pa.array(past)))
            overlap = _upsert(conn, table, data.filter(pa.array(~past)), key_columns, audit_columns)
            return UpsertResult(appended, appended, 0, 0) + overlap
    except (sa.exc.IntegrityError, conn_or_engine.dialect.dbapi.IntegrityError):
        with _transaction(conn_or_engine) as conn:
            return _upsert(conn, table, data, key_columns, audit_columns)


def _insert(conn: sa.Connection, table: sa.Table, data: pa.Table) -> int:
    if not data.num_rows:
        return 0
    if conn.dialect.name == "postgresql":
        copy_into(conn, table, data)
    else:
        _executemany(conn, lambda rows: sa.insert(table).values(_bind(data, rows)), data, ("insert", table))
    return data.num_rows


def _upsert(
    conn: sa.Connection,
    table: sa.Table,
    data: pa.Table,
    key_columns: Sequence[str],
    audit_columns: Sequence[str],
) -> UpsertResult:
    if not data.num_rows:
        return EMPTY_RESULT
    values = [c for c in data.column_names if c not in key_columns]
    compared = [c for c in values if c not in audit_columns]
    upsert = _pg_upsert if conn.dialect.name == "postgresql" else _sqlite_upsert
    inserted, updated = upsert(conn, table, data, key_columns, values, compared)
    return UpsertResult(data.num_rows, inserted, updated, data.num_rows - inserted - updated)


def _bind(data: pa.Table, rows: int) -> list[dict[str, sa.BindParameter]]:
    """Positional parameters for a `rows`-row VALUES clause, named `p<row>_<column>`."""
    return [{c: sa.bindparam(f"p{i}_{c}") for c in data.column_names} for i in range(rows)]


SQLITE_ROWS_PER_STATEMENT = 200  # multi-row VALUES: fewer statement steps per row (bench/ingest.py)
_SQL_CACHE_SIZE = 1024
_sql_cache: dict[tuple, tuple[str, list[str]]] = {}  # (dialect, statement key, columns, rows) -> SQL, order


def _executemany(
    conn: sa.Connection, build: Callable[[int], sa.Executable], data: pa.Table, key: tuple
) -> int:
    """Run `build(rows)` (a statement with a `rows`-row VALUES clause) over all of `data` through the raw
    DBAPI cursor: full blocks of SQLITE_ROWS_PER_STATEMENT rows, then the remainder. Returns rowcount.

    `key` (hashable) names the statement `build` makes for these columns, e.g. ("insert", table): compiled
    SQL is cached per (dialect, key, columns, rows), since compiling a 200-row VALUES clause costs more than
    running it."""
    per = max(1, min(SQLITE_ROWS_PER_STATEMENT, 30_000 // data.num_columns, data.num_rows))
    full = data.num_rows // per * per

    def compiled(rows: int) -> tuple[str, list[str]]:
        cache_key = (conn.dialect.name, conn.dialect.paramstyle, key, tuple(data.column_names), rows)
        hit = _sql_cache.get(cache_key)
        if hit is None:
            stmt = build(rows).compile(dialect=conn.dialect)
            order = [name.split("_", 1)[1] for name in stmt.positiontup[: data.num_columns]]
            if len(_sql_cache) >= _SQL_CACHE_SIZE:
                _sql_cache.clear()
            hit = _sql_cache[cache_key] = (stmt.string, order)
        return hit

    params = _sqlite_params(data, compiled(per)[1])
    cursor = conn.connection.driver_connection.cursor()
    changed = 0
    try:
        for rows, block in ((per, params[:full]), (data.num_rows - full, params[full:])):
            if len(block):
                cursor.executemany(compiled(rows)[0], block.reshape(-1, rows * data.num_columns).tolist())
                changed += cursor.rowcount
        return changed
    finally:
        cursor.close()


def _on_conflict(stmt, table: sa.Table, key_columns, values, compared):
    """`stmt` (a dialect INSERT) + ON CONFLICT: update `values` when any `compared` column changed."""
    if not values:
        return stmt.on_conflict_do_nothing(index_elements=list(key_columns))
    changed = (
        sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in compared)) if compared else sa.false()
    )
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns), set_={c: stmt.excluded[c] for c in values}, where=changed
    )


def duplicate_rows(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Boolean per row: True where the row's `columns` values already appeared in an earlier row."""
    return pd.Series(_row_codes(frame, columns)).duplicated().to_numpy()


def _row_codes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One int64 code per row, equal for rows with equal `columns` values, numbered by first appearance."""
    codes = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        part, distinct = pd.factorize(frame[column])
        codes = pd.factorize(codes * (len(distinct) + 1) + part + 1)[0]
    return codes


def _check_keys(table: sa.Table, frame: pd.DataFrame, key_columns: Sequence[str]) -> None:
    missing = [c for c in key_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table.name} upsert: frame lacks key column(s) {', '.join(missing)}")
    dupes = duplicate_rows(frame, key_columns)
    if dupes.any():
        first = frame.iloc[int(np.argmax(dupes))]
        key = ", ".join(f"{c}={first[c]}" for c in key_columns)
        raise ValueError(f"{table.name} upsert: duplicate key inside the batch ({key})")


def _pg_upsert(conn, table, data, key_columns, values, compared) -> tuple[int, int]:
    """COPY into a temp stage table, then one INSERT ... ON CONFLICT DO UPDATE WHERE changed.

    An anti-join drops identical rows before the INSERT: ON CONFLICT DO UPDATE locks (writes) every row
    it meets even when its WHERE is false, which made all-conflict batches twice as slow.
    """
    stage = sa.Table(
        f"tt_stage_{uuid.uuid4().hex[:12]}",
        sa.MetaData(),
        *(sa.Column(c, table.c[c].type) for c in data.column_names),
        prefixes=["TEMPORARY"],
    )
    stage.create(conn)
    copy_into(conn, stage, data)
    stored = table.alias("stored")
    same = sa.and_(
        *(stored.c[c] == stage.c[c] for c in key_columns),
        *(stored.c[c].is_not_distinct_from(stage.c[c]) for c in compared),
    )
    new_or_changed = sa.select(*stage.c).where(~sa.exists().where(same))
    stmt = _on_conflict(
        pg_insert(table).from_select(data.column_names, new_or_changed), table, key_columns, values, compared
    )
    written = stmt.returning(sa.literal_column("xmax = 0", sa.Boolean).label("inserted")).cte("written")
    counts = sa.select(
        sa.func.count().filter(written.c.inserted), sa.func.count().filter(sa.not_(written.c.inserted))
    )
    inserted, updated = conn.execute(counts).one()
    stage.drop(conn)
    return inserted, updated


def _sqlite_upsert(conn, table, data, key_columns, values, compared) -> tuple[int, int]:
    """Two executemany passes: INSERT ... DO NOTHING counts the inserts (and takes the write lock), then
    INSERT ... DO UPDATE WHERE changed counts the updates (rows just inserted compare equal)."""

    def insert_new(rows: int) -> sa.Executable:
        return (
            sqlite_insert(table)
            .values(_bind(data, rows))
            .on_conflict_do_nothing(index_elements=list(key_columns))
        )

    def update_changed(rows: int) -> sa.Executable:
        return _on_conflict(
            sqlite_insert(table).values(_bind(data, rows)), table, key_columns, values, compared
        )

    key = (table, tuple(key_columns), tuple(values), tuple(compared))
    inserted = _executemany(conn, insert_new, data, ("insert_new", *key))
    if not values or inserted == data.num_rows:
        return inserted, 0
    return inserted, _executemany(conn, update_changed, data, ("update_changed", *key))


@contextmanager
def _savepoint(conn: sa.Connection, *, owned: bool):
    """A savepoint on PostgreSQL when the caller owns the transaction, so a failed fast path can be retried
    inside it (when we own the transaction, rolling all of it back is enough)."""
    if owned or conn.dialect.name != "postgresql":
        yield
        return
    with conn.begin_nested():
        yield


_MAX_UNION = 400  # SQLite allows at most 500 terms in a compound SELECT


def _past_high_water_mark(
    conn: sa.Connection, table: sa.Table, data: pa.Table, partition_columns: Sequence[str], ts_column: str
) -> np.ndarray:
    """Boolean mask of the rows later than their partition's stored maximum ts.

    One indexed max() lookup per distinct partition in the batch (not a scan of the stored rows).
    """
    keys = data.select(list(partition_columns)).to_pandas()
    codes = _row_codes(keys, partition_columns)
    partitions = keys.iloc[np.unique(codes, return_index=True)[1]].to_dict("records")
    last = np.full(len(partitions), np.iinfo(np.int64).min)
    ts = table.c[ts_column]
    for start in range(0, len(partitions), _MAX_UNION):
        lookups = [
            sa.select(
                sa.literal(start + i).label("part"),
                sa.select(sa.func.max(ts))
                .where(*(table.c[c] == value for c, value in partition.items()))
                .scalar_subquery()
                .label("last_ts"),
            )
            for i, partition in enumerate(partitions[start : start + _MAX_UNION])
        ]
        marks = [row for row in conn.execute(sa.union_all(*lookups)) if row.last_ts is not None]
        if marks:
            parts, stamps = zip(*marks, strict=True)
            last[list(parts)] = pd.DatetimeIndex(stamps).tz_convert("UTC").as_unit("us").asi8
    return data.column(ts_column).cast(pa.int64()).to_numpy() > last[codes]


# ---------------------------------------------------------------- readers


def read_frame(conn_or_engine: sa.Engine | sa.Connection, stmt: sa.Select) -> pd.DataFrame:
    """Run a Core select into a DataFrame, building each column at once with an explicit dtype.

    `UTCDateTime` columns come back as datetime64[us, UTC] (fetched as epoch microseconds on PostgreSQL,
    as text on SQLite), floats as float64 (NaN for NULL), integers as nullable Int64, the rest as objects.
    """
    with _transaction(conn_or_engine) as conn:
        postgres = conn.dialect.name == "postgresql"
        fetched = stmt.with_only_columns(
            *(_raw_timestamp(c, postgres) for c in stmt.selected_columns), maintain_column_froms=True
        )
        result = conn.execute(fetched)
        names = list(result.keys())
        rows = result.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pd.DataFrame(
        {
            name: _frame_column(column.type, values, postgres)
            for name, column, values in zip(names, stmt.selected_columns, columns, strict=True)
        }
    )


def _raw_timestamp(column: sa.ColumnElement, postgres: bool) -> sa.ColumnElement:
    """`UTCDateTime` columns as epoch microseconds (PostgreSQL) or stored text (SQLite); others unchanged."""
    if not isinstance(column.type, UTCDateTime):
        return column
    if postgres:
        return sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger).label(column.name)
    return sa.type_coerce(column, sa.types.NullType()).label(column.name)


def _frame_column(kind: sa.types.TypeEngine, values: tuple, postgres: bool):
    """One fetched column as a pandas-ready array (see read_frame for the dtypes)."""
    if isinstance(kind, sa.Float):
        return np.array(values, dtype=np.float64)
    objects = np.fromiter(values, dtype=object, count=len(values))  # 1-D even when cells hold lists
    if isinstance(kind, UTCDateTime):
        if not postgres:
            return pd.to_datetime(objects, utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        missing = pd.isna(objects)
        stamps = np.where(missing, 0, objects).astype(np.int64).view("M8[us]")
        stamps[missing] = np.datetime64("NaT")
        return pd.DatetimeIndex(stamps).tz_localize("UTC")
    if isinstance(kind, sa.Integer):
        missing = pd.isna(objects)
        return pd.arrays.IntegerArray(np.where(missing, 0, objects).astype(np.int64), missing)
    return objects
