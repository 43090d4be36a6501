"""PostgreSQL binary COPY, encoded column-wise with numpy (no Python loop per row).

Each column becomes per-row field lengths plus fixed-width values (big-endian numbers, or text padded to the
longest distinct value); rows that share a layout are packed as one numpy structured array. Supports the
schema's types: timestamptz (`UTCDateTime`), int2/4/8, float4/8, bool, text/varchar and jsonb.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from tt_resources.db.types import UTCDateTime

COPY_CHUNK_ROWS = 65_536  # rows encoded per write: encoding overlaps the server's work on the previous chunk

_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header-extension length
_PGCOPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since the Unix epoch
_PG_INTEGERS = ((sa.BigInteger, ">i8"), (sa.SmallInteger, ">i2"), (sa.Integer, ">i4"))


@dataclass(frozen=True)
class _BinaryColumn:
    """One column in COPY binary form: per-row field length in bytes (-1 = NULL) and per-row values
    (big-endian numbers, or bytes padded to the longest value)."""

    lengths: np.ndarray
    values: np.ndarray

    def __getitem__(self, rows) -> _BinaryColumn:
        return _BinaryColumn(self.lengths[rows], self.values[rows])


def _binary_column(column: sa.Column, array: pa.Array) -> _BinaryColumn:
    """Encode one Arrow column for the PostgreSQL type of `column` (timestamptz, int2/4/8, float4/8,
    bool, text, jsonb)."""
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    kind = column.type
    if isinstance(kind, sa.String | sa.JSON):
        return _binary_text(array, valid, jsonb=isinstance(kind, sa.JSON))
    if isinstance(kind, UTCDateTime):
        array, dtype = pc.subtract(array.cast(pa.int64()), _PG_EPOCH_US), ">i8"
    elif isinstance(kind, sa.Boolean):
        dtype = "?"
    elif isinstance(kind, sa.Integer):
        dtype = next(code for family, code in _PG_INTEGERS if isinstance(kind, family))
    elif isinstance(kind, sa.Float):
        dtype = ">f4" if (kind.precision or 53) <= 24 else ">f8"
    else:
        raise TypeError(f"no COPY encoding for column {column.name!r} of type {kind}")
    if array.null_count:
        array = array.fill_null(False if dtype == "?" else 0)
    values = array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return _BinaryColumn(np.where(valid, values.itemsize, -1).astype(np.int32), values)


def _binary_text(array: pa.Array, valid: np.ndarray, *, jsonb: bool) -> _BinaryColumn:
    """UTF-8 text (jsonb: version byte 1 + text), encoded once per distinct value."""
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    words = [(b"\x01" if jsonb else b"") + word.encode() for word in encoded.dictionary.to_pylist()] or [b""]
    sizes = np.fromiter(map(len, words), dtype=np.int32, count=len(words))
    index = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return _BinaryColumn(
        np.where(valid, sizes[index], -1).astype(np.int32), np.array(words, dtype=bytes)[index]
    )


def _binary_rows(columns: list[_BinaryColumn], *, keep_order: bool) -> bytes:
    """COPY binary tuples for the rows of `columns`, packed as numpy structured arrays of rows that share
    a layout (the field lengths). Without `keep_order` rows are grouped by layout (few, large groups);
    with it, consecutive runs of one layout are packed in turn, so generated ids follow the frame's order."""
    n = len(columns[0].lengths)
    layout = np.zeros(n, dtype=np.int64)
    for column in columns:
        if (column.lengths != column.lengths[0]).any():
            layout = pd.factorize(layout * (column.values.itemsize + 2) + column.lengths + 1)[0]
    if not layout.any():
        return _packed_rows(columns)
    if keep_order:
        bounds = [0, *(np.flatnonzero(np.diff(layout)) + 1), n]
        groups = [slice(start, stop) for start, stop in pairwise(bounds)]
    else:
        groups = np.split(np.argsort(layout, kind="stable"), np.cumsum(np.bincount(layout))[:-1])
    return b"".join(_packed_rows([column[rows] for column in columns]) for rows in groups)


def _packed_rows(columns: list[_BinaryColumn]) -> bytes:
    """COPY binary tuples for rows that share one layout (every column's length is the same in each row)."""
    fields: list[tuple[str, str | np.dtype]] = [("count", ">i2")]
    for i, column in enumerate(columns):
        fields.append((f"len{i}", ">i4"))
        width = int(column.lengths[0])
        if width > 0:
            fields.append(
                (f"val{i}", f"S{width}" if column.values.dtype.kind == "S" else column.values.dtype)
            )
    rows = np.empty(len(columns[0].lengths), dtype=fields)
    rows["count"] = len(columns)
    for i, column in enumerate(columns):
        rows[f"len{i}"] = column.lengths[0]  # the same in every row of the group
        if f"val{i}" in rows.dtype.names:
            rows[f"val{i}"] = column.values
    return rows.tobytes()


def binary_copy_chunks(table: sa.Table, data: pa.Table) -> Iterator[bytes]:
    """The COPY binary stream for `data` (columns of `table`): header, tuples in chunks, trailer.

    Row order is kept only for tables with an autoincrement id (where it decides the ids)."""
    columns = [
        _binary_column(table.c[name], data.column(name).combine_chunks()) for name in data.column_names
    ]
    yield _PGCOPY_HEADER
    for start in range(0, data.num_rows, COPY_CHUNK_ROWS):
        chunk = [column[start : start + COPY_CHUNK_ROWS] for column in columns]
        yield _binary_rows(chunk, keep_order=table.autoincrement_column is not None)
    yield _PGCOPY_TRAILER


def copy_statement(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> str:
    """`COPY table (columns) FROM STDIN (FORMAT binary)` with quoted identifiers."""
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in columns)
    return f"COPY {preparer.format_table(table)} ({names}) FROM STDIN (FORMAT binary)"


def copy_into(conn: sa.Connection, table: sa.Table, data: pa.Table) -> None:
    """Stream `data` into `table` with binary COPY FROM STDIN (encoding overlaps the server's work)."""
    with (
        conn.connection.driver_connection.cursor() as cursor,
        cursor.copy(copy_statement(conn, table, data.column_names)) as copy,
    ):
        for chunk in binary_copy_chunks(table, data):
            copy.write(chunk)
