"""TensorTrade components (ActionScheme, RewardScheme, Stopper, Observer, Informer) over a TradingState.

Importing this module imports tensortrade's env shell (tt_rl.tensortrade_shell, without TensorFlow): only
env-building code does.
"""

from __future__ import annotations

import numpy as np
from gymnasium.spaces import Box

from tt_rl.state import TradingState
from tt_rl.tensortrade_shell import ActionScheme, Informer, Observer, RewardScheme, Stopper


class VolatilityTargetedAction(ActionScheme):
    """Box(-1, 1, N) actions -> scores (long-only max(a, 0)) -> volatility-targeted, capped target weights
    (see TradingState.act)."""

    def __init__(self, state: TradingState) -> None:
        super().__init__()
        self.state = state
        self._space = Box(-1.0, 1.0, shape=(state.n_assets,), dtype=np.float32)

    @property
    def action_space(self) -> Box:
        return self._space

    def perform(self, env, action) -> None:
        self.state.act(action)


class TargetWeightsAction(ActionScheme):
    """Box of target weights applied as given (the baselines' action scheme); same band, costs and timing."""

    def __init__(self, state: TradingState) -> None:
        super().__init__()
        self.state = state
        lev = state.config.max_leverage
        self._space = Box(
            0.0 if state.config.long_only else -lev, lev, shape=(state.n_assets,), dtype=np.float32
        )

    @property
    def action_space(self) -> Box:
        return self._space

    def perform(self, env, action) -> None:
        self.state.execute(action)


class RiskAwareReward(RewardScheme):
    """Differential Sharpe ratio (Moody & Saffell 1998, O(1) per step) - a * new drawdown beyond a tolerance
    - b * turnover, each term over the running volatility.

    The arithmetic (`tt_rl.kernels.risk_aware_reward`, coefficients from the env's RewardConfig) runs inside the
    state's compiled step; this scheme hands TensorTrade the step's reward. Its terms are in `state.record`."""

    def __init__(self, state: TradingState) -> None:
        super().__init__()
        self.state = state

    def reward(self, env) -> float:
        return self.state.reward


class DrawdownStopper(Stopper):
    """Terminates on ruin (net worth <= 0 or a margin call: see kernels.env_step; always, in training and
    evaluation), when drawdown from the running peak exceeds the limit, or at the episode's last bar."""

    def __init__(self, state: TradingState) -> None:
        super().__init__()
        self.state = state
        self.reason: str | None = None

    def reset(self) -> None:
        self.reason = None

    def stop(self, env) -> bool:
        state = self.state
        if state.ruined:
            self.reason = "ruin"
        elif state.portfolio.drawdown > state.config.max_drawdown:
            self.reason = "drawdown"
        elif state.t >= state.end:
            self.reason = "end_of_data"
        return self.reason is not None


class WindowObserver(Observer):
    """float32 observation: the last window_size bars of every feature of every asset, then current weights."""

    def __init__(self, state: TradingState) -> None:
        super().__init__()
        self.state = state
        self._space = Box(-np.inf, np.inf, shape=(state.observation_size,), dtype=np.float32)

    @property
    def observation_space(self) -> Box:
        return self._space

    def observe(self, env) -> np.ndarray:
        return self.state.observation


class StepInfo(dict):
    """A step's info dict whose values are immutable (numbers, strings, read-only arrays): a deep copy is a
    shallow one. SB3's DummyVecEnv deep-copies every step's infos, which cost more than the step itself."""

    def __deepcopy__(self, memo: dict) -> StepInfo:
        return StepInfo(self)


class PortfolioInformer(Informer):
    """info: bar index, net worth, cash, weights (N,), turnover, costs, drawdown, rebalanced, stop reason."""

    def __init__(self, state: TradingState, stopper: DrawdownStopper) -> None:
        super().__init__()
        self.state = state
        self.stopper = stopper

    def info(self, env) -> StepInfo:
        state, book = self.state, self.state.portfolio
        return StepInfo(
            {
                "bar": state.t,
                "net_worth": book.net_worth,
                "cash": book.cash,
                "weights": book.weights,
                "turnover": state.turnover,
                "costs": state.costs,
                "drawdown": book.drawdown,
                "period_return": state.period_return,
                "rebalanced": state.rebalanced,
                "stop_reason": self.stopper.reason,
            }
        )
