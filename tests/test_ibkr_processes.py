"""One IBKR pacing budget for every process: two real `tt ingest --source ibkr` processes at once, against one
stand-in that enforces IBKR's rules over both client connections, record no violation and store every bar
once (the budget lives in the shared database)."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from tests.fake_ibgateway import FakeIBGateway, Faults, pacing_breaks
from tests.test_concurrent_start import assert_all_succeeded, run_together
from tt_resources import calendar
from tt_resources.db.engine import create_engine
from tt_resources.db.prices import read_bars
from tt_resources.sources.pacing import PacingRules

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

RULES = PacingRules(mode="strict", max_requests=6, window_s=3.0)  # IBKR's identical and per-contract rules


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_share_the_pacing_budget(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'tt.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    gateway = FakeIBGateway(now, rules=RULES)
    gateway.faults = Faults(
        answer_after_clients=2
    )  # both processes connected before any answer: they overlap
    gateway.start()
    start = (now - pd.Timedelta(days=45)).normalize()
    # --end today (00:00 UTC): the processes' target bar cannot move if an hourly bar closes while they run
    cutoff = now.normalize()
    env = {
        "DATABASE_URL": url,
        "TT_DATA_DIR": str(tmp_path / "data"),
        "IB_PORT": str(gateway.port),
        "IB_CLIENT_ID": "40",
        "IB_TIMEOUT_S": "600",  # the first process's requests wait for the second to connect
        "TT_IB_PACING": "strict",
        "TT_IB_MAX_REQUESTS": str(RULES.max_requests),
        "TT_IB_WINDOW_S": str(RULES.window_s),
    }
    args = ["ingest", "--source", "ibkr", "--symbols", "AAPL,MSFT", "--timeframe", "1h"]
    try:
        results = run_together(
            [*args, "--start", f"{start:%Y-%m-%d}", "--end", f"{cutoff:%Y-%m-%d}"], env, tmp_path
        )
    finally:
        gateway.stop()
    assert_all_succeeded(results)
    historical = gateway.historical()
    assert {r.client_id for r in historical} == {40, 41}  # two connections, one gateway
    assert not gateway.violations(), [
        (round(r.at - historical[0].at, 3), r.client_id, r.symbol, r.end, r.outcome) for r in historical
    ]
    # the rules held across both connections: identical requests 15 s apart, <= 6 in any 3 s
    assert not pacing_breaks(historical, RULES)
    assert any(a.client_id != b.client_id for a, b in itertools.pairwise(historical))
    engine = create_engine(url)
    end = calendar.last_closed_bar("1h", cutoff) + pd.Timedelta(seconds=1)
    for symbol in ("AAPL", "MSFT"):
        stored = read_bars(engine, [symbol], "1h")
        expected = gateway.expected(symbol, "1h", start, end)
        assert list(stored["ts"]) == list(expected["ts"])
        assert stored["close"].to_list() == pytest.approx(expected["close"].to_list())
    engine.dispose()
