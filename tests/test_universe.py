"""The universe is chosen on the training span only (issue 26, observation 6): a symbol missing bars in the
test period stays in the dataset, its missing bars are no-trade bars (no fill at a made-up price, the
position held at its last close) listed as test-period defects; a gap in the training span still leaves it
out, with one line naming the symbol and the dates."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tt_rl.baselines import BASELINES
from tt_rl.config import RLConfig
from tt_rl.env import build_env  # first: tensortrade through tt_rl.tensortrade_shell
from tt_rl.evaluate import gather, score_policies
from tt_rl.panel import Panel, aligned_closes, gap_defects, left_out, missing_runs, panel_from_frames
from tt_rl.synthetic import synthetic_bars
from tt_rl.walk_forward import Fold

N_BARS = 200
TEST_START = 140  # position of the first test bar in the bars' grid
GAP = slice(160, 166)  # 6 bars of "UNH" missing inside the test period


def _without(bars: pd.DataFrame, symbol: str, positions: slice) -> pd.DataFrame:
    """`bars` minus `symbol`'s bars at `positions` of the bar grid."""
    ts = np.sort(bars["ts"].unique())[positions]
    return bars[~((bars["symbol"] == symbol) & bars["ts"].isin(ts))].reset_index(drop=True)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_bars(["AAA", "BBB", "UNH"], n_bars=N_BARS, seed=4)


@pytest.fixture(scope="module")
def grid(bars) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.sort(bars["ts"].unique()))


@pytest.fixture(scope="module")
def panel(bars, grid) -> Panel:
    return panel_from_frames("1d", _without(bars, "UNH", GAP), test_start=grid[TEST_START])


def test_missing_runs_are_the_runs_of_true_per_column():
    missing = np.zeros((8, 2), bool)
    missing[2:5, 0] = missing[7, 0] = missing[0, 1] = True
    assert missing_runs(missing) == [(0, 2, 4), (0, 7, 7), (1, 0, 0)]
    assert missing_runs(np.zeros((3, 2), bool)) == []


def test_left_out_judges_the_training_span_only(bars, grid):
    day = "%Y-%m-%d"
    in_test = aligned_closes(_without(bars, "UNH", GAP))
    assert left_out(in_test, "1d", 3, grid[TEST_START]) == {}
    # the same gap with the whole window as training span: left out, named with its dates
    assert left_out(in_test, "1d", 3) == {
        "UNH": f"no bars {grid[160]:{day}}..{grid[165]:{day}} (6 bars) in the training span, more than 3 "
        "carried forward"
    }
    # a gap running on into the test period counts only with its bars before the test start
    straddling = aligned_closes(_without(bars, "UNH", slice(TEST_START - 3, TEST_START + 10)))
    assert left_out(straddling, "1d", 3, grid[TEST_START]) == {}
    assert "(4 bars) in the training span" in left_out(straddling, "1d", 3, grid[TEST_START + 1])["UNH"]
    # bars that end in the training span: where it ends and where the others end, not the last bar twice
    ended = aligned_closes(_without(bars, "UNH", slice(100, None)))
    assert left_out(ended, "1d", 3, grid[TEST_START]) == {
        "UNH": f"ends {grid[99]:{day}}, the others {grid[-1]:{day}}"
    }
    # ending in the test period: kept (its last bars are no-trade bars)
    assert left_out(aligned_closes(_without(bars, "UNH", slice(190, None))), "1d", 3, grid[TEST_START]) == {}


def test_the_span_policy_does_not_look_at_the_test_period(bars, grid):
    from tt_pipeline.datasets import uneven_spans

    ends_in_test = _without(bars, "UNH", slice(190, None))
    for policy in ("drop_short", "common_span"):
        kept, dropped, note = uneven_spans(ends_in_test, policy, 3, grid[TEST_START])
        assert len(kept) == len(ends_in_test) and dropped == {} and note is None
    ends_in_training = _without(bars, "UNH", slice(100, None))
    kept, dropped, _ = uneven_spans(ends_in_training, "drop_short", 3, grid[TEST_START])
    assert list(dropped) == ["UNH"] and dropped["UNH"].startswith(
        f"ends {grid[99]:%Y-%m-%d} (100 bars before"
    )
    kept, dropped, note = uneven_spans(ends_in_training, "common_span", 3, grid[TEST_START])
    assert kept["ts"].max() == grid[99] and note.startswith("common span")


def test_a_gap_in_the_training_span_leaves_the_symbol_out_with_one_line(bars, grid, caplog):
    gapped = _without(bars, "UNH", slice(60, 65))
    with caplog.at_level(logging.WARNING, logger="tt_rl.panel"):
        panel = panel_from_frames("1d", gapped, test_start=grid[TEST_START])
    assert panel.symbols == ("AAA", "BBB")
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        f"dropping 1 symbol(s): UNH no bars {grid[60]:%Y-%m-%d}..{grid[64]:%Y-%m-%d} (5 bars) in the training "
        "span, more than 3 carried forward"
    )


def test_a_gap_in_the_test_period_is_kept_as_no_trade_bars(panel, grid):
    assert panel.symbols == ("AAA", "BBB", "UNH")
    j = panel.symbols.index("UNH")
    rows = panel.index.get_indexer(grid[GAP])
    assert (rows >= 0).all() and panel.missing[:, j].sum() == 6 and panel.missing[rows, j].all()
    assert not panel.missing[:, :j].any()
    before = rows[0] - 1
    assert (panel.prices[rows, j] == panel.prices[before, j]).all()  # held at its last close
    assert (panel.opens[rows, j] == panel.prices[before, j]).all()
    assert (panel.features[rows, j] == panel.features[before, j]).all()
    assert not np.isnan(panel.features).any()
    day = "%Y-%m-%d"
    split = int(panel.index.searchsorted(grid[TEST_START]))
    expected = f"no bars {grid[160]:{day}}..{grid[165]:{day}} (6 bars): no trades, held at its last close"
    assert gap_defects(panel, split) == {"UNH": expected}
    assert gap_defects(panel, split, rows[0]) == {}  # a window that ends before the gap
    assert gap_defects(panel, rows[-1] + 1) == {}


def test_the_missing_bars_are_part_of_the_content_and_survive_a_save(panel, tmp_path):
    loaded = Panel.load(panel.save(tmp_path / "p.npz"))
    assert (loaded.missing == panel.missing).all() and loaded.version == panel.version
    unmarked = dataclasses.replace(panel, missing=None)
    assert not unmarked.missing.any() and unmarked.version != panel.version


def test_an_untradable_position_is_neither_traded_nor_financed():
    """trade_and_mark with the third asset on a no-trade bar: it keeps its value; the others' targets shrink
    so the book's gross weight stays the target's (1.0), not 1.0 plus the held 20 % bought on credit."""
    from tt_rl.kernels import trade_and_mark

    out = np.zeros((3, 1, 3))
    values, target, cost = np.array([30.0, 50.0, 20.0]), np.array([0.5, 0.5, 0.0]), 0.001
    cash, worth, _, traded, rebalanced = trade_and_mark(
        values, 0.0, 100.0, 100.0, target, 0.0, cost, np.ones(3), True, out, 0, np.array([1.0, 1.0, 0.0])
    )
    moved, _, trades = out[:, 0]
    assert rebalanced and trades[2] == 0.0 and moved[2] == 20.0
    assert moved[0] == pytest.approx(moved[1], rel=2e-3) and moved[0] == pytest.approx(40.0, rel=2e-3)
    assert 0.0 <= cash < 1e-9 + cost * traded and worth == pytest.approx(100.0 - cost * traded)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_no_fill_on_a_bar_that_does_not_exist(panel, fill):
    """Every step asks for other weights; the gapped symbol trades on none of the steps whose fill bar it lacks
    (next open: bar t+1, close: bar t), keeps its value there (marked at its last close) and trades again
    once its bars resume; the other symbols trade throughout."""
    config = RLConfig()
    config.env = dataclasses.replace(
        config.env, random_start=False, max_episode_steps=None, fill=fill, no_trade_band=0.0
    )
    state = build_env(panel, config, weights_action=True).state
    j = panel.symbols.index("UNH")
    missing = panel.missing[:, j]
    state.reset(100, len(panel) - 1)
    targets = np.array([[0.5, 0.1, 0.3], [0.1, 0.4, 0.2]])  # every weight changes at every step
    trades, values = [], []
    while state.t < state.end:
        fill_bar = state.t + 1 if fill == "next_open" else state.t
        before = state.portfolio.values[j]
        state.execute(targets[state.t % 2])
        trades.append((fill_bar, state.portfolio.trades.copy()))
        values.append((state.t, before, state.portfolio.values[j]))
    on_gap = [traded for bar, traded in trades if missing[bar]]
    assert len(on_gap) == 6
    assert all(traded[j] == 0.0 for traded in on_gap)
    assert all((traded[:j] != 0.0).all() for traded in on_gap)  # the others trade on those bars
    assert all(traded[j] != 0.0 for bar, traded in trades if not missing[bar])
    # held at its last close: a step that moves onto a missing bar (fill = next open) leaves its value
    if fill == "next_open":
        held = [(b, a) for t, b, a in values if missing[t]]
        assert len(held) == 6 and all(after == before > 0 for before, after in held)


def test_the_evaluation_lists_the_gap_under_its_test_period_defects(panel, grid):
    config = RLConfig()
    split = int(panel.index.searchsorted(grid[TEST_START]))
    fold = Fold(0, 0, split - 1, split, len(panel) - 1)
    runs = score_policies(panel, config, fold, BASELINES)
    runs += score_policies(panel, config, fold, BASELINES, span="train")
    evaluation = gather(runs, panel, initial_cash=config.env.initial_cash)
    assert list(evaluation.test_defects) == ["UNH"]
    assert evaluation.test_defects["UNH"].startswith(f"no bars {grid[160]:%Y-%m-%d}..")
    early = Fold(0, 0, split - 1, split, split + 10)  # a window before the gap
    runs = score_policies(panel, config, early, BASELINES)
    runs += score_policies(panel, config, early, BASELINES, span="train")
    assert gather(runs, panel, initial_cash=config.env.initial_cash).test_defects == {}


SESSIONS = ("2025-01-02", "2025-09-30")


def test_the_reported_case_six_sessions_missing_in_the_test_period(sqlite_engine, tmp_path):
    """Issue 26, observation 6, on the database: UNH without 6 sessions inside the test period stays in the
    dataset (tt train's, Dagster's and the demo's build_dataset), its gap named in the test-period defects,
    also of the dataset loaded for training and evaluation; the same kind of gap before the split leaves it
    out with its dates."""
    from tt_pipeline.datasets import build_dataset, load_dataset
    from tt_pipeline.market import refresh_partitions
    from tt_resources.db.schema import features, prices
    from tt_resources.sources.synthetic import SyntheticSource
    from tt_resources.watchlist import Listing

    symbols = ["AAA", "BBB", "UNH"]
    start, end = (pd.Timestamp(d, tz="UTC") for d in SESSIONS)
    refresh_partitions(
        sqlite_engine, SyntheticSource(), [Listing(s) for s in symbols], "1d", start=start, end=end
    )
    with sqlite_engine.connect() as conn:
        stored = pd.DatetimeIndex(
            pd.to_datetime(
                conn.execute(sa.select(prices.c.ts).where(prices.c.symbol == "UNH").order_by(prices.c.ts))
                .scalars()
                .all(),
                utc=True,
            )
        )

    def remove(sessions: pd.DatetimeIndex) -> None:
        with sqlite_engine.begin() as conn:
            for table in (prices, features):
                removed = conn.execute(
                    sa.delete(table).where(
                        table.c.symbol == "UNH", table.c.ts.in_([t.to_pydatetime() for t in sessions])
                    )
                )
                assert removed.rowcount == len(sessions)

    in_test = stored[-30:-24]
    remove(in_test)
    dataset = build_dataset(sqlite_engine, "1d", symbols, test_fraction=0.3, data_dir=tmp_path)
    assert dataset.row["split_ts"] < in_test[0]
    assert dataset.panel.symbols == tuple(symbols) and dataset.excluded == {}
    gap = f"no bars {in_test[0]:%Y-%m-%d}..{in_test[-1]:%Y-%m-%d} (6 bars): no trades, held at its last close"
    assert gap in dataset.test_defects["UNH"]
    assert load_dataset(sqlite_engine, dataset.version).test_defects == {"UNH": gap}

    ended = stored[-8:]  # its bars end inside the test period (a delisting, known only from the test period)
    remove(ended)
    dataset = build_dataset(sqlite_engine, "1d", symbols, test_fraction=0.3, data_dir=tmp_path)
    assert dataset.panel.symbols == tuple(symbols) and dataset.excluded == {}
    assert dataset.panel.index[-1] == ended[-1]  # the others keep the whole test period
    tail = f"no bars {ended[0]:%Y-%m-%d}..{ended[-1]:%Y-%m-%d} (8 bars)"
    assert load_dataset(sqlite_engine, dataset.version).test_defects == {
        "UNH": f"{gap.split(':')[0]}; {tail}: no trades, held at its last close"
    }
    common = build_dataset(
        sqlite_engine, "1d", symbols, test_fraction=0.3, data_dir=tmp_path, span_policy="common_span"
    )
    assert common.panel.index[-1] == ended[-1] and common.span_note is None

    in_training = stored[40:45]
    remove(in_training)
    dataset = build_dataset(sqlite_engine, "1d", symbols, test_fraction=0.3, data_dir=tmp_path)
    assert dataset.panel.symbols == ("AAA", "BBB")
    assert dataset.excluded == {
        "UNH": f"no bars {in_training[0]:%Y-%m-%d}..{in_training[-1]:%Y-%m-%d} (5 bars) in the training span, "
        "more than 3 carried forward"
    }
