"""Walk-forward folds, their training and scoring, the gather step and its significance columns, hit rate.

Real PPO (tiny budgets) on a synthetic panel, real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tt_resources.db import registry
from tt_resources.db.schema import episodes, evals, models
from tt_rl.config import RLConfig, RLConfigError
from tt_rl.metrics import hit_rate, performance
from tt_rl.panel import panel_from_frames
from tt_rl.synthetic import synthetic_bars
from tt_rl.walk_forward import plan_folds


@pytest.mark.parametrize("scheme", ["anchored", "rolling"])
@pytest.mark.parametrize(
    ("n_bars", "first_test", "n_folds", "embargo"), [(200, 140, 3, 10), (500, 300, 7, 25)]
)
def test_no_fold_trains_at_or_after_its_test_start_minus_the_embargo(
    scheme, n_bars, first_test, n_folds, embargo
):
    folds = plan_folds(n_bars, first_test, n_folds, embargo=embargo, min_train=12, scheme=scheme)
    assert [f.index for f in folds] == list(range(n_folds))
    assert folds[0].test_start == first_test and folds[-1].test_end == n_bars - 1
    for before, after in itertools.pairwise(folds):
        assert after.test_start == before.test_end  # returns stitch without gap or overlap
    for fold in folds:
        last_training_bar = fold.train_stop - 1
        assert last_training_bar < fold.test_start - embargo  # `embargo` bars strictly between
        assert fold.test_end - fold.test_start >= 2
        if scheme == "anchored":
            assert fold.train_start == 0
        else:
            assert fold.train_bars == folds[0].train_bars
    if scheme == "anchored":  # refits on the data before each window: later folds see more
        assert [f.train_stop for f in folds] == sorted({f.train_stop for f in folds})


def test_plan_folds_refuses_too_little_data():
    with pytest.raises(ValueError, match=r"test period has 5 bar\(s\).*need at least 6 for 3 fold"):
        plan_folds(100, 94, 3, embargo=10, min_train=12)
    with pytest.raises(ValueError, match=r"first fold would train on 8 bar\(s\).*need at least 12"):
        plan_folds(100, 18, 3, embargo=10, min_train=12)


def test_eval_config_rules():
    with pytest.raises(RLConfigError, match=r"eval\.embargo: must be >= env.window_size = 10 \(got 4\)"):
        RLConfig.from_dict({"env": {"window_size": 10}, "eval": {"embargo": 4}})
    with pytest.raises(RLConfigError, match=r"eval\.oracle: must be 'sign_persistence', .*\(got 'nope'\)"):
        RLConfig.from_dict({"eval": {"oracle": "nope"}})
    with pytest.raises(RLConfigError, match=r"eval\.scheme"):
        RLConfig.from_dict({"eval": {"scheme": "expanding"}})
    assert RLConfig.from_dict({"env": {"window_size": 10}}).embargo == 10  # default: the observation window
    assert RLConfig.from_dict({"eval": {"embargo": 12}}).embargo == 12


def test_a_named_oracle_is_scored_beside_the_baselines():
    from tt_pipeline.models import policies
    from tt_rl.baselines import BASELINES
    from tt_rl.planted import ORACLES

    chosen = policies(RLConfig.from_dict({"eval": {"oracle": "sign_persistence"}}))
    assert chosen == {**BASELINES, "oracle": ORACLES["sign_persistence"]}
    assert policies(RLConfig()) == BASELINES


def test_hit_rate_counts_invested_steps_only():
    returns = np.array([0.0, 0.0, 0.01, -0.02, 0.03, 0.0])
    invested = np.array([False, False, True, True, True, False])
    assert hit_rate(returns, invested) == pytest.approx(2 / 3)  # flat steps are no losses
    assert math.isnan(hit_rate(np.zeros(5), np.zeros(5, dtype=bool)))  # never invested
    assert performance(returns, 252, invested=invested)["hit_rate"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def panel():
    return panel_from_frames("1d", synthetic_bars(["A", "AA", "B"], n_bars=220, seed=7))


def _tiny(**eval_settings) -> RLConfig:
    cfg = RLConfig()
    cfg.env.max_episode_steps = 40
    cfg.env.long_only = False  # the untrained policy's small scores trade (long-only clips half of them)
    cfg.env.no_trade_band = 0.0
    cfg.ppo.total_timesteps = 128
    cfg.ppo.n_steps = 64
    cfg.ppo.batch_size = 32
    cfg.ppo.n_epochs = 1
    cfg.ppo.progress_bar = False
    cfg.logging.flush_every = 64
    cfg.eval.n_folds = 2
    cfg.eval.seeds = 2
    for key, value in eval_settings.items():
        setattr(cfg.eval, key, value)
    return cfg


def _register(engine, panel, tmp_path, test_fraction=0.4) -> str:
    from tt_pipeline.datasets import dataset_version

    split = panel.test_start(test_fraction)
    version = dataset_version(panel.version, test_fraction, split)
    registry.record_dataset(
        engine,
        {
            "dataset_version": version,
            "timeframe": panel.timeframe,
            "symbols": list(panel.symbols),
            "start_ts": panel.index[0],
            "end_ts": panel.index[-1],
            "split_ts": split,
            "n_bars": len(panel),
            "path": str(panel.save(tmp_path / "panel.npz")),
            "created_at": datetime.now(UTC),
            "content_version": panel.version,
            "test_fraction": test_fraction,
        },
    )
    return version


def test_walk_forward_trains_each_fold_before_its_window_and_stitches(engine, panel, tmp_path, monkeypatch):
    from tt_pipeline.models import evaluate_model, train_walk_forward

    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))

    version = _register(engine, panel, tmp_path)
    cfg = _tiny()
    trained = train_walk_forward(engine, version, cfg, run_id="run-1", model_dir=tmp_path / "models")
    assert len(trained.members) == 4 and trained.total_timesteps == 4 * 128

    with engine.connect() as conn:
        rows = conn.execute(sa.select(models).order_by(models.c.fold, models.c.seed)).mappings().all()
    group = [r for r in rows if r["group_id"] is None]
    members = [r for r in rows if r["group_id"] is not None]
    assert [g["model_id"] for g in group] == [trained.model_id]
    assert [(m["fold"], m["seed"]) for m in members] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    index = panel.index
    for member in members:
        test_start = index.get_loc(pd.Timestamp(member["test_start"]))
        train_end = index.get_loc(pd.Timestamp(member["train_end"]))
        assert train_end < test_start - cfg.embargo  # never on a bar at or after test start - embargo
        assert member["train_start"] == index[0]  # anchored
    assert members[2]["train_end"] > members[0]["train_end"]  # the second fold refits on more data

    result = evaluate_model(engine, trained.model_id, run_id="run-1")
    assert (tmp_path / "reports" / f"{trained.model_id}-run-1.html").is_file()  # the evaluation's tear sheet
    metrics = result.metrics
    assert set(metrics["policy"]) == {"ppo", "equal_weight", "equal_weight_vol", "cash"}
    ppo = metrics[metrics["policy"] == "ppo"]
    # per fold and seed, stitched per seed, and the summary over seeds
    assert sorted(zip(ppo["fold"], ppo["seed"], strict=True)) == [
        (-1, -1), (-1, 0), (-1, 1), (0, 0), (0, 1), (1, 0), (1, 1)
    ]  # fmt: skip
    cash = metrics[metrics["policy"] == "cash"]
    assert sorted(cash["fold"]) == [-1, 0, 1] and set(cash["seed"]) == {-1}
    assert math.isnan(cash.loc[cash["fold"] == -1, "hit_rate"].iloc[0])  # never invested
    assert math.isnan(cash.loc[cash["fold"] == -1, "psr"].iloc[0])  # no volatility: undefined

    seeds = ppo[(ppo["fold"] == -1) & (ppo["seed"] >= 0)]
    summary = ppo[(ppo["fold"] == -1) & (ppo["seed"] == -1)].iloc[0]
    # the summary is the seed ensemble's one series, its Sharpe ratio between the seeds' lowest and highest
    assert (
        summary["sharpe_seed_min"] == seeds["sharpe"].min()
        and summary["sharpe_seed_max"] == seeds["sharpe"].max()
    )
    assert summary["sharpe_ci_low"] < summary["sharpe"] < summary["sharpe_ci_high"]
    assert 0.0 <= summary["psr"] <= 1.0 and summary["n_trials"] == 1
    assert summary["dsr"] == pytest.approx(summary["psr"])  # one configuration tried: nothing to deflate
    assert summary["dsr_vs_best"] == pytest.approx(summary["psr_vs_best"])
    assert set(summary["best_baseline"].split(", ")) <= {"equal_weight", "equal_weight_vol", "cash"}
    assert summary["verdict"].startswith("Verdict: ") and seeds["verdict"].isna().all()
    first = seeds.iloc[0]
    # the stitched return is the folds' returns chained
    folds = ppo[(ppo["seed"] == first["seed"]) & (ppo["fold"] >= 0)].sort_values("fold")
    assert 1 + first["total_return"] == pytest.approx(np.prod(1 + folds["total_return"]))
    assert (
        folds["test_start"].iloc[0]
        == index[index.searchsorted(registry.dataset(engine, version)["split_ts"])]
    )
    assert folds["test_start"].iloc[1] == folds["test_end"].iloc[0]

    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(evals)).scalar()
        test_eps = conn.execute(sa.select(episodes).where(episodes.c.split == "test")).mappings().all()
    assert stored == len(metrics) == 7 + 3 * 3
    assert len(test_eps) == 4 + 2 * 3 and {e["status"] for e in test_eps} == {"finished"}
    ppo_eps = {(e["model_id"], e["window"]) for e in test_eps if e["policy"] == "ppo"}
    assert ppo_eps == {(m["model_id"], m["fold"]) for m in members}  # each fold's own model on its window
    assert registry.stitched_metrics(engine, trained.model_id)["policy"].tolist().count("ppo") == 1
    assert result.equity.columns.tolist() == ["ppo s0", "ppo s1", "equal_weight", "equal_weight_vol", "cash"]

    # a second configuration on the same dataset: two trials, the agent's Sharpe deflated
    other = _tiny()
    other.ppo.learning_rate = other.ppo.learning_rate / 2  # another configuration
    second = train_walk_forward(engine, version, other, run_id="run-2", model_dir=tmp_path / "models")
    deflated = evaluate_model(engine, second.model_id, run_id="run-2").metrics
    row = deflated[(deflated["policy"] == "ppo") & (deflated["fold"] == -1) & (deflated["seed"] == -1)].iloc[
        0
    ]
    assert row["n_trials"] == 2 and row["dsr"] < row["psr"] and row["dsr_vs_best"] < row["psr_vs_best"]
    assert deflated.loc[deflated["policy"] == "cash", "dsr"].isna().all()  # baselines were not searched

    # another base seed on another dataset version of the same bars (a moved split: overlapping data) is a
    # third trial: N is not reset by a new dataset version, and seed shopping is deflated
    moved = _register(engine, panel, tmp_path, test_fraction=0.35)
    reseeded = _tiny()
    reseeded.ppo.seed = 1
    third = train_walk_forward(engine, moved, reseeded, run_id="run-3", model_dir=tmp_path / "models")
    rows = evaluate_model(engine, third.model_id, run_id="run-3").metrics
    assert rows.loc[(rows["policy"] == "ppo") & (rows["seed"] == -1), "n_trials"].tolist() == [3]


def test_an_oracle_is_scored_like_a_baseline(panel):
    """A planted market's oracle (tt_rl.planted.ORACLES' signature) runs beside the baselines as "oracle"."""
    from tt_rl.baselines import BASELINES
    from tt_rl.evaluate import gather, score_policies

    def hold_last_winners(state) -> np.ndarray:  # target weights (N,) from the TradingState at the bar
        up = panel.prices[state.t] > panel.prices[state.t - 1]
        return up / max(up.sum(), 1) * 0.9

    cfg = _tiny()
    folds = plan_folds(len(panel), 150, 2, embargo=cfg.embargo, min_train=12)
    runs = [
        run
        for fold in folds
        for run in score_policies(panel, cfg, fold, {**BASELINES, "oracle": hold_last_winners})
    ]
    metrics = gather(runs, panel, initial_cash=cfg.env.initial_cash).metrics
    oracle = metrics[(metrics["policy"] == "oracle") & (metrics["fold"] == -1)].iloc[0]
    assert metrics["policy"].unique().tolist() == ["oracle", "equal_weight", "equal_weight_vol", "cash"]
    assert oracle["turnover"] > 0 and 0.0 <= oracle["hit_rate"] <= 1.0 and 0.0 <= oracle["psr"] <= 1.0


pytestmark = pytest.mark.slow
