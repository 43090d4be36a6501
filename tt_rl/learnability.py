"""Learnability suite: train PPO on a planted market (tt_rl.planted) and score it out-of-sample against the
market's oracle and the baselines, after costs, through the same environment.

A case trains on the first `1 - test_fraction` of the panel and tests on the rest, each policy run as one
deterministic episode from the first test bar (starting in cash, drawdown stop off, ruin still ends it). The
learning curve is PPO's test Sharpe every `eval_every` steps; `steps_to_half` is the first of those at which
it reached half the oracle's. torch and SB3 load inside `run_case`.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tt_resources.terms import AGENT, CASH
from tt_rl.config import RLConfig
from tt_rl.metrics import performance
from tt_rl.panel import Panel
from tt_rl.planted import ORACLES, planted_panel

ORACLE = "oracle"


@dataclass(frozen=True)
class CaseResult:
    """One planted market's out-of-sample results. sharpe: annualised, per policy (ppo, oracle, baselines);
    curve: (timesteps, PPO test Sharpe) pairs; steps_to_half: None when PPO never reached half the oracle."""

    kind: str
    n_symbols: int
    n_bars: int
    timesteps: int
    seed: int
    test_bars: int
    sharpe: dict[str, float]
    total_return: dict[str, float]
    ppo_returns: np.ndarray = field(repr=False)
    curve: list[tuple[int, float]]
    steps_to_half: int | None
    seconds: float

    @property
    def ratio(self) -> float:
        """PPO's Sharpe over the oracle's (NaN without a positive oracle Sharpe)."""
        oracle = self.sharpe[ORACLE]
        return self.sharpe[AGENT] / oracle if oracle > 0 else float("nan")

    @property
    def best_baseline(self) -> str:
        baselines = {k: v for k, v in self.sharpe.items() if k not in (AGENT, ORACLE)}
        return max(baselines, key=lambda k: np.nan_to_num(baselines[k], nan=0.0))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("ppo_returns")
        return {**out, "ratio": self.ratio, "best_baseline": self.best_baseline}


def evaluation_config(config: RLConfig) -> RLConfig:
    """`config` for scoring: whole windows (no drawdown stop, no truncation, no random start)."""
    scored = copy.deepcopy(config)
    scored.env.max_drawdown = float("inf")
    scored.env.max_episode_steps = None
    scored.env.random_start = False
    return scored


def episode_returns(
    env, act: Callable[[np.ndarray], np.ndarray], start: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step returns and turnover of one deterministic episode of `act(obs) -> action` from bar `start` to
    the panel's end (or ruin)."""
    obs, _ = env.reset(options={"start": start})
    returns, turnover = [], []
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs))
        returns.append(info["period_return"])
        turnover.append(info["turnover"])
        done = terminated or truncated
    return np.asarray(returns), np.asarray(turnover)


def run_case(
    kind: str,
    *,
    n_bars: int = 2000,
    n_symbols: int = 5,
    timesteps: int = 100_000,
    seed: int = 0,
    test_fraction: float = 0.3,
    eval_every: int = 10_000,
    config: RLConfig | None = None,
    model_dir: Path | None = None,
) -> CaseResult:
    """Train PPO (`config`, default RLConfig(), with `timesteps` and `seed`) on a planted market of `kind`
    and score it, the oracle and the baselines on the test bars."""
    from stable_baselines3.common.callbacks import BaseCallback

    from tt_rl.baselines import BASELINES
    from tt_rl.env import build_env
    from tt_rl.train import train

    started = time.perf_counter()
    config = copy.deepcopy(config or RLConfig())
    config.ppo.total_timesteps = timesteps
    config.ppo.seed = seed
    config.ppo.progress_bar = False
    config.ppo.checkpoint_every = max(timesteps, 1)
    panel = planted_panel(kind, n_bars, n_symbols, seed=seed)
    split = int(len(panel) * (1 - test_fraction))
    scored = evaluation_config(config)
    policy_env = build_env(panel, scored)
    weights_env = build_env(panel, scored, weights_action=True)
    periods = 252

    def test_sharpe(act) -> tuple[float, np.ndarray, np.ndarray]:
        returns, turnover = episode_returns(policy_env, act, split)
        return performance(returns, periods, turnover=turnover)["sharpe"], returns, turnover

    curve: list[tuple[int, float]] = []

    class LearningCurve(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                curve.append((self.num_timesteps, test_sharpe(_greedy(self.model))[0]))
            return True

    with tempfile.TemporaryDirectory() as scratch:
        trained = train(
            panel.slice(0, split), config, model_dir=model_dir or Path(scratch), callbacks=[LearningCurve()]
        )
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import VecNormalize

        model = PPO.load(trained.path / "model.zip", device="cpu")
        stats = trained.path / "vecnormalize.pkl"
        if stats.exists():
            from stable_baselines3.common.vec_env import DummyVecEnv

            norm = VecNormalize.load(
                str(stats), DummyVecEnv([lambda: build_env(panel.slice(0, split), config)])
            )
            norm.training = False
            model.set_env(norm)
    sharpe, ppo_returns, _ = test_sharpe(_greedy(model, norm if stats.exists() else None))
    results = {AGENT: (sharpe, ppo_returns)}
    policies = {ORACLE: ORACLES[kind], **BASELINES}
    state = weights_env.unwrapped.state
    for name, policy in policies.items():
        returns, turnover = episode_returns(weights_env, lambda obs, policy=policy: policy(state), split)
        results[name] = (performance(returns, periods, turnover=turnover)["sharpe"], returns)
    oracle = results[ORACLE][0]
    half = next((steps for steps, s in curve if oracle > 0 and s >= 0.5 * oracle), None)
    return CaseResult(
        kind=kind,
        n_symbols=n_symbols,
        n_bars=len(panel),
        timesteps=timesteps,
        seed=seed,
        test_bars=len(panel) - 1 - split,
        sharpe={
            k: float(v[0]) if v[0] == v[0] else 0.0 if k == CASH else float("nan") for k, v in results.items()
        },
        total_return={k: float(np.prod(1 + v[1]) - 1) for k, v in results.items()},
        ppo_returns=ppo_returns,
        curve=curve,
        steps_to_half=half,
        seconds=round(time.perf_counter() - started, 1),
    )


def _greedy(model, normalizer=None) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic action of `model` on a raw observation, normalised like in training."""
    norm = normalizer or model.get_vec_normalize_env()

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(norm.normalize_obs(obs) if norm is not None else obs, deterministic=True)[0]

    return act


def panel_of(kind: str, **kwargs: Any) -> Panel:
    """The planted panel a case of `kind` trains and tests on (for inspection)."""
    return planted_panel(kind, **kwargs)
