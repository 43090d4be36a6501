"""Out-of-sample scoring on walk-forward folds (tt_rl.walk_forward), and the gather step that stitches them.

Scoring runs one test episode per policy on one fold's test window, starting in cash: a fold's PPO model
acts deterministically (`score_model`, one call per (fold, seed) job), the baselines and the oracle of a
planted market through TargetWeightsAction (`score_policies`, one call per fold). The drawdown stopper is
off and episodes are not truncated, so every policy covers the whole window; the same costs apply to all.
`gather` turns the runs into tt_eval rows: per fold, stitched over the folds (fold -1) per seed, and one
summary row per policy (fold -1, seed -1: the mean over seeds with a Student-t interval of the Sharpe ratio)
with the probabilistic Sharpe ratio against cash and, for the agent, the deflated Sharpe ratio over the
configurations tried on the dataset (tt_rl.significance).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.terms import AGENT, POLICY_NAMES
from tt_resources.timeframes import get_timeframe
from tt_rl.config import RLConfig
from tt_rl.metrics import performance
from tt_rl.panel import Panel
from tt_rl.significance import (
    deflated_sharpe,
    mean_confidence_interval,
    probabilistic_sharpe,
    sharpe_per_period,
)
from tt_rl.train import META_FILE, MODEL_FILE, NORMALIZE_FILE
from tt_rl.walk_forward import Fold

NO_SEED = -1  # seed of a deterministic policy's rows, and of the summary row across seeds
STITCHED = -1  # fold of the rows stitched over all folds
CI_LEVEL = 0.95


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


@dataclass(frozen=True)
class Evaluation:
    """metrics: tt_eval rows (policy x fold x seed); equity: net worth over the stitched test period,
    index ts x column (a policy, or `ppo s<seed>` per agent seed)."""

    metrics: pd.DataFrame
    equity: pd.DataFrame


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
    from stable_baselines3 import PPO

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
    model = PPO.load(run / MODEL_FILE, device="cpu")
    normalizer = _load_normalizer(run, panel, scored)

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
) -> list[PolicyRun]:
    """Weight policies (name -> tt_rl.baselines.WeightPolicy: target weights (N,) from the TradingState) on
    `fold`'s test window; their episodes are logged under `model_id` (the evaluated walk-forward model)."""
    from tt_rl.env import build_env

    scored = evaluation_config(config)
    runs = []
    for name, policy in policies.items():
        env = _with_logger(
            build_env(panel, scored, weights_action=True), engine, name, model_id, run_id, scored, fold.index
        )
        try:
            runs.append(
                run_episode(env, lambda obs, env, p=policy: p(env.unwrapped.state), fold, name, NO_SEED)
            )
        finally:
            env.close()
    return runs


def gather(
    runs: Sequence[PolicyRun],
    panel: Panel,
    *,
    initial_cash: float,
    n_trials: int = 1,
    trial_sharpes: Sequence[float] = (),
) -> Evaluation:
    """tt_eval rows and stitched equity curves of every policy's runs over all folds (see module doc).

    The agent's deflated Sharpe ratio counts `n_trials` configurations tried on the dataset (this one
    included) whose per-period stitched Sharpe ratios are `trial_sharpes` (other configurations) plus this
    one's mean over seeds. Other policies were not searched: their DSR is NaN."""
    periods = get_timeframe(panel.timeframe).bars_per_year
    by_policy: dict[str, dict[int, list[PolicyRun]]] = {}
    for run in runs:
        by_policy.setdefault(run.policy, {}).setdefault(run.seed, []).append(run)
    order = sorted(
        by_policy, key=lambda p: (POLICY_NAMES.index(p) if p in POLICY_NAMES else len(POLICY_NAMES), p)
    )
    rows, equity = [], {}
    for policy in order:
        seeds = {seed: sorted(r, key=lambda run: run.fold) for seed, r in sorted(by_policy[policy].items())}
        folds = {tuple(run.fold for run in seed_runs) for seed_runs in seeds.values()}
        if len(folds) != 1:
            raise ValueError(f"{policy}: seeds cover different folds {sorted(folds)}")
        stitched = {seed: _stitch(seed_runs) for seed, seed_runs in seeds.items()}
        trials = None
        if policy == AGENT:
            own = np.array([sharpe_per_period(s.returns) for s in stitched.values()])
            own = own[np.isfinite(own)]
            trials = np.array([*trial_sharpes, own.mean() if len(own) else np.nan])
        summary = []
        for seed, seed_runs in seeds.items():
            for run in seed_runs:
                rows.append(_row(run, panel, periods))
            row = _row(stitched[seed], panel, periods, trials=trials, n_trials=n_trials)
            rows.append(row)
            summary.append(row)
            column = policy if seed == NO_SEED else f"{policy} s{seed}"
            curve = initial_cash * np.concatenate(([1.0], np.cumprod(1.0 + stitched[seed].returns)))
            start = seed_runs[0].bars[0] - 1
            equity[column] = pd.Series(
                curve, index=panel.index[np.concatenate(([start], stitched[seed].bars))]
            )
        if set(seeds) != {NO_SEED}:
            rows.append(_summary(summary))
    metrics = pd.DataFrame(rows)
    metrics.insert(1, "timeframe", panel.timeframe)
    return Evaluation(metrics, pd.DataFrame(equity).rename_axis("ts"))


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


def _row(
    run: PolicyRun,
    panel: Panel,
    periods: int,
    *,
    trials: np.ndarray | None = None,
    n_trials: int = 1,
) -> dict:
    """A tt_eval row of one run: metrics, PSR against cash (per-period Sharpe 0) and, given the trials'
    Sharpe ratios, the DSR."""
    return {
        "policy": run.policy,
        "fold": run.fold,
        "seed": run.seed,
        "fold_model_id": run.model_id,
        "test_start": panel.index[run.bars[0] - 1],
        "test_end": panel.index[run.bars[-1]],
        "episode_id": run.episode_id,
        **performance(run.returns, periods, turnover=run.turnover, costs=run.costs, invested=run.invested),
        "psr": probabilistic_sharpe(run.returns),
        "dsr": deflated_sharpe(run.returns, trials, n_trials) if trials is not None else float("nan"),
        "n_trials": n_trials if trials is not None else None,
        "sharpe_ci_low": float("nan"),
        "sharpe_ci_high": float("nan"),
    }


def _summary(stitched: list[dict]) -> dict:
    """The summary row across seeds: every number the mean of the seeds' stitched rows, and the Student-t
    interval (CI_LEVEL) of their Sharpe ratios."""
    frame = pd.DataFrame(stitched)
    numbers = frame.select_dtypes("number").drop(columns=["fold", "seed"]).mean()
    _, low, high = mean_confidence_interval(frame["sharpe"].to_numpy(), CI_LEVEL)
    first = stitched[0]
    return {
        **first,
        **numbers.to_dict(),
        "seed": NO_SEED,
        "fold_model_id": None,
        "episode_id": None,
        "n_trials": first["n_trials"],
        "sharpe_ci_low": low,
        "sharpe_ci_high": high,
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


def _load_normalizer(run: Path, panel: Panel, config: RLConfig):
    """The training VecNormalize statistics (frozen), or None when the model was trained without them."""
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
