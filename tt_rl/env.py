"""build_env(panel, config) -> a tensortrade TradingEnv (gymnasium API) over the project's components."""

from __future__ import annotations

from typing import Any

import gymnasium

from tt_resources.timeframes import get_timeframe
from tt_rl.components import (
    DrawdownStopper,
    PortfolioInformer,
    RiskAwareReward,
    TargetWeightsAction,
    VolatilityTargetedAction,
    WindowObserver,
)
from tt_rl.config import RLConfig
from tt_rl.panel import Panel
from tt_rl.state import TradingState
from tt_rl.tensortrade_shell import EmptyRenderer, TradingEnv


class RiskAwareTradingEnv(TradingEnv):
    """TradingEnv whose reset honours `seed` and chooses the episode's bars.

    reset(options={"start": i, "end": j}) runs bars i..j (evaluation windows); otherwise training episodes
    start at a random bar (env.random_start) drawn from the seeded `np_random`, or at the first full window."""

    def __init__(self, state: TradingState, random_start: bool, **components: Any) -> None:
        super().__init__(**components)
        self.state = state
        self.random_start = random_start

    def reset(self, seed: int | None = None, options: dict | None = None):
        gymnasium.Env.reset(self, seed=seed)
        options = options or {}
        state = self.state
        last = len(state.prices) - 1
        end = int(options.get("end", last))
        if "start" in options:
            start = int(options["start"])
        elif self.random_start:
            latest = end - (self.max_episode_steps or 1)
            start = int(self.np_random.integers(state.first, max(state.first, latest) + 1))
        else:
            start = state.first
        state.reset(start, end)
        return super().reset()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """TradingEnv.step minus its `_ensure_numpy` probes: the observer returns a numpy array already."""
        self.action_scheme.perform(self, action)
        obs = self.observer.observe(self)
        reward = self.reward_scheme.reward(self)
        terminated = self.stopper.stop(self)
        truncated = self.max_episode_steps is not None and self.clock.step >= self.max_episode_steps
        info = self.informer.info(self)
        self.clock.increment()
        return obs, reward, terminated, truncated, info


def build_env(panel: Panel, config: RLConfig, *, weights_action: bool = False) -> RiskAwareTradingEnv:
    """Environment over `panel`. Actions are scores for VolatilityTargetedAction, or target weights
    (TargetWeightsAction, used by the baselines) when `weights_action`."""
    env_cfg = config.env
    state = TradingState(panel, env_cfg, get_timeframe(panel.timeframe).bars_per_year, config.reward)
    stopper = DrawdownStopper(state)
    return RiskAwareTradingEnv(
        state,
        env_cfg.random_start,
        action_scheme=(TargetWeightsAction if weights_action else VolatilityTargetedAction)(state),
        reward_scheme=RiskAwareReward(state),
        observer=WindowObserver(state),
        stopper=stopper,
        informer=PortfolioInformer(state, stopper),
        renderer=EmptyRenderer(),
        max_episode_steps=env_cfg.max_episode_steps,
    )
