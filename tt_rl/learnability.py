"""Learnability suite: train PPO on a planted market (tt_rl.planted) and score it out-of-sample against the
market's oracle and the baselines, after costs, through the same environment.

A case trains on the first `1 - test_fraction` of the panel and tests on the rest, each policy run as one
deterministic episode from the first test bar (tt_rl.evaluate's runner and test settings: starting in cash,
drawdown stop off, ruin still ends it). The
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

from tt_resources.terms import AGENT, ORACLE, POLICY_LABELS
from tt_resources.timeframes import get_timeframe
from tt_rl.baselines import BASELINES
from tt_rl.config import RLConfig
from tt_rl.evaluate import evaluation_config, load_normalizer, run_episode
from tt_rl.metrics import performance
from tt_rl.panel import Panel
from tt_rl.planted import ORACLES, planted_panel
from tt_rl.significance import SIGNIFICANT, assess, sharpe_per_period
from tt_rl.walk_forward import Fold


@dataclass(frozen=True)
class CaseResult:
    """One planted market's out-of-sample results. sharpe: annualised, per policy (ppo, oracle, baselines);
    curve: (timesteps, PPO test Sharpe) pairs; steps_to_half: None when PPO never reached half the oracle;
    best_on_training: the baseline of the best Sharpe on the training bars; psr: PPO's against cash;
    dsr_vs_best: of PPO's excess returns over that baseline (one trial); verdict: tt_rl.significance's line."""

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
    best_on_training: str
    psr: float
    dsr_vs_best: float
    verdict: str
    seconds: float

    @property
    def skill(self) -> bool:
        """Whether the verdict says skill beyond the best baseline (tt_rl.significance.assess)."""
        return self.dsr_vs_best >= SIGNIFICANT

    @property
    def ratio(self) -> float:
        """PPO's Sharpe over the oracle's (NaN without a positive oracle Sharpe)."""
        oracle = self.sharpe[ORACLE]
        return self.sharpe[AGENT] / oracle if oracle > 0 else float("nan")

    @property
    def best_baseline(self) -> str:
        """The baseline of the best test Sharpe (for display: the verdict uses `best_on_training`)."""
        baselines = {k: v for k, v in self.sharpe.items() if k not in (AGENT, ORACLE)}
        return max(baselines, key=lambda k: np.nan_to_num(baselines[k], nan=0.0))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("ppo_returns")
        return {**out, "ratio": self.ratio, "best_baseline": self.best_baseline, "skill": self.skill}


def weight_policy_returns(
    kind: str, panel: Panel, config: RLConfig, fold: Fold, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-step returns on `fold`'s test bars of the oracle of `kind` and of every baseline (tt_rl.baselines),
    each one deterministic episode through the evaluation environment of `config` (costs, sizing caps,
    next-open fills as PPO's)."""
    from tt_rl.env import build_env

    env = build_env(panel, evaluation_config(config), weights_action=True)
    state = env.unwrapped.state
    return {
        name: run_episode(env, lambda obs, env, policy=policy: policy(state), fold, name, seed).returns
        for name, policy in {ORACLE: ORACLES[kind], **BASELINES}.items()
    }


def run_case(
    kind: str,
    *,
    n_bars: int = 2000,
    n_symbols: int | None = None,
    timesteps: int = 100_000,
    seed: int = 0,
    market_seed: int | None = None,
    test_fraction: float = 0.3,
    eval_every: int | None = 10_000,
    config: RLConfig | None = None,
    model_dir: Path | None = None,
) -> CaseResult:
    """Train PPO (`config`, default RLConfig(), with `timesteps` and `seed`) on a planted market of `kind`
    (`n_symbols` None: the kind's own count, tt_rl.planted.SYMBOLS; market seeded `market_seed`, default `seed`)
    and score it, the oracle and the baselines on the test bars. The verdict compares PPO with the baseline of
    the best Sharpe on the training bars (chosen before the test is seen). `eval_every` None: no curve."""
    from stable_baselines3.common.callbacks import BaseCallback

    from tt_rl.env import build_env
    from tt_rl.train import train

    started = time.perf_counter()
    config = copy.deepcopy(config or RLConfig())
    config.ppo.total_timesteps = timesteps
    config.ppo.seed = seed
    config.ppo.progress_bar = False
    config.ppo.checkpoint_every = max(timesteps, 1)
    panel = planted_panel(kind, n_bars, n_symbols, seed=seed if market_seed is None else market_seed)
    split = int(len(panel) * (1 - test_fraction))
    policy_env = build_env(panel, evaluation_config(config))
    periods = get_timeframe(panel.timeframe).bars_per_year
    test = Fold(0, 0, split, split, len(panel) - 1)  # trained on bars before `split`, tested from it
    first = config.env.window_size - 1
    training = Fold(0, 0, first, first, split - 1)  # the training bars, to choose the best baseline on

    def test_returns(act: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return run_episode(policy_env, lambda obs, env: act(obs), test, AGENT, seed).returns

    curve: list[tuple[int, float]] = []

    class LearningCurve(BaseCallback):
        def _on_step(self) -> bool:
            if eval_every and self.num_timesteps % eval_every == 0:
                sharpe = performance(test_returns(_greedy(self.model)), periods)["sharpe"]
                curve.append((self.num_timesteps, float(sharpe)))
            return True

    with tempfile.TemporaryDirectory() as scratch:
        trained = train(
            panel.slice(0, split), config, model_dir=model_dir or Path(scratch), callbacks=[LearningCurve()]
        )
        act = _saved_policy(trained.path, panel.slice(0, split), config)
    runs = {AGENT: test_returns(act), **weight_policy_returns(kind, panel, config, test, seed)}
    # cash's Sharpe is undefined (no volatility); it is 0 for ranking
    sharpes = {name: float(np.nan_to_num(performance(r, periods)["sharpe"])) for name, r in runs.items()}
    on_training = weight_policy_returns(kind, panel, config, training, seed)
    best = max(BASELINES, key=lambda name: np.nan_to_num(sharpe_per_period(on_training[name]), nan=0.0))
    assessment = assess(runs[AGENT], runs[best])
    oracle = sharpes[ORACLE]
    return CaseResult(
        kind=kind,
        n_symbols=panel.prices.shape[1],
        n_bars=len(panel),
        timesteps=timesteps,
        seed=seed,
        test_bars=len(runs[AGENT]),
        sharpe=sharpes,
        total_return={name: float(np.prod(1.0 + r) - 1.0) for name, r in runs.items()},
        ppo_returns=runs[AGENT],
        curve=curve,
        steps_to_half=next((steps for steps, s in curve if oracle > 0 and s >= 0.5 * oracle), None),
        best_on_training=best,
        psr=assessment.psr,
        dsr_vs_best=assessment.dsr_vs_best,
        verdict=assessment.verdict(POLICY_LABELS.get(best, best), periods),
        seconds=round(time.perf_counter() - started, 1),
    )


def _saved_policy(run: Path, train_panel: Panel, config: RLConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The deterministic policy saved in a train() run directory, with its frozen observation statistics."""
    from tt_rl.train import load_model

    return _greedy(load_model(run, config), load_normalizer(run, train_panel, config))


def _greedy(model, normalizer=None) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic action of `model` on a raw observation, normalised like in training."""
    norm = normalizer or model.get_vec_normalize_env()

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(norm.normalize_obs(obs) if norm is not None else obs, deterministic=True)[0]

    return act
