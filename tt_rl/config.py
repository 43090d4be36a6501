"""RL settings as dataclasses: environment, reward, PPO, evaluation and logging; JSON/YAML files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class EnvConfig:
    """Trading environment. Volatilities are annualised fractions, costs in basis points of traded value."""

    window_size: int = 10  # bars of features in one observation
    initial_cash: float = 100_000.0
    commission_bps: float = 1.0
    slippage_bps: float = 2.0
    long_only: bool = True
    target_vol: float = 0.15  # forecast portfolio volatility the weights are scaled to
    max_weight: float = 0.25  # per-asset cap on |weight|
    max_leverage: float = 1.0  # cap on gross exposure sum |weight|
    no_trade_band: float = 0.02  # skip a rebalance when sum |target - current| is below this
    correlation: float = 0.3  # constant pairwise correlation of the covariance model
    cov_shrinkage: float = (
        1.0  # weight of the constant-correlation model vs the sample covariance (1 = model)
    )
    cov_window: int = 60  # bars of returns for the sample covariance part
    vol_feature: str = "vol_20"  # per-bar realised volatility feature used for the forecast
    min_vol: float = 0.02  # floor on an asset's annualised volatility
    max_drawdown: float = 0.3  # DrawdownStopper limit
    max_episode_steps: int | None = 252  # truncation (None = run to the data's end)
    random_start: bool = True  # training episodes start at a random bar

    @property
    def cost_rate(self) -> float:
        """Commission + slippage as a fraction of traded value."""
        return (self.commission_bps + self.slippage_bps) / 1e4


@dataclass
class RewardConfig:
    """RiskAwareReward = differential Sharpe ratio - drawdown_penalty * drawdown - turnover_penalty * turnover."""

    eta: float = 0.01  # adaptation rate of the differential Sharpe ratio's moving moments
    drawdown_penalty: float = 0.5
    turnover_penalty: float = 0.1
    clip: float = 10.0  # |differential Sharpe term| cap


@dataclass
class PPOConfig:
    """Stable-Baselines3 PPO settings."""

    total_timesteps: int = 100_000
    n_envs: int = 1
    vec_env: str = "dummy"  # dummy | subproc
    seed: int = 0
    learning_rate: float = 3e-4
    n_steps: int = 512
    batch_size: int = 128
    n_epochs: int = 5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    normalize: bool = True  # VecNormalize observations and rewards
    checkpoint_every: int = 10_000  # timesteps between checkpoints
    torch_threads: int = 1
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """Walk-forward evaluation: the bars after the model's training span, cut into `n_windows` windows."""

    test_fraction: float = 0.3  # share of a panel's bars held out for testing (used by callers that split)
    n_windows: int = 3


@dataclass
class LogConfig:
    """Episode logging to the database."""

    log_training: bool = False
    flush_every: int = 1024  # steps buffered before one bulk write
    holdings_in_training: bool = False  # per-symbol rows for training episodes (evaluation always logs them)


SECTIONS: dict[str, type] = {
    "env": EnvConfig,
    "reward": RewardConfig,
    "ppo": PPOConfig,
    "eval": EvalConfig,
    "logging": LogConfig,
}


@dataclass
class RLConfig:
    """All RL settings. `from_file` reads JSON or YAML with any subset of the sections."""

    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RLConfig:
        """Build from nested dicts; unknown sections or fields raise ValueError naming them."""
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
        parts = {}
        for name, section in SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping")
            known = {f.name for f in fields(section)}
            bad = set(values) - known
            if bad:
                raise ValueError(
                    f"{source}: unknown field(s) {', '.join(f'{name}.{b}' for b in sorted(bad))}"
                )
            parts[name] = section(**values)
        return cls(**parts)

    @classmethod
    def from_file(cls, path: str | Path) -> RLConfig:
        """Read a .json, .yaml or .yml file."""
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ValueError(f"{path}: config must be .json, .yaml or .yml")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
        return cls.from_dict(data, source=str(path))
