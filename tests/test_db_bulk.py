"""Generic bulk writers on both backends: every column type, transactions, upsert counts, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tt_resources.db import insert_frame, read_frame, upsert_frame
from tt_resources.db.schema import contracts, episodes, fetch_log

T0 = pd.Timestamp("2024-05-01 13:30:00.123456", tz="UTC")


def episode_rows(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "episode_id": [f"ep{i}" for i in range(n)],
            "model_id": ["m1", None, "m1"][:n],
            "split": "test",
            "policy": "ppo",
            "window": pd.array([0, None, 2][:n], dtype="Int64"),
            "status": "finished",
            "started_at": [T0 + pd.Timedelta(minutes=i) for i in range(n)],
            "finished_at": [T0, pd.NaT, T0][:n],
            "steps": [10, 20, 30][:n],
            "final_net_worth": [1.5, np.nan, 1e300][:n],
            "terminated": [True, False, None][:n],
            "symbols": [["A", "AA"], [], None][:n],
            "config": [{"lr": 3e-4, "nested": {"x": [1, 2]}}, {}, np.nan][:n],  # NaN: missing, stored NULL
        }
    )


def core_rows(engine, table: sa.Table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def test_insert_frame_round_trips_every_column_type(engine):
    assert insert_frame(engine, episodes, episode_rows()) == 3
    rows = core_rows(engine, episodes)
    assert [r["episode_id"] for r in rows] == ["ep0", "ep1", "ep2"]
    first, second, third = rows
    assert first["started_at"] == T0.to_pydatetime() and first["started_at"].utcoffset().total_seconds() == 0
    assert second["finished_at"] is None and second["model_id"] is None and second["window"] is None
    assert first["window"] == 0 and third["window"] == 2 and third["steps"] == 30
    assert second["final_net_worth"] is None and third["final_net_worth"] == 1e300
    assert first["terminated"] is True and second["terminated"] is False and third["terminated"] is None
    assert first["symbols"] == ["A", "AA"] and second["symbols"] == [] and third["symbols"] is None
    assert first["config"] == {"lr": 3e-4, "nested": {"x": [1, 2]}}
    assert second["config"] == {} and third["config"] is None


def test_insert_frame_joins_the_callers_transaction(engine):
    with engine.connect() as conn:
        with conn.begin() as tx:
            insert_frame(conn, episodes, episode_rows())
            tx.rollback()
        assert conn.execute(sa.select(sa.func.count()).select_from(episodes)).scalar() == 0


def test_failed_insert_writes_nothing(engine):
    rows = episode_rows()
    rows.loc[2, "status"] = None  # NOT NULL violation on the last row
    with pytest.raises(Exception, match=r"(?i)null"):
        insert_frame(engine, episodes, rows)
    assert core_rows(engine, episodes) == []


def test_unknown_column_lists_the_valid_ones(engine):
    with pytest.raises(
        ValueError, match=r"tt_episode has no column\(s\) colour; valid: episode_id, model_id"
    ):
        insert_frame(engine, episodes, episode_rows().assign(colour="red"))


def test_naive_timestamps_are_refused(engine):
    rows = episode_rows()
    rows["started_at"] = rows["started_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="'started_at' holds naive timestamps"):
        insert_frame(engine, episodes, rows)


def contract_rows(long_names: list[str | None], at: str = "2024-01-01") -> pd.DataFrame:
    n = len(long_names)
    return pd.DataFrame(
        {
            "symbol": ["A", "AA", "BRK.B"][:n],
            "con_id": [1, 2, 2**40][:n],
            "sec_type": "STK",
            "exchange": "SMART",
            "currency": "USD",
            "long_name": long_names,
            "qualified_at": pd.Timestamp(at, tz="UTC"),
        }
    )


def test_upsert_frame_counts_inserts_updates_and_unchanged(engine):
    first = upsert_frame(
        engine, contracts, contract_rows(["Agilent", "Alcoa"]), ["symbol"], audit_columns=["qualified_at"]
    )
    assert (first.rows, first.inserted, first.updated, first.unchanged) == (2, 2, 0, 0)
    again = contract_rows(["Agilent", None, "Berkshire"], at="2024-06-01")
    result = upsert_frame(engine, contracts, again, ["symbol"], audit_columns=["qualified_at"])
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (3, 1, 1, 1)
    rows = {r["symbol"]: r for r in core_rows(engine, contracts)}
    assert rows["AA"]["long_name"] is None and rows["BRK.B"]["con_id"] == 2**40
    # the audit column moves only with a real change
    assert rows["A"]["qualified_at"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert rows["AA"]["qualified_at"] == pd.Timestamp("2024-06-01", tz="UTC")


def test_upsert_frame_rejects_duplicate_keys_before_writing(engine):
    rows = pd.concat([contract_rows(["Agilent"]), contract_rows(["Agilent again"])])
    with pytest.raises(ValueError, match="duplicate key inside the batch \\(symbol=A\\)"):
        upsert_frame(engine, contracts, rows, ["symbol"])
    assert core_rows(engine, contracts) == []


def test_read_frame_converts_timestamps_and_integers(engine):
    log = pd.DataFrame(
        {
            "symbol": ["A", "AA"],
            "timeframe": "1d",
            "source": "ibkr",
            "request": "historical",
            "end_ts": [T0, pd.NaT],
            "outcome": "ok",
            "error_code": pd.array([None, 162], dtype="Int64"),
            "bars": [5, 0],
            "requested_at": T0,
        }
    )
    insert_frame(engine, fetch_log, log)
    frame = read_frame(engine, sa.select(fetch_log).order_by(fetch_log.c.id))
    assert str(frame["requested_at"].dtype) == "datetime64[us, UTC]"
    assert frame["end_ts"].tolist()[0] == T0 and pd.isna(frame["end_ts"].iloc[1])
    assert frame["error_code"].tolist() == [pd.NA, 162] and frame["id"].tolist() == [1, 2]


def test_sqlite_stores_sqlalchemy_datetime_text(sqlite_engine):
    insert_frame(sqlite_engine, episodes, episode_rows(1))
    with sqlite_engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT started_at, finished_at FROM tt_episode").one()
    assert tuple(raw) == ("2024-05-01 13:30:00.123456", "2024-05-01 13:30:00.123456")


def test_large_batches_span_many_statements(engine):
    """More rows than one multi-row statement holds (full blocks plus a remainder), counted exactly."""
    n = 1234
    frame = pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)],
            "con_id": range(n),
            "sec_type": "STK",
            "exchange": "SMART",
            "currency": "USD",
            "qualified_at": T0,
        }
    )
    assert insert_frame(engine, contracts, frame.iloc[:500]) == 500
    changed = frame.assign(con_id=frame["con_id"].where(frame.index % 100 != 0, -1))
    result = upsert_frame(engine, contracts, changed, ["symbol"])
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (n, n - 500, 5, 495)
    stored = read_frame(
        engine, sa.select(contracts.c.symbol, contracts.c.con_id).order_by(contracts.c.con_id)
    )
    assert len(stored) == n and (stored["con_id"] == -1).sum() == 13


def test_read_frame_keeps_json_lists_as_cells(engine):
    rows = episode_rows(2).assign(symbols=[["A", "AA"], ["F", "T"]], finished_at=T0)
    insert_frame(engine, episodes, rows)
    frame = read_frame(engine, sa.select(episodes).order_by(episodes.c.episode_id))
    assert frame["symbols"].tolist() == [["A", "AA"], ["F", "T"]]
    assert frame["window"].tolist() == [0, pd.NA] and frame["terminated"].tolist() == [True, False]
    assert frame["final_net_worth"].isna().tolist() == [False, True]


def test_array_cells_are_stored_as_json_arrays(engine):
    """float32 rows go in as JSON arrays in one vectorised pass: shortest float32 digits, NaN/inf as null."""
    rows = np.array([[0.1, -0.0, 1e-8], [np.nan, np.inf, 2.5]], dtype=np.float32)
    frame = episode_rows(2).assign(symbols=list(rows), finished_at=T0)
    insert_frame(engine, episodes, frame)
    stored = read_frame(engine, sa.select(episodes.c.symbols).order_by(episodes.c.episode_id))["symbols"]
    assert stored.tolist() == [[0.1, 0.0, 1e-8], [None, None, 2.5]]
    assert np.array_equal(np.array(stored[0], dtype=np.float32), rows[0])


def test_generated_ids_follow_the_frame_order(engine):
    """Rows with different NULL patterns and text lengths still get ids in frame order (COPY on PostgreSQL)."""
    n = 40
    log = pd.DataFrame(
        {
            "symbol": ["A", "AA", "BRK.B", "F"] * (n // 4),
            "timeframe": "1h",
            "source": "ibkr",
            "request": "historical",
            "outcome": ["ok", "pacing", "no_data", "ok"] * (n // 4),
            "error_code": pd.array([None, 162, None, None] * (n // 4), dtype="Int64"),
            "message": [None, "x" * 30, "", "pacing violation"] * (n // 4),
            "bars": range(n),
            "requested_at": T0,
        }
    )
    insert_frame(engine, fetch_log, log)
    stored = read_frame(engine, sa.select(fetch_log.c.id, fetch_log.c.bars).order_by(fetch_log.c.id))
    assert stored["bars"].tolist() == list(range(n))
