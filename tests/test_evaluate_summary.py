"""tt_rl.evaluate.gather on hand-made runs (no environment): the agent's summary row is the seed ensemble's one
series, its best baseline is chosen on the training spans, and the verdict is stored with it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tt_rl.evaluate import NO_SEED, TRAIN, PolicyRun, best_baselines, gather
from tt_rl.metrics import performance
from tt_rl.panel import panel_from_frames
from tt_rl.significance import assess, sharpe_interval
from tt_rl.synthetic import synthetic_bars

FOLDS = {0: np.arange(101, 151), 1: np.arange(151, 201)}  # test bars moved to per fold
TRAIN_BARS = {0: np.arange(20, 95), 1: np.arange(20, 145)}


def _run(policy, fold, seed, bars, returns, span="test"):
    n = len(bars)
    return PolicyRun(policy, fold, seed, bars, returns, np.full(n, 0.01), np.ones(n, bool), 0.001, span=span)


@pytest.fixture(scope="module")
def evaluation():
    panel = panel_from_frames("1d", synthetic_bars(["A", "B"], n_bars=230, seed=1))
    rng = np.random.default_rng(5)
    runs = []
    for fold, bars in FOLDS.items():
        market = rng.normal(0.001, 0.01, len(bars))
        runs += [
            _run("equal_weight", fold, NO_SEED, bars, market),
            _run("cash", fold, NO_SEED, bars, 0 * market),
        ]
        runs += [_run("ppo", fold, seed, bars, market + rng.normal(0.0, 0.004, len(bars))) for seed in (0, 1)]
        # on the training span cash beat equal weight in fold 1: it is that fold's best baseline
        train = TRAIN_BARS[fold]
        runs += [
            _run(
                "equal_weight",
                fold,
                NO_SEED,
                train,
                np.full(len(train), 0.001 if fold == 0 else -0.001),
                TRAIN,
            ),
            _run("cash", fold, NO_SEED, train, np.zeros(len(train)), TRAIN),
        ]
    return panel, runs, gather(runs, panel, initial_cash=1000.0).metrics


def test_summary_is_computed_from_the_seed_ensemble_series(evaluation):
    _, runs, metrics = evaluation
    ppo = metrics[metrics["policy"] == "ppo"]
    seeds = ppo[(ppo["fold"] == -1) & (ppo["seed"] >= 0)]
    summary = ppo[(ppo["fold"] == -1) & (ppo["seed"] == -1)].iloc[0]
    seed_returns = [
        np.concatenate([r.returns for r in runs if r.policy == "ppo" and r.seed == s and r.span == "test"])
        for s in (0, 1)
    ]
    ensemble = np.mean(seed_returns, axis=0)  # one series: the mean of the seed portfolios per step
    assert summary["sharpe"] == pytest.approx(performance(ensemble, 252)["sharpe"])
    assert summary["sharpe"] != pytest.approx(seeds["sharpe"].mean())  # not an average of statistics
    best = np.concatenate([r.returns for r in runs if r.span == "test" and (r.policy, r.fold) in BEST])
    expected = assess(ensemble, best)
    for name in ("psr", "dsr", "psr_vs_best", "dsr_vs_best"):
        assert summary[name] == pytest.approx(getattr(expected, name)), name
    assert summary["sharpe_vs_best"] == pytest.approx(expected.sharpe_vs_best * math.sqrt(252))
    assert (summary["sharpe_ci_low"], summary["sharpe_ci_high"]) == pytest.approx(
        sharpe_interval(ensemble, 0.95, 252)
    )
    assert (summary["sharpe_seed_min"], summary["sharpe_seed_max"]) == (
        seeds["sharpe"].min(),
        seeds["sharpe"].max(),
    )
    assert summary["verdict"] == expected.verdict("Equal weight (buy & hold) / Cash", 252)


BEST = {("equal_weight", 0), ("cash", 1)}


def test_best_baseline_is_chosen_on_the_training_span(evaluation):
    _, _, metrics = evaluation
    ppo = metrics[metrics["policy"] == "ppo"]
    by_fold = dict(zip(ppo["fold"], ppo["best_baseline"], strict=True))
    assert by_fold == {0: "equal_weight", 1: "cash", -1: "equal_weight, cash"}
    assert metrics.loc[metrics["policy"] != "ppo", "best_baseline"].isna().all()


def test_an_agent_without_training_span_runs_is_refused(evaluation):
    panel, runs, _ = evaluation
    with pytest.raises(ValueError, match="no baseline runs on the training span"):
        gather([r for r in runs if r.span != TRAIN], panel, initial_cash=1000.0)


def test_best_baseline_is_the_best_sharpe_ratio_not_the_highest_mean_return():
    """The verdict compares Sharpe ratios (excess returns over the baseline levered to the agent's volatility),
    so the best baseline is chosen by Sharpe ratio: equal weight earns more per bar here, vol-targeted equal
    weight more per unit of risk."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((2, 75))
    z = (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)
    bars = TRAIN_BARS[0]
    runs = [
        _run("equal_weight", 0, NO_SEED, bars, 0.002 + 0.02 * z[0], span=TRAIN),  # Sharpe 0.1 per bar
        _run("equal_weight_vol", 0, NO_SEED, bars, 0.001 + 0.005 * z[1], span=TRAIN),  # 0.2 per bar
        _run("cash", 0, NO_SEED, bars, np.zeros(75), span=TRAIN),
    ]
    assert best_baselines(runs) == {0: "equal_weight_vol"}
    # a losing market: cash's undefined Sharpe ratio counts as 0 and wins
    losing = [dataclasses.replace(r, returns=r.returns - 0.01) for r in runs[:2]] + runs[2:]
    assert best_baselines(losing) == {0: "cash"}
