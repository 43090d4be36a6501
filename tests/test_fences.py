"""The fence modules hold every use of a dependency's private API, refuse an unchecked version at import, and
what they rely on is still there (names, parameters in order, attributes)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from tt_resources.fences import UncheckedVersion, require_checked

ROOT = Path(__file__).resolve().parents[1]
# fence file -> (distribution, module)
FENCES = {
    "tt_resources/ib_fence.py": ("ib_async", "tt_resources.ib_fence"),
    "tt_assets/dagster_fence.py": ("dagster", "tt_assets.dagster_fence"),
    "tt_assets/celery_fence.py": ("dagster-celery", "tt_assets.celery_fence"),
    "tt_rl/tensortrade_shell.py": ("tensortrade", "tt_rl.tensortrade_shell"),
}
PRIVATE_USES = {
    "a dagster._ module": re.compile(r"\bdagster\._"),
    "a dagster_celery module other than its package": re.compile(r"\bdagster_celery\.\w"),
    "an ib_async module's internals": re.compile(r"\bib_async\.(client|wrapper|decoder|connection)\b"),
    "ib_async's client or wrapper object": re.compile(r"\.(client|wrapper)\.\w"),
    "tensortrade imported past its shell": re.compile(r"^\s*(from|import) tensortrade\b"),
}


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_private_apis_are_used_only_in_the_fence_modules():
    found = []
    for package in sorted(ROOT.glob("tt_*")):
        for path in sorted(package.rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in FENCES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                found += [
                    f"{relative}:{number}: {what}" for what, use in PRIVATE_USES.items() if use.search(line)
                ]
    assert found == []


@pytest.mark.parametrize(
    ("line", "private"),
    [
        ("from dagster._core.instance.ref import InstanceRef", True),
        ("from dagster_celery.tasks import create_task", True),
        ("from ib_async.wrapper import RequestError", True),
        ("req_id = ib.client.getReqId()", True),
        ("future = ib.wrapper.startReq(req_id)", True),
        ("import dagster as dg", False),
        ("from dagster_celery import celery_executor", False),
        ("from ib_async import IB, RequestError", False),
        ("ib.errorEvent += on_error", False),
        ("from tensortrade.env.generic import TradingEnv", True),
        ("from tt_rl.tensortrade_shell import TradingEnv", False),
    ],
)
def test_the_private_use_patterns_tell_private_from_public_uses(line, private):
    assert any(use.search(line) for use in PRIVATE_USES.values()) is private


def test_the_checked_release_series_passes_and_another_fails_in_one_line_naming_the_fence():
    require_checked("ib_async", "2.0", "tt_resources/ib_fence.py", installed="2.0.7")
    require_checked("ib_async", "2.0", "tt_resources/ib_fence.py", installed="2.0")
    for other in ("2.1.0", "2.00.1", "3.0"):
        with pytest.raises(UncheckedVersion) as raised:
            require_checked("ib_async", "2.0", "tt_resources/ib_fence.py", installed=other)
        assert str(raised.value) == (
            f"ib_async {other} is not the version tt_resources/ib_fence.py was checked against (2.0.x); "
            "re-check that file"
        )


@pytest.mark.parametrize("fence", FENCES)
def test_importing_a_fence_with_another_version_installed_fails_naming_the_fence(fence):
    distribution, module = FENCES[fence]
    pretend = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        f"m.version = lambda name: '99.0.0' if name == {distribution!r} else real(name)\n"
        f"import {module}\n"
    )
    run = subprocess.run([sys.executable, "-c", pretend], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1
    message = (
        rf"tt_resources\.fences\.UncheckedVersion: {distribution} 99\.0\.0 is not the version {re.escape(fence)} was "
        r"checked against \(\d+\.\d+\.x\); re-check that file"
    )
    assert re.fullmatch(message, run.stderr.strip().splitlines()[-1])
    assert (ROOT / fence).is_file()


# ---------------------------------------------------------------- ib_async (tt_resources/ib_fence.py)
def test_ib_async_client_and_wrapper_calls_keep_their_parameters():
    from ib_async.client import Client
    from ib_async.wrapper import Wrapper

    assert parameters(Client.getReqId) == ["self"]
    assert parameters(Client.reqHistoricalData) == [
        "self",
        "reqId",
        "contract",
        "endDateTime",
        "durationStr",
        "barSizeSetting",
        "whatToShow",
        "useRTH",
        "formatDate",
        "keepUpToDate",
        "chartOptions",
    ]
    assert parameters(Client.cancelHistoricalData) == ["self", "reqId"]
    assert parameters(Wrapper.startReq) == ["self", "key", "contract", "container"]
    assert parameters(Wrapper._endReq) == ["self", "key", "result", "success"]


def test_fail_request_ends_an_open_request_with_the_error():
    import asyncio

    from ib_async import IB, Contract
    from ib_async.wrapper import RequestError

    from tt_resources.ib_fence import fail_request

    async def ended() -> BaseException | None:
        ib = IB()
        future = ib.wrapper.startReq(7, Contract())
        fail_request(ib, 7, RequestError(7, 10167, "not subscribed"))
        fail_request(ib, 8, RequestError(8, 10167, "no such request"))  # not open: nothing
        return future.exception()

    error = asyncio.run(ended())
    assert isinstance(error, RequestError) and error.code == 10167


def test_the_account_summary_and_message_throttle_members_the_broker_relies_on_are_there():
    from eventkit import Event
    from ib_async import IB
    from ib_async.client import Client

    from tt_resources.ib_fence import limit_message_rate

    assert parameters(Client.reqAccountSummary) == ["self", "reqId", "groupName", "tags"]
    assert parameters(Client.cancelAccountSummary) == ["self", "reqId"]
    assert isinstance(IB().accountSummaryEvent, Event)
    # the client's throttle: at most MaxRequests messages per RequestsInterval seconds, the rest queued
    assert (Client.MaxRequests, Client.RequestsInterval) == (45, 1)
    throttle = inspect.getsource(Client.sendMsg)
    assert "self.MaxRequests" in throttle and "self.RequestsInterval" in throttle
    ib = IB()
    limit_message_rate(ib, 40, 2.0)
    assert (ib.client.MaxRequests, ib.client.RequestsInterval) == (40, 2.0)
    assert Client.MaxRequests == 45  # set on the connection's client, not the class


def test_an_ib_has_its_client_and_wrapper_and_the_client_an_api_error_event():
    from eventkit import Event
    from ib_async import IB
    from ib_async.client import Client
    from ib_async.wrapper import Wrapper

    from tt_resources.ib_fence import api_errors

    ib = IB()
    assert isinstance(ib.client, Client) and isinstance(ib.wrapper, Wrapper)
    assert isinstance(api_errors(ib), Event) and api_errors(ib).name() == "apiError"


# ---------------------------------------------------------------- Dagster (tt_assets/dagster_fence.py)
def test_the_sqlite_event_log_members_the_pooled_one_relies_on_are_there():
    from tt_assets.dagster_fence import SqliteEventLogStorage

    assert parameters(SqliteEventLogStorage.from_config_value) == ["inst_data", "config_value"]
    assert parameters(SqliteEventLogStorage.__init__) == ["self", "base_dir", "inst_data"]
    assert parameters(SqliteEventLogStorage._connect) == ["self", "shard"]
    assert parameters(SqliteEventLogStorage._initdb)[:2] == ["self", "engine"]
    assert parameters(SqliteEventLogStorage._has_asset_key_col_on_connection) == [
        "self",
        "conn",
        "column_name",
    ]
    assert parameters(SqliteEventLogStorage.has_table) == ["self", "table_name"]
    assert parameters(SqliteEventLogStorage.conn_string_for_shard) == ["self", "shard_name"]
    # every connection of the storage is opened through _connect (the one the pooled storage replaces)
    for opener in (SqliteEventLogStorage.run_connection, SqliteEventLogStorage.index_connection):
        assert "self._connect(" in inspect.getsource(opener)


def test_a_sqlite_event_log_has_the_lock_and_the_initialised_shards(tmp_path):
    import threading

    from tt_assets.dagster_fence import SqliteEventLogStorage

    storage = SqliteEventLogStorage(str(tmp_path))
    try:
        assert isinstance(storage._db_lock, type(threading.Lock()))
        assert isinstance(storage._initialized_dbs, set)
    finally:
        storage.dispose()


def test_the_dagster_names_the_fence_imports_keep_their_shape():
    from tt_assets import dagster_fence

    target = dagster_fence.AssetCheckEvaluationTargetMaterializationData(
        run_id="r", storage_id=3, timestamp=1.5
    )
    assert (target.run_id, target.storage_id, target.timestamp) == ("r", 3, 1.5)
    for module, name in (dagster_fence.SQLITE_EVENT_LOG, dagster_fence.SQLITE_UNIFIED_STORAGE):
        assert inspect.isclass(getattr(import_module(module), name))


def test_the_dagster_private_calls_keep_their_parameters():
    import click
    from dagster._cli import ENV_PREFIX, cli
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    assert parameters(ReconstructableRepository.for_module)[:3] == ["module", "fn_name", "working_directory"]
    assert parameters(ReconstructableRepository.get_reconstructable_job) == ["self", "name"]
    assert parameters(InstanceRef.from_dir)[0] == "base_dir"
    assert {"event_storage_data", "storage_data"} <= set(InstanceRef._fields)
    assert parameters(ConfigurableClassData) == ["module_name", "class_name", "config_yaml"]
    assert isinstance(cli, click.Group) and "dev" in cli.commands and ENV_PREFIX == "DAGSTER_CLI"


# ---------------------------------------------------------------- dagster-celery (tt_assets/celery_fence.py)
def test_the_dagster_celery_worker_parts_keep_their_parameters():
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    assert parameters(CeleryExecutor.for_cli) == ["broker", "backend", "include", "config_source"]
    assert parameters(CeleryExecutor.app_args) == ["self"]
    assert parameters(make_app) == ["app_args"]
    assert parameters(create_task)[0] == "celery_app"


def test_the_concurrency_slot_storage_keeps_the_methods_the_pool_helpers_call():
    """tt_assets.dagster_fence.pool_claims / free_pool_slots: EventLogStorage's pool methods, and what a
    pool's info holds (claimed slots and pending steps, each with its run id)."""
    from dagster._core.storage.event_log.base import EventLogStorage
    from dagster._utils.concurrency import ClaimedSlotInfo, ConcurrencyKeyInfo, PendingStepInfo

    assert isinstance(EventLogStorage.supports_global_concurrency_limits, property)
    assert parameters(EventLogStorage.get_concurrency_run_ids) == ["self"]
    assert parameters(EventLogStorage.get_concurrency_keys) == ["self"]
    assert parameters(EventLogStorage.get_concurrency_info) == ["self", "concurrency_key"]
    assert parameters(EventLogStorage.free_concurrency_slots_for_run) == ["self", "run_id"]
    assert {"claimed_slots", "pending_steps"} <= set(ConcurrencyKeyInfo.__annotations__)
    assert "run_id" in ClaimedSlotInfo.__annotations__
    assert "run_id" in PendingStepInfo.__annotations__
