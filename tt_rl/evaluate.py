"""Walk-forward out-of-sample evaluation of a trained model against baselines on the same windows and costs.

The test span is every bar after the model's training span (from its meta.json), so train and test never
overlap; it is cut into `eval.n_windows` consecutive windows. Each window is one episode per policy (PPO with
its deterministic action; baselines through TargetWeightsAction), starting in cash. The drawdown stopper is
off during evaluation so every policy covers the whole window. Window -1 stitches the windows' step returns.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.terms import AGENT
from tt_resources.timeframes import get_timeframe
from tt_rl.config import RLConfig
from tt_rl.metrics import performance
from tt_rl.panel import Panel
from tt_rl.train import META_FILE, MODEL_FILE, NORMALIZE_FILE


@dataclass(frozen=True)
class Evaluation:
    """metrics: one row per policy x window (window -1 = stitched); equity: net worth, index ts x policy."""

    metrics: pd.DataFrame
    equity: pd.DataFrame


@dataclass
class _Run:
    """One policy's episode over one window: step returns, turnover, costs and bar indices."""

    bars: np.ndarray
    returns: np.ndarray
    turnover: np.ndarray
    costs: float
    episode_id: str | None


def test_windows(
    panel: Panel, train_end: pd.Timestamp, window_size: int, n_windows: int
) -> list[tuple[int, int]]:
    """(start bar, end bar) of each window: consecutive, covering the bars after `train_end`."""
    first = max(int(panel.index.searchsorted(train_end, side="right")), window_size - 1)
    last = len(panel) - 1
    if last - first < n_windows:
        raise ValueError(
            f"panel has {max(last - first, 0)} bars after the training end {train_end.isoformat()}; "
            f"need more than {n_windows} for {n_windows} window(s)"
        )
    edges = np.linspace(first, last, n_windows + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def evaluate(
    model_path: str | Path,
    panel: Panel,
    config: RLConfig,
    *,
    engine: sa.Engine | None = None,
    model_id: str | None = None,
    run_id: str | None = None,
) -> Evaluation:
    """Evaluate the model saved in `model_path` (a train() run directory) on the bars of `panel` after its
    training span; writes tt_eval and logs every test episode when `engine` is given."""
    from stable_baselines3 import PPO

    from tt_rl.baselines import BASELINES
    from tt_rl.env import build_env

    run = Path(model_path)
    meta = json.loads((run / META_FILE).read_text())
    model_id = model_id or meta["model_id"]
    _check_compatible(meta, panel)
    eval_config = copy.deepcopy(config)
    eval_config.env.max_drawdown = float("inf")
    eval_config.env.max_episode_steps = None
    eval_config.env.random_start = False
    train_end = pd.Timestamp(meta["train_end"])
    windows = test_windows(panel, train_end, config.env.window_size, config.eval.n_windows)

    model = PPO.load(run / MODEL_FILE, device="cpu")
    normalizer = _load_normalizer(run, panel, eval_config)
    policy_env = build_env(panel, eval_config)
    weights_env = build_env(panel, eval_config, weights_action=True)

    def act_ppo(obs: np.ndarray, env) -> np.ndarray:
        if normalizer is not None:
            obs = normalizer.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    actors = {AGENT: (policy_env, act_ppo)}
    for name, policy in BASELINES.items():
        actors[name] = (weights_env, lambda obs, env, policy=policy: policy(env.unwrapped.state))

    envs = {
        name: _with_logger(env, engine, name, model_id, run_id, eval_config)
        for name, (env, _) in actors.items()
    }
    runs: dict[str, list[_Run]] = {name: [] for name in actors}
    try:
        for k, (start, end) in enumerate(windows):
            for name, (_, act) in actors.items():
                if engine is not None:
                    envs[name].meta["window"] = k
                runs[name].append(_run_episode(envs[name], act, start, end))
    finally:
        for env in envs.values():
            env.close()

    periods = get_timeframe(panel.timeframe).bars_per_year
    rows, equity = [], {}
    for name, policy_runs in runs.items():
        for k, r in enumerate(policy_runs):
            rows.append(_row(name, k, panel, r.bars, r.returns, r.turnover, r.costs, r.episode_id, periods))
        bars = np.concatenate([r.bars for r in policy_runs])
        returns = np.concatenate([r.returns for r in policy_runs])
        turnover = np.concatenate([r.turnover for r in policy_runs])
        costs = sum(r.costs for r in policy_runs)
        rows.append(_row(name, -1, panel, bars, returns, turnover, costs, None, periods))
        curve = config.env.initial_cash * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
        equity[name] = pd.Series(curve, index=panel.index[np.concatenate(([windows[0][0]], bars))])
    metrics = pd.DataFrame(rows)
    metrics.insert(0, "model_id", model_id)
    metrics.insert(1, "timeframe", panel.timeframe)
    metrics["train_start"] = pd.Timestamp(meta["train_start"])
    metrics["train_end"] = train_end
    metrics["run_id"] = run_id
    if engine is not None:
        from tt_resources.db import rl_log

        rl_log.write_eval(engine, metrics)
    return Evaluation(metrics, pd.DataFrame(equity).rename_axis("ts"))


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


def _with_logger(env, engine, policy: str, model_id, run_id, config: RLConfig):
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
        flush_every=config.logging.flush_every,
        holdings=True,
    )


def _run_episode(env, act, start: int, end: int) -> _Run:
    """Run bars start..end with `act(obs, env) -> action`; collects per-step results from the info dicts."""
    obs, _ = env.reset(options={"start": start, "end": end})
    bars, returns, turnover, costs = [], [], [], 0.0
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs, env))
        bars.append(info["bar"])
        returns.append(info["period_return"])
        turnover.append(info["turnover"])
        costs += info["costs"]
        done = terminated or truncated
    return _Run(
        np.asarray(bars),
        np.asarray(returns),
        np.asarray(turnover),
        costs / env.unwrapped.state.portfolio.initial_cash,
        getattr(env, "last_episode_id", None),
    )


def _row(policy, window, panel, bars, returns, turnover, costs, episode_id, periods) -> dict:
    return {
        "policy": policy,
        "window": window,
        "test_start": panel.index[bars[0] - 1],
        "test_end": panel.index[bars[-1]],
        "episode_id": episode_id,
        **performance(returns, periods, turnover=turnover, costs=costs),
    }
