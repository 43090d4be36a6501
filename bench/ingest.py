"""Ingest benchmark: upsert 1,000,000 synthetic hourly bars (150 symbols) into each backend, fresh and again.

End to end from a DataFrame to committed rows (validation included). The PostgreSQL yardstick is a plain
binary COPY of the same rows, pre-encoded, into an empty copy of tt_prices (client time excluded).
The machine is shared, so every figure is the best of ROUNDS rounds (each round's figures are printed
with the load average).
Prints rows/s and writes bench/results/ingest.json. PostgreSQL: TT_BENCH_PG_URL (an admin URL; a scratch
database is created and dropped), default the local cluster as user postgres.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scratch import scratch_postgres  # noqa: E402
from tt_resources.db import create_engine, upgrade, upsert_price_bars  # noqa: E402
from tt_resources.db.bulk import to_arrow  # noqa: E402
from tt_resources.db.pgcopy import binary_copy_chunks, copy_statement  # noqa: E402
from tt_resources.db.prices import validate_bars  # noqa: E402
from tt_resources.db.schema import prices  # noqa: E402

ROWS = 1_000_000
SYMBOLS = 150
ROUNDS = 3  # the machine is shared: each figure is the best of ROUNDS rounds on fresh databases
KEYS = (
    "postgres_fresh_rows_per_s",
    "postgres_conflict_rows_per_s",
    "sqlite_fresh_rows_per_s",
    "sqlite_conflict_rows_per_s",
    "postgres_copy_limit_rows_per_s",
)
PG_ADMIN_URL = os.environ.get("TT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def synthetic_bars(rows: int = ROWS, symbols: int = SYMBOLS, seed: int = 7) -> pd.DataFrame:
    """`rows` valid hourly bars: `symbols` random-walk series of rows // symbols bars each."""
    rng = np.random.default_rng(seed)
    per_symbol = rows // symbols
    names = np.repeat([f"S{i:03d}" for i in range(symbols)], per_symbol)
    ts = pd.date_range("2020-01-01", periods=per_symbol, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (symbols, per_symbol)), axis=1)).ravel()
    open_ = close * (1 + rng.normal(0, 0.002, close.size))
    spread = np.abs(rng.normal(0, 0.003, close.size)) * close
    return pd.DataFrame(
        {
            "symbol": names,
            "timeframe": "1h",
            "ts": np.tile(ts, symbols),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(100, 1_000_000, close.size).astype(float),
            "wap": close,
            "bar_count": rng.integers(1, 5_000, close.size),
            "source": "bench",
        }
    )


def rows_per_s(engine: sa.Engine, bars: pd.DataFrame) -> tuple[float, object]:
    start = time.perf_counter()
    result = upsert_price_bars(engine, bars)
    return len(bars) / (time.perf_counter() - start), result


def copy_limit(engine: sa.Engine, bars: pd.DataFrame) -> float:
    """Rows/s of a plain binary COPY of pre-encoded rows into an empty copy of tt_prices, committed
    (no client-side conversion or encoding in the timing)."""
    data = to_arrow(prices, validate_bars(bars).assign(ingested_at=pd.Timestamp.now(tz="UTC")))
    payload = b"".join(binary_copy_chunks(prices, data))
    copy_table = sa.Table("bench_copy", sa.MetaData(), *(sa.Column(c.name, c.type) for c in prices.columns))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_copy")
        conn.exec_driver_sql("CREATE TABLE bench_copy (LIKE tt_prices INCLUDING ALL)")
    start = time.perf_counter()
    with (
        engine.begin() as conn,
        conn.connection.driver_connection.cursor() as cursor,
        cursor.copy(copy_statement(conn, copy_table, data.column_names)) as copy,
    ):
        copy.write(payload)
    return len(bars) / (time.perf_counter() - start)  # committed, like the upserts


def bench_once(url: str, bars: pd.DataFrame) -> dict[str, float]:
    """One round on an empty database at `url`: fresh upsert, the same batch again, and the COPY yardstick."""
    engine = create_engine(url)
    upgrade(engine)
    fresh, first = rows_per_s(engine, bars)
    conflict, second = rows_per_s(engine, bars)
    assert first.inserted == second.unchanged == len(bars), (first, second)
    figures = {"fresh": fresh, "conflict": conflict}
    if engine.dialect.name == "postgresql":
        figures["copy_limit"] = copy_limit(engine, bars)
    engine.dispose()
    return figures


@contextmanager
def scratch_database(backend: str) -> Iterator[str]:
    """URL of an empty database, dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite"
        return
    with scratch_postgres(PG_ADMIN_URL, "tt_bench") as url:
        yield url


def main() -> None:
    bars = synthetic_bars()
    best: dict[str, float] = {}
    for round_ in range(1, ROUNDS + 1):
        for backend in ("postgres", "sqlite"):
            with scratch_database(backend) as url:
                figures = bench_once(url, bars)
            load = os.getloadavg()[0]
            print(
                f"round {round_} {backend:8s} (load {load:.1f}): "
                + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
            )
            for key, value in figures.items():
                name = f"{backend}_{key}_rows_per_s"
                best[name] = max(best.get(name, 0.0), value)
    results = {key: round(best[key]) for key in KEYS}
    for key, value in results.items():
        print(f"{key:34s} {value:>10,d}")
    write_results("ingest", results)


if __name__ == "__main__":
    main()
