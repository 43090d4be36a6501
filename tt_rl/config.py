"""RL settings as strict pydantic dataclasses: environment, reward, PPO, evaluation and logging; JSON/YAML files.

Every field is type-checked without coercion (no "two" for an int, no "no" for a bool; an int is fine where a
float is expected) and range-checked, at construction and on assignment. Any invalid value, unknown key or
unreadable file raises `RLConfigError` (a ValueError) with one line: `<source>: <key path>: <why> (got ...)`.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable
from dataclasses import asdict, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from tt_resources.terms import FEATURE_COLUMNS, PlantedKind


class RLConfigError(ValueError):
    """An invalid RL configuration: one line naming the source, the key path and the reason."""


PositiveInt = Annotated[int, Strict(), Field(ge=1)]
# upper bounds of the training budget: far above any run this platform makes, far below a typo's reach
# (10**9 steps is weeks of PPO on one core; a rollout of 2**20 steps per env already takes GBs of memory)
MAX_TIMESTEPS = 10**9
MAX_ROLLOUT = 2**20
MAX_ENVS = 256
MAX_REPEATS = 1_000  # epochs per update, folds, seeds
MAX_WIDTH = 4_096  # units in one hidden layer


def Bounded(low: int, high: int):
    """A strict int in low..high."""
    return Annotated[int, Strict(), Field(ge=low, le=high)]


PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]  # strict floats take ints too (stored as floats)
FeatureName = Literal[FEATURE_COLUMNS]  # any stored feature column

_PYDANTIC = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
_Section = TypeVar("_Section")


def _strict(key: str) -> Callable[[type[_Section]], type[_Section]]:
    """Class decorator: a pydantic dataclass (strict fields, no unknown keys, validated assignment) whose
    construction and assignment errors are one-line RLConfigErrors with key paths under `key`."""

    def wrap(cls: type[_Section]) -> type[_Section]:
        cls = dataclass(cls, config=_PYDANTIC)
        init, assign = cls.__init__, cls.__setattr__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise RLConfigError(describe(exc, "config", key)) from None

        @functools.wraps(assign)
        def __setattr__(self, name: str, value: Any) -> None:
            try:
                assign(self, name, value)
            except ValidationError as exc:
                raise RLConfigError(describe(exc, "config", key)) from None

        cls.__init__, cls.__setattr__ = __init__, __setattr__
        return cls

    return wrap


@_strict("env")
class EnvConfig:
    """Trading environment. Volatilities are annualised fractions, costs in basis points of traded value."""

    window_size: PositiveInt = 1  # bars of features in one observation
    initial_cash: PositiveFloat = 100_000.0
    commission_bps: NonNegativeFloat = 1.0
    slippage_bps: NonNegativeFloat = 2.0
    long_only: StrictBool = True
    # when a decision at bar t trades: at t+1's open (realistic) or at t's close (the close that was observed)
    fill: Literal["next_open", "close"] = "next_open"
    # ruin ends the episode: net worth <= 0 or below this share of the gross position value (margin call)
    maintenance_margin: Fraction = 0.25
    target_vol: PositiveFloat = 0.15  # forecast portfolio volatility the weights are scaled to
    max_weight: Annotated[float, Strict(), Field(gt=0, le=1)] = 0.25  # per-asset cap on |weight|
    max_leverage: PositiveFloat = 1.0  # cap on gross exposure sum |weight|
    # cap on the gross weight of one watchlist sector (1 = none; the live limit: TT_TRADING_MAX_SECTOR_WEIGHT)
    max_sector_weight: Annotated[float, Strict(), Field(gt=0, le=1)] = 1.0
    no_trade_band: NonNegativeFloat = 0.02  # skip a rebalance when sum |target - current| is below this
    correlation: Annotated[float, Strict(), Field(ge=-1, le=1)] = 0.3  # constant pairwise correlation
    # weight of the constant-correlation model vs the sample covariance (1 = model)
    cov_shrinkage: Fraction = 1.0
    cov_window: Annotated[int, Strict(), Field(ge=2)] = 60  # bars of returns for the sample covariance part
    vol_feature: FeatureName = "vol_20"  # per-bar realised volatility feature used for the forecast
    min_vol: PositiveFloat = 0.02  # floor on an asset's annualised volatility
    # DrawdownStopper limit (inf: never stop)
    max_drawdown: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=True)] = 0.3
    max_episode_steps: PositiveInt | None = 252  # truncation (None = run to the data's end)
    random_start: StrictBool = True  # training episodes start at a random bar

    @property
    def cost_rate(self) -> float:
        """Commission + slippage as a fraction of traded value."""
        return (self.commission_bps + self.slippage_bps) / 1e4


@_strict("reward")
class RewardConfig:
    """RiskAwareReward = differential Sharpe ratio - penalties, all in units of a step return over the running
    volatility (formulas: tt_rl.kernels). Costs are inside the step return, so they are charged once."""

    eta: Annotated[float, Strict(), Field(gt=0, le=1)] = 0.01  # adaptation rate of the DSR's moving moments
    vol_floor: PositiveFloat = 0.01  # annualised floor of the volatility the DSR divides by
    drawdown_penalty: NonNegativeFloat = 0.5  # per unit of new drawdown beyond the tolerance
    drawdown_tolerance: Fraction = 0.2  # drawdown (fraction) a policy may enter at no extra cost
    turnover_penalty: NonNegativeFloat = (
        0.0  # extra cost per unit turnover on top of the real costs (fraction)
    )
    clip: PositiveFloat = 10.0  # cap on |each term|


@_strict("ppo")
class PPOConfig:
    """Stable-Baselines3 PPO settings. batch_size <= n_steps * n_envs is checked by RLConfig."""

    total_timesteps: Bounded(1, MAX_TIMESTEPS) = 50_000
    n_envs: Bounded(1, MAX_ENVS) = 1
    vec_env: Literal["dummy", "subproc"] = "dummy"
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**32)] = 0  # numpy's seed range
    learning_rate: PositiveFloat = 3e-4
    n_steps: Bounded(2, MAX_ROLLOUT) = 512  # per environment and update
    batch_size: Bounded(2, MAX_ROLLOUT) = 128
    n_epochs: Bounded(1, MAX_REPEATS) = 5
    gamma: Fraction = 0.0
    gae_lambda: Fraction = 0.95
    clip_range: PositiveFloat = 0.2
    ent_coef: NonNegativeFloat = 0.0
    log_std_init: Annotated[float, Strict(), Field(ge=-5, le=2)] = 0.0  # initial log std of the actions
    # "cross_sectional": one scoring network shared by the assets (tt_rl.policy); "mlp": SB3's MlpPolicy
    policy: Literal["cross_sectional", "mlp"] = "cross_sectional"
    net_arch: Annotated[list[Bounded(1, MAX_WIDTH)], Field(min_length=1, max_length=16)] = field(
        default_factory=lambda: [64, 64]
    )
    # cross_sectional only: features of every asset in a term linear in them added to each asset's action mean
    # (tt_rl.policy; the last return: a VAR(1) cross term, lead-lag; [] none; docs/rl.md measures the choice)
    cross_features: list[FeatureName] = field(default_factory=lambda: ["ret_1"])
    normalize: StrictBool = True  # VecNormalize observations and rewards
    checkpoint_every: PositiveInt = 10_000  # timesteps between checkpoints
    torch_threads: PositiveInt = 1
    progress_bar: StrictBool = True


@_strict("eval")
class EvalConfig:
    """Walk-forward evaluation (tt_rl.walk_forward): the dataset's test period, its last `test_fraction` of the
    bars, is cut into `n_folds` consecutive test windows; each fold trains `seeds` PPO models on the bars
    before its window (all of them: anchored, or the first fold's length: rolling), `embargo` bars short of
    it, and scores them with the baselines (and the oracle of a planted market) on that window."""

    # share of a panel's bars held out for testing (the dataset's split)
    test_fraction: Annotated[float, Strict(), Field(gt=0, lt=1)] = 0.3
    n_folds: Bounded(1, MAX_REPEATS) = 3
    scheme: Literal["anchored", "rolling"] = "anchored"
    # bars between a fold's last training bar and its first test bar (None: env.window_size, the least allowed)
    embargo: PositiveInt | None = None
    seeds: Bounded(1, MAX_REPEATS) = 2  # PPO models per fold, seeded ppo.seed, ppo.seed + 1, ...
    # a planted market whose oracle (tt_rl.planted.ORACLES) is scored like a baseline under the name "oracle"
    oracle: PlantedKind | None = None


@_strict("logging")
class LogConfig:
    """Episode logging to the database."""

    log_training: StrictBool = False
    # with log_training: log only the episodes that start in the last (this + 1) x max_episode_steps steps
    # of each training env's budget, at least this many finished ones (None: every training episode)
    training_episodes: PositiveInt | None = None
    flush_every: PositiveInt = 1024  # steps buffered before one bulk write
    # per-symbol rows for training episodes (evaluation always logs them)
    holdings_in_training: StrictBool = False


SECTIONS: dict[str, type] = {
    "env": EnvConfig,
    "reward": RewardConfig,
    "ppo": PPOConfig,
    "eval": EvalConfig,
    "logging": LogConfig,
}


@_strict("")
class RLConfig:
    """All RL settings. `from_file` reads JSON or YAML with any subset of the sections."""

    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LogConfig = field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _check_batch(self) -> RLConfig:
        rollout = self.ppo.n_steps * self.ppo.n_envs
        if self.ppo.batch_size > rollout:
            raise ValueError(
                f"ppo.batch_size: must be <= ppo.n_steps * ppo.n_envs = {rollout} (got {self.ppo.batch_size})"
            )
        if self.eval.embargo is not None and self.eval.embargo < self.env.window_size:
            raise ValueError(
                f"eval.embargo: must be >= env.window_size = {self.env.window_size} (got {self.eval.embargo})"
            )
        return self

    @property
    def embargo(self) -> int:
        """Bars between a fold's last training bar and its first test bar: eval.embargo or env.window_size."""
        return self.env.window_size if self.eval.embargo is None else self.eval.embargo

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable), one key per section."""
        return asdict(self)

    def check(self) -> None:
        """Validate again as a whole: the cross-field rules after fields were assigned one by one."""
        RLConfig.from_dict(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> RLConfig:
        """Build from nested dicts (a missing or empty section keeps its defaults); raises RLConfigError."""
        if not isinstance(data, dict):
            raise RLConfigError(f"{source}: top level must be a mapping of sections (got {_show(data)})")
        data = {name: {} if values is None else values for name, values in data.items()}
        data = _renamed(data)
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise RLConfigError(describe(exc, source)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> RLConfig:
        """Read a .json, .yaml or .yml file; raises RLConfigError naming the file (and line/column)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise RLConfigError(f"{path}: config must be .json, .yaml or .yml")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise RLConfigError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
        if suffix == ".json":
            try:
                data = json.loads(text, object_pairs_hook=functools.partial(_unique_keys, path))
            except json.JSONDecodeError as exc:
                raise RLConfigError(
                    f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
        else:
            try:
                data = yaml.load(text, Loader=_YamlLoader)
            except yaml.YAMLError as exc:
                raise RLConfigError(f"{path}: invalid YAML {_yaml_where(exc)}") from None
        return cls.from_dict(data, source=str(path))


_ADAPTER = TypeAdapter(RLConfig)


def _unique_keys(path: Path, pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object as a dict; RLConfigError for a key given twice (json would keep the last silently)."""
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise RLConfigError(f"{path}: duplicate key {key!r}")
    return dict(pairs)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads exponent numbers without a dot (3e-4) as floats, as YAML 1.2 does, and
    rejects a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _yaml_where(exc: yaml.YAMLError) -> str:
    """'at line L, column C: problem' of a PyYAML error (1-based), on one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def describe(exc: ValidationError, source: str, key: str = "") -> str:
    """One line for a pydantic ValidationError: '<source>: <key path>: <why>', errors joined with '; '."""
    return f"{source}: " + "; ".join(_describe_error(error, key) for error in exc.errors())


_WHY = {
    "int_type": "must be an integer",
    "bool_type": "must be a boolean",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "list_type": "must be a list",
    "dataclass_type": "must be a mapping",
    "too_short": "must not be empty",
}
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _describe_error(error: dict[str, Any], key: str) -> str:
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    index = "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))
    path = ".".join([*([key] if key else []), *loc]) + index
    kind, ctx = error["type"], error.get("ctx", {})
    if (
        kind == "value_error"
    ):  # a field validator's reason, or a model validator's message (key path included)
        reason = str(ctx["error"])
        return f"{path}: {reason} (got {_show(error['input'])})" if loc else reason
    if kind == "unexpected_keyword_argument":
        return f"{path}: {_unknown(path)}"
    bounds = [f"{_BOUNDS[name]} {_number(ctx[name])}" for name in _BOUNDS if name in ctx]
    if bounds:
        why = "must be " + " and ".join(bounds)
    elif kind == "literal_error":
        why = f"must be {ctx['expected']}"
    else:
        why = _WHY.get(kind) or error["msg"][:1].lower() + error["msg"][1:]
    return f"{path}: {why} (got {_show(error['input'])})" if path else f"{why} (got {_show(error['input'])})"


def _unknown(path: str) -> str:
    """'unknown section/key', with the closest known name when there is one."""
    *parents, name = path.split(".")
    known = list(SECTIONS) if not parents else [f.name for f in fields(SECTIONS[parents[0]])]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown {'key' if parents else 'section'}{hint}"


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _renamed(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the settings of stored models' configs renamed since: ppo.cross_asset (a bool, until
    2026-12-08: the cross-asset term over every feature or none) -> ppo.cross_features (every feature or
    []), unless both are given (then strict validation names the unknown key)."""
    ppo = data.get("ppo")
    if isinstance(ppo, dict) and isinstance(ppo.get("cross_asset"), bool) and "cross_features" not in ppo:
        ppo = {k: v for k, v in ppo.items() if k != "cross_asset"}
        ppo["cross_features"] = list(FEATURE_COLUMNS) if data["ppo"]["cross_asset"] else []
        return {**data, "ppo": ppo}
    return data
