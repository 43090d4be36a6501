"""The CLI's instance (tt_assets.launch.open_instance) writes Dagster's default SQLite event log through
pooled engines; the files stay Dagster's own, read back by a default instance (`dagster dev`)."""

from __future__ import annotations

import dagster as dg

from tt_assets.dagster_fence import OPEN_FILES, PooledSqliteEventLogStorage, SqliteEventLogStorage
from tt_assets.launch import open_instance


def test_events_stored_by_the_cli_instance_are_read_by_a_default_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with open_instance() as instance:
        assert type(instance.event_log_storage) is PooledSqliteEventLogStorage
        for n in range(3):
            instance.report_runless_asset_event(
                dg.AssetMaterialization("prices", partition=f"p{n}", metadata={"n": n})
            )
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as reader:
        assert type(reader.event_log_storage) is SqliteEventLogStorage
        assert sorted(reader.get_materialized_partitions(dg.AssetKey("prices"))) == ["p0", "p1", "p2"]


def test_the_pool_keeps_at_most_open_files_engines(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with open_instance() as instance:
        storage = instance.event_log_storage
        for n in range(OPEN_FILES + 3):  # a shard per run id
            with storage.run_connection(f"run{n}"):
                pass
        assert len(storage._engines) == OPEN_FILES
        assert f"run{OPEN_FILES + 2}" in storage._engines and "run0" not in storage._engines
