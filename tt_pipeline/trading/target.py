"""The champion's target portfolio for a session: its observation built exactly as the environment builds it
(tt_rl.state.TradingState over the stored bars and features), its deterministic action, and the weights of
the same volatility-targeted sizing (TradingState.target_at = the step's kernels.sized_target).

A target is made only when the session's 1d bar and features are stored for every symbol the model trades
and pass their checks; otherwise `NoTarget` says why in one line. torch / SB3 are loaded with the policy
(`load_policy`), once per process; computing a target then reads a few dozen bars per symbol.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.calendar import bar_table, session_open
from tt_resources.db.features import read_features
from tt_resources.db.prices import quarantined, read_bars
from tt_resources.terms import FEATURE_COLUMNS
from tt_resources.timeframes import get_timeframe
from tt_rl.config import RLConfig
from tt_rl.panel import DEFAULT_FFILL_LIMIT, panel_from_frames
from tt_rl.state import TradingState
from tt_rl.train import META_FILE, MODEL_FILE, NORMALIZE_FILE, load_model

TIMEFRAME = "1d"


class NoTarget(ValueError):
    """No target for the session: one line naming the symbol (or model) and why."""


@dataclass(frozen=True)
class Policy:
    """A registered model ready to act: its id, config, symbols (the env's asset order) and
    `act(observation (D,)) -> action (N,)`, deterministic, through the frozen training normalisation."""

    model_id: str
    config: RLConfig
    symbols: tuple[str, ...]
    act: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Target:
    """Target weights (fractions of net liquidation, >= 0; cash = 1 - sum) decided on the bar `decision_ts`
    of `session`, with that bar's closes the orders are sized with; `actions` the policy's raw output."""

    model_id: str
    session: dt.date
    decision_ts: dt.datetime
    weights: dict[str, float]
    closes: dict[str, float]
    actions: tuple[float, ...] = ()


@cache
def load_policy(model_id: str, path: str, config_json: str) -> Policy:
    """The PPO model saved in the run directory `path` (tt_rl.train) with its VecNormalize statistics,
    frozen (read, never updated); cached per process. `config_json`: the tt_model row's config (JSON)."""
    run = Path(path)
    meta = json.loads((run / META_FILE).read_text())
    config = RLConfig.from_dict(json.loads(config_json), source=f"model {model_id}")
    model = load_model(run, config)
    normalizer = None
    if (run / NORMALIZE_FILE).exists():
        with (run / NORMALIZE_FILE).open("rb") as fh:
            normalizer = pickle.load(fh)  # our own file, written by tt_rl.train (VecNormalize.save)
        normalizer.training = False
        size = model.observation_space.shape
        if normalizer.obs_rms.mean.shape != size:
            raise NoTarget(f"model {model_id}: normalisation statistics do not fit its observation {size}")

    def act(observation: np.ndarray) -> np.ndarray:
        obs = observation[None, :]
        if normalizer is not None:
            obs = normalizer.normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0][0]

    return Policy(model_id, config, tuple(meta["symbols"]), act)


def policy_of(model: Mapping) -> Policy:
    """`load_policy` of a tt_model row; NoTarget when the row has no saved policy (a walk-forward model is
    one model per fold: train its production model, tt_pipeline.models.train_production)."""
    if not (Path(model["path"]) / MODEL_FILE).exists():
        raise NoTarget(
            f"model {model['model_id']} has no saved policy at {model['path']}: a walk-forward model trades "
            "through its production model (tt_pipeline.models.train_production)"
        )
    return load_policy(model["model_id"], model["path"], json.dumps(model["config"], sort_keys=True))


def history_start(session: dt.date, bars: int) -> pd.Timestamp:
    """Open of the session `bars` sessions before `session` (the first bar a target reads)."""
    first = pd.Timestamp(session) - pd.Timedelta(days=2 * bars + 10)
    table = bar_table(TIMEFRAME, first.tz_localize("UTC"), session_open(session) + pd.Timedelta(hours=1))
    return table["ts"].iloc[max(len(table) - bars, 0)]


def compute_target(
    engine: sa.Engine, policy: Policy, session: dt.date, held: Mapping[str, float] | None = None
) -> Target:
    """The target of `policy` decided on `session`'s 1d bar, for a book whose current weights at that close
    are `held` (symbol -> weight; absent = 0, None = all cash). NoTarget (one line) when a symbol's bar or
    features of the session are missing or failed their checks, or the session is not a session."""
    try:
        decision = session_open(session)
    except ValueError as exc:
        raise NoTarget(str(exc)) from None
    env = policy.config.env
    symbols = list(policy.symbols)
    needed = env.window_size + (env.cov_window if env.cov_shrinkage < 1.0 else 0) + DEFAULT_FFILL_LIMIT + 2
    start, end = history_start(session, needed), decision + pd.Timedelta(hours=1)
    bars = read_bars(engine, symbols, TIMEFRAME, start=start, end=end)
    features = read_features(engine, symbols, TIMEFRAME, start=start, end=end)
    _check_session(engine, symbols, session, decision, bars, features)
    panel = panel_from_frames(TIMEFRAME, bars, features)
    dropped = sorted(set(symbols) - set(panel.symbols))
    if dropped:
        raise NoTarget(f"no target for {session}: the recent bars of {', '.join(dropped)} have gaps")
    if panel.symbols != tuple(symbols):  # panel_from_frames sorts; the model's order is the env's
        order = [panel.symbols.index(s) for s in symbols]
        panel = type(panel)(
            panel.timeframe,
            tuple(symbols),
            panel.index,
            panel.prices[:, order],
            panel.features[:, order],
            panel.feature_names,
            opens=panel.opens[:, order],
            missing=panel.missing[:, order],
        )
    state = TradingState(panel, env, get_timeframe(TIMEFRAME).bars_per_year, policy.config.reward)
    t = len(panel) - 1
    current = np.array([float((held or {}).get(s, 0.0)) for s in symbols])
    action = np.asarray(policy.act(state.observation_at(t, current)), dtype=np.float64)
    weights = state.target_at(action, t)
    closes = panel.prices[t]
    return Target(
        policy.model_id,
        session,
        decision.to_pydatetime(),
        {s: float(w) for s, w in zip(symbols, weights, strict=True)},
        {s: float(c) for s, c in zip(symbols, closes, strict=True)},
        tuple(float(a) for a in action),
    )


def _check_session(
    engine: sa.Engine,
    symbols: list[str],
    session: dt.date,
    decision: pd.Timestamp,
    bars: pd.DataFrame,
    features: pd.DataFrame,
) -> None:
    """NoTarget naming the first symbol whose `session` bar is missing (quarantined: with the rule it broke)
    or whose features at that bar are missing or not finite."""
    have_bar = set(bars.loc[bars["ts"] == decision, "symbol"])
    at_bar = features.loc[features["ts"] == decision]
    finite = at_bar[list(FEATURE_COLUMNS)].apply(np.isfinite).all(axis=1)
    have_features = set(at_bar.loc[finite, "symbol"])
    for symbol in symbols:
        if symbol not in have_bar:
            held = quarantined(engine, [symbol], TIMEFRAME)
            held = held.loc[held["ts"] == decision]
            why = f"quarantined ({held['reason'].iloc[0]})" if len(held) else "not stored"
            raise NoTarget(f"no target for {session}: the {TIMEFRAME} bar of {symbol} is {why}")
        if symbol not in have_features:
            raise NoTarget(
                f"no target for {session}: the {TIMEFRAME} features of {symbol} are missing at its bar "
                "(refresh the partition)"
            )
