"""Out-of-sample scoring on walk-forward folds (tt_rl.walk_forward), and the gather step that stitches them.

Scoring runs one test episode per policy on one fold's test window, starting in cash: a fold's PPO model
acts deterministically (`score_model`, one call per (fold, seed) job), the baselines and the oracle of a
planted market through TargetWeightsAction (`score_policies`, one call per fold; with span="train" the
baselines on the fold's training span, to choose the best baseline before the test). The drawdown stopper is
off and episodes are not truncated, so every policy covers the whole window; the same costs apply to all.
`gather` turns the runs into tt_eval rows: per fold, stitched over the folds (fold -1) per seed, and one
summary row per policy (fold -1, seed -1). The agent's summary row is the seed ensemble's (the mean of the
seeds' per-step returns: one series, the strategy one would trade), with the Sharpe ratio's sampling interval
over time, the seeds' range of Sharpe ratios, the PSR and DSR against cash and of its excess returns over
each fold's best baseline (tt_rl.significance.assess) and the verdict line. A symbol's missing bars in the
test windows (no-trade bars: no policy trades it there, its position is held at its last close) are the
evaluation's `test_defects`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.terms import AGENT, POLICY_LABELS, POLICY_NAMES
from tt_resources.timeframes import get_timeframe
from tt_rl.config import RLConfig
from tt_rl.metrics import performance
from tt_rl.panel import Panel, gap_defects
from tt_rl.significance import (
    assess,
    excess_returns,
    probabilistic_sharpe,
    sharpe_interval,
    sharpe_per_period,
)
from tt_rl.train import META_FILE, NORMALIZE_FILE, load_model
from tt_rl.walk_forward import Fold

NO_SEED = -1  # seed of a deterministic policy's rows, and of the summary row across seeds
STITCHED = -1  # fold of the rows stitched over all folds
CI_LEVEL = 0.95
TEST, TRAIN = "test", "train"  # a PolicyRun's span: the fold's test window, or its training span


@dataclass(frozen=True)
class PolicyRun:
    """One policy's test episode on one fold: per-step bar moved to, return, turnover and whether the
    portfolio held a position; total costs / initial cash; the logged episode and the scored model."""

    policy: str
    fold: int
    seed: int
    bars: np.ndarray
    returns: np.ndarray
    turnover: np.ndarray
    invested: np.ndarray
    costs: float
    episode_id: str | None = None
    model_id: str | None = None
    span: str = TEST


@dataclass(frozen=True)
class Evaluation:
    """metrics: tt_eval rows (policy x fold x seed); equity: net worth over the stitched test period,
    index ts x column (a policy, or `ppo s<seed>` per agent seed); test_defects: {symbol: its missing bars in
    the test windows}, no-trade bars of a symbol kept on its training span (`tt_rl.panel.gap_defects`)."""

    metrics: pd.DataFrame
    equity: pd.DataFrame
    test_defects: dict[str, str] = dataclasses.field(default_factory=dict)


def evaluation_config(config: RLConfig) -> RLConfig:
    """`config` for test episodes: no drawdown stop, no truncation, no random start."""
    scored = copy.deepcopy(config)
    scored.env.max_drawdown = float("inf")
    scored.env.max_episode_steps = None
    scored.env.random_start = False
    return scored


def score_model(
    model_path: str | Path,
    panel: Panel,
    config: RLConfig,
    fold: Fold,
    *,
    seed: int,
    engine: sa.Engine | None = None,
    model_id: str | None = None,
    run_id: str | None = None,
) -> PolicyRun:
    """The PPO model saved in `model_path` (a train() run directory) on `fold`'s test window of `panel`
    (the whole dataset panel: the observation reaches back before the window). ValueError when the model
    was trained on a bar of the embargoed span or later, or on other symbols or features."""
    from tt_rl.env import build_env

    run = Path(model_path)
    meta = json.loads((run / META_FILE).read_text())
    model_id = model_id or meta["model_id"]
    _check_compatible(meta, panel)
    last_allowed = panel.index[fold.train_stop - 1]
    if pd.Timestamp(meta["train_end"]) > last_allowed:
        raise ValueError(
            f"model {model_id} trained up to {meta['train_end']}, after fold {fold.index}'s last training "
            f"bar {last_allowed.isoformat()}"
        )
    scored = evaluation_config(config)
    model = load_model(run, scored)
    normalizer = load_normalizer(run, panel, scored)

    def act(obs: np.ndarray, env) -> np.ndarray:
        if normalizer is not None:
            obs = normalizer.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    env = _with_logger(build_env(panel, scored), engine, AGENT, model_id, run_id, scored, fold.index)
    try:
        scored_run = run_episode(env, act, fold, AGENT, seed)
    finally:
        env.close()
    return dataclasses.replace(scored_run, model_id=model_id)


def score_policies(
    panel: Panel,
    config: RLConfig,
    fold: Fold,
    policies: Mapping[str, object],
    *,
    engine: sa.Engine | None = None,
    model_id: str | None = None,
    run_id: str | None = None,
    span: str = TEST,
) -> list[PolicyRun]:
    """Weight policies (name -> tt_rl.baselines.WeightPolicy: target weights (N,) from the TradingState) on
    `fold`'s test window, or with span=TRAIN on its training span (from its first bar with a full observation
    window; not logged); test episodes are logged under `model_id` (the evaluated walk-forward model)."""
    from tt_rl.env import build_env

    scored = evaluation_config(config)
    window = fold
    if span == TRAIN:
        start = max(fold.train_start, config.env.window_size - 1)
        window = dataclasses.replace(fold, test_start=start, test_end=fold.train_stop - 1)
        engine = None
    runs = []
    for name, policy in policies.items():
        env = _with_logger(
            build_env(panel, scored, weights_action=True), engine, name, model_id, run_id, scored, fold.index
        )
        try:
            run = run_episode(env, lambda obs, env, p=policy: p(env.unwrapped.state), window, name, NO_SEED)
        finally:
            env.close()
        runs.append(dataclasses.replace(run, span=span))
    return runs


def best_baselines(train_runs: Sequence[PolicyRun]) -> dict[int, str]:
    """fold -> the baseline with the highest Sharpe ratio on the fold's training span (`train_runs`: the
    baselines' runs with span TRAIN; cash's undefined ratio counts as 0; ties go to the first in POLICY_NAMES
    order). The Sharpe ratio is what the excess returns compare (tt_rl.significance.excess_returns), and the
    training span is all a trader knew before the test window."""
    best: dict[int, tuple[float, int, str]] = {}
    for run in train_runs:
        sharpe = float(np.nan_to_num(sharpe_per_period(run.returns), nan=0.0))
        key = (-sharpe, _rank(run.policy), run.policy)
        if run.fold not in best or key < best[run.fold]:
            best[run.fold] = key
    return {fold: key[2] for fold, key in sorted(best.items())}


def gather(
    runs: Sequence[PolicyRun],
    panel: Panel,
    *,
    initial_cash: float,
    n_trials: int = 1,
    trial_sharpes: Sequence[float] = (),
    trial_excess_sharpes: Sequence[float] = (),
) -> Evaluation:
    """tt_eval rows and stitched equity curves of every policy's runs over all folds (see module doc).

    The baselines' training-span runs (span TRAIN) choose each fold's best baseline (`best_baselines`); the
    agent's excess returns are over it. The agent's deflated Sharpe ratios count `n_trials` configurations
    tried (this one included) whose per-period Sharpe ratios, other than this one's, are `trial_sharpes`
    (returns) and `trial_excess_sharpes` (excess returns over the best baseline). Other policies were not
    searched: their DSRs are NaN. ValueError when an agent is scored without the baselines' training runs,
    or when seeds or the best baseline cover different folds or bars."""
    periods = get_timeframe(panel.timeframe).bars_per_year
    best = best_baselines([r for r in runs if r.span == TRAIN])
    by_policy: dict[str, dict[int, list[PolicyRun]]] = {}
    for run in runs:
        if run.span == TEST:
            by_policy.setdefault(run.policy, {}).setdefault(run.seed, []).append(run)
    tests = {(p, run.fold): run for p, seeds in by_policy.items() for run in seeds.get(NO_SEED, [])}
    rows, equity = [], {}
    for policy in sorted(by_policy, key=lambda p: (_rank(p), p)):
        seeds = {seed: sorted(r, key=lambda run: run.fold) for seed, r in sorted(by_policy[policy].items())}
        folds = {tuple(run.fold for run in seed_runs) for seed_runs in seeds.values()}
        if len(folds) != 1:
            raise ValueError(f"{policy}: seeds cover different folds {sorted(folds)}")
        fold_ids = next(iter(folds))
        searched = policy == AGENT
        against = None
        if searched:
            missing = [f for f in fold_ids if (best.get(f), f) not in tests]
            if missing:
                raise ValueError(
                    f"{policy}: no baseline runs on the training span, or no test run of the best baseline, "
                    f"of fold(s) {missing}"
                )
            against = {f: tests[(best[f], f)] for f in fold_ids}
        stitched = {seed: _stitch(seed_runs) for seed, seed_runs in seeds.items()}
        for seed, seed_runs in seeds.items():
            rows += [_row(run, panel, periods, against) for run in seed_runs]
            rows.append(_row(stitched[seed], panel, periods, against))
            column = policy if seed == NO_SEED else f"{policy} s{seed}"
            curve = initial_cash * np.concatenate(([1.0], np.cumprod(1.0 + stitched[seed].returns)))
            start = seed_runs[0].bars[0] - 1
            equity[column] = pd.Series(
                curve, index=panel.index[np.concatenate(([start], stitched[seed].bars))]
            )
        if searched:
            ensemble = _ensemble(list(stitched.values()))
            row = _row(ensemble, panel, periods, against)
            baseline = _stitch([against[f] for f in fold_ids])
            significance = assess(
                ensemble.returns,
                baseline.returns,
                n_trials=n_trials,
                trial_sharpes=trial_sharpes,
                trial_excess_sharpes=trial_excess_sharpes,
            )
            # a seed that held cash for the whole test has no Sharpe ratio (NaN): the range is the others'
            seed_sharpes = [
                r["sharpe"]
                for r in rows
                if r["policy"] == policy and r["fold"] == STITCHED and math.isfinite(r["sharpe"])
            ]
            names = dict.fromkeys(best[f] for f in fold_ids)
            rows.append(
                {
                    **row,
                    "dsr": significance.dsr,
                    "dsr_vs_best": significance.dsr_vs_best,
                    "sharpe_seed_min": min(seed_sharpes, default=math.nan),
                    "sharpe_seed_max": max(seed_sharpes, default=math.nan),
                    "n_trials": n_trials,
                    "verdict": significance.verdict(
                        " / ".join(POLICY_LABELS.get(n, n) for n in names), periods
                    ),
                }
            )
    metrics = pd.DataFrame(rows)
    metrics.insert(1, "timeframe", panel.timeframe)
    tested = [run.bars for run in runs if run.span == TEST]
    first, last = min(b[0] for b in tested) - 1, max(b[-1] for b in tested)  # the decision bar .. last bar
    defects = gap_defects(panel, first, last + 1)
    return Evaluation(metrics, pd.DataFrame(equity).rename_axis("ts"), defects)


def _rank(policy: str) -> int:
    return POLICY_NAMES.index(policy) if policy in POLICY_NAMES else len(POLICY_NAMES)


def _stitch(runs: list[PolicyRun]) -> PolicyRun:
    """One policy-seed's runs over the folds, in fold order, as one run (fold -1)."""
    first = runs[0]
    return PolicyRun(
        first.policy,
        STITCHED,
        first.seed,
        *(
            np.concatenate([getattr(r, name) for r in runs])
            for name in ("bars", "returns", "turnover", "invested")
        ),
        sum(r.costs for r in runs),
    )


def _ensemble(stitched: list[PolicyRun]) -> PolicyRun:
    """The seed ensemble of one policy's stitched runs (seed -1): capital split equally over the seeds'
    portfolios and re-split every step, so its per-step return, turnover and costs are the seeds' means; it
    is invested when any seed is. ValueError when the seeds moved over different bars."""
    first = stitched[0]
    if any(not np.array_equal(run.bars, first.bars) for run in stitched):
        raise ValueError(f"{first.policy}: seeds cover different bars")
    return PolicyRun(
        first.policy,
        STITCHED,
        NO_SEED,
        first.bars,
        np.mean([run.returns for run in stitched], axis=0),
        np.mean([run.turnover for run in stitched], axis=0),
        np.any([run.invested for run in stitched], axis=0),
        float(np.mean([run.costs for run in stitched])),
    )


def _row(run: PolicyRun, panel: Panel, periods: int, against: dict[int, PolicyRun] | None = None) -> dict:
    """A tt_eval row of one run: metrics, the Sharpe ratio's sampling interval over time (CI_LEVEL), PSR
    against cash (per-period Sharpe 0) and, given the best baseline's test run per fold `against`, the
    annualised Sharpe ratio and PSR of the excess returns over it; DSRs are left to the summary row."""
    low, high = sharpe_interval(run.returns, CI_LEVEL, periods)
    row = {
        "policy": run.policy,
        "fold": run.fold,
        "seed": run.seed,
        "fold_model_id": run.model_id,
        "test_start": panel.index[run.bars[0] - 1],
        "test_end": panel.index[run.bars[-1]],
        "episode_id": run.episode_id,
        **performance(run.returns, periods, turnover=run.turnover, costs=run.costs, invested=run.invested),
        "psr": probabilistic_sharpe(run.returns),
        "dsr": float("nan"),
        "n_trials": None,
        "sharpe_ci_low": low,
        "sharpe_ci_high": high,
        "best_baseline": None,
        "sharpe_vs_best": float("nan"),
        "psr_vs_best": float("nan"),
        "dsr_vs_best": float("nan"),
        "sharpe_seed_min": float("nan"),
        "sharpe_seed_max": float("nan"),
        "verdict": None,
    }
    if against is None:
        return row
    folds = sorted(against) if run.fold == STITCHED else [run.fold]
    baseline = _stitch([against[f] for f in folds])
    if not np.array_equal(baseline.bars, run.bars):
        raise ValueError(f"{run.policy} fold {run.fold}: the best baseline moved over other bars")
    excess = excess_returns(run.returns, baseline.returns)
    return {
        **row,
        "best_baseline": ", ".join(dict.fromkeys(against[f].policy for f in folds)),
        "sharpe_vs_best": sharpe_per_period(excess) * np.sqrt(periods),
        "psr_vs_best": probabilistic_sharpe(excess),
    }


def _check_compatible(meta: dict, panel: Panel) -> None:
    """The panel must have the model's timeframe, symbols and features in the same order."""
    for field, have in (
        ("timeframe", panel.timeframe),
        ("symbols", list(panel.symbols)),
        ("feature_names", list(panel.feature_names)),
    ):
        if meta[field] != have:
            raise ValueError(
                f"panel {field} differ from the model's ({meta['model_id']}): {have} vs {meta[field]}"
            )


def load_normalizer(run: Path, panel: Panel, config: RLConfig):
    """The training VecNormalize statistics saved in the train() run directory `run` (frozen: read, never
    updated), over an env of `panel` and `config`; None when the model was trained without them."""
    path = run / NORMALIZE_FILE
    if not path.exists():
        return None
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from tt_rl.env import build_env

    normalizer = VecNormalize.load(str(path), DummyVecEnv([lambda: build_env(panel, config)]))
    normalizer.training = False
    return normalizer


def _with_logger(env, engine, policy: str, model_id, run_id, config: RLConfig, fold: int):
    if engine is None:
        return env
    from tt_rl.episode_log import EpisodeLogger

    return EpisodeLogger(
        env,
        engine,
        split="test",
        policy=policy,
        model_id=model_id,
        run_id=run_id,
        window=fold,
        flush_every=config.logging.flush_every,
        holdings=True,
    )


def run_episode(env, act, fold: Fold, policy: str, seed: int) -> PolicyRun:
    """Run `fold`'s test window with `act(obs, env) -> action`; per-step results from the info dicts. A step
    is invested when the portfolio held a position at its start or its end."""
    obs, _ = env.reset(options={"start": fold.test_start, "end": fold.test_end})
    bars, returns, turnover, exposure, costs = [], [], [], [0.0], 0.0
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs, env))
        bars.append(info["bar"])
        returns.append(info["period_return"])
        turnover.append(info["turnover"])
        exposure.append(float(np.abs(info["weights"]).sum()))
        costs += info["costs"]
        done = terminated or truncated
    held = np.asarray(exposure) > 0.0
    return PolicyRun(
        policy,
        fold.index,
        seed,
        np.asarray(bars),
        np.asarray(returns),
        np.asarray(turnover),
        held[:-1] | held[1:],
        costs / env.unwrapped.state.portfolio.initial_cash,
        getattr(env, "last_episode_id", None),
    )
