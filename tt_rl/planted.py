"""Planted-signal markets generated in code, each with its oracle: the yardstick of what an agent can learn.

Every market is daily bars of `n_symbols` assets with per-bar volatility `sigma` and pairwise correlation
`correlation` (one common factor), returns close to close; each bar opens at the previous close, so a
decision filled at the next open trades at the price it observed (the signal is not lost in a gap). Kinds:

- sign_persistence: r[t+1] = strength * sign(r[t]) + noise, per asset (time-series momentum of one bar;
  tt_resources.sign_persistence). Oracle: hold the assets whose last return was positive.
- reversal: r_i[t+1] = -strength * (r_i[t] - mean_j r_j[t]) + noise (cross-sectional short-term
  reversal). Oracle: hold the assets whose last return was below the cross-sectional mean, each in proportion
  to its expected rebound.
- drift: asset 0 drifts by `strength` per bar, the others not at all. Oracle: hold asset 0 only.
- vol_regime: a hidden two-state Markov regime (mean stay `regime_bars` bars): calm (sigma, drift
  +strength) and stormy (3 sigma, drift -2 strength); the 20-bar realised volatility feature reveals it.
  Oracle: invested while vol_20 is below the midpoint 2 sigma.
- noise: no signal at all. Oracle: cash (there is nothing to know).

Oracles are weight policies like tt_rl.baselines (target weights (N,) from the TradingState at the decision
bar) and size their positions through the agent's own volatility targeting (`kernels.vol_targeted_weights`),
so the agent, the oracle and the baselines pay the same costs and obey the same caps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from tt_resources.sign_persistence import persistence_drift
from tt_resources.terms import PLANTED_MARKETS, PlantedKind
from tt_rl.panel import Panel, panel_from_frames
from tt_rl.synthetic import long_bars

PLANTED_KINDS: tuple[PlantedKind, ...] = tuple(k for k in PLANTED_MARKETS if k != "noise")  # with a signal
# per-bar size of each kind's signal (fraction of price) at sigma 1.5 % (sign_persistence:
# tt_resources.sign_persistence says why it differs from the synthetic source's)
STRENGTH: dict[PlantedKind, float] = {
    "sign_persistence": 0.003,
    "reversal": 0.15,  # a reversal coefficient, not a return
    "drift": 0.003,
    "vol_regime": 0.0015,
    "noise": 0.0,
}
REGIME_BARS = 60


def planted_returns(
    kind: PlantedKind,
    n_bars: int,
    n_symbols: int,
    *,
    seed: int = 0,
    sigma: float = 0.015,
    correlation: float = 0.3,
    strength: float | None = None,
) -> np.ndarray:
    """Simple returns (n_bars, n_symbols) of a planted market of `kind` (see module doc); seeded."""
    if kind not in PLANTED_MARKETS:
        raise ValueError(f"unknown planted market {kind!r}: one of {', '.join(PLANTED_MARKETS)}")
    rng = np.random.default_rng(seed)
    k = STRENGTH[kind] if strength is None else strength
    common = rng.standard_normal((n_bars, 1))
    shocks = np.sqrt(correlation) * common + np.sqrt(1 - correlation) * rng.standard_normal(
        (n_bars, n_symbols)
    )
    if kind == "vol_regime":
        stay = 1.0 - 1.0 / REGIME_BARS
        stormy = np.zeros(n_bars, dtype=bool)
        for t in range(1, n_bars):
            stormy[t] = stormy[t - 1] if rng.random() < stay else not stormy[t - 1]
        scale = np.where(stormy, 3.0 * sigma, sigma)[:, None]
        return np.where(stormy, -2.0 * k, k)[:, None] + scale * shocks
    noise = sigma * shocks
    if kind == "drift":
        noise[:, 0] += k
        return noise
    if kind == "sign_persistence":
        return noise + persistence_drift(noise, k)
    if kind == "reversal":
        r = np.empty_like(noise)
        r[0] = noise[0]
        for t in range(1, n_bars):
            last = r[t - 1]
            r[t] = -k * (last - last.mean()) + noise[t]
        return r
    return noise


def planted_panel(
    kind: PlantedKind,
    n_bars: int = 2000,
    n_symbols: int = 5,
    *,
    seed: int = 0,
    sigma: float = 0.015,
    correlation: float = 0.3,
    strength: float | None = None,
) -> Panel:
    """Daily panel of a planted market: bars from `planted_returns` (each opening at the previous close),
    features computed from them (the warm-up bars cut, so the panel is a little shorter than n_bars)."""
    returns = planted_returns(
        kind, n_bars, n_symbols, seed=seed, sigma=sigma, correlation=correlation, strength=strength
    )
    rng = np.random.default_rng([seed, 1])
    close = 100.0 * np.cumprod(1.0 + np.maximum(returns, -0.9), axis=0)
    open_ = np.vstack([close[:1] / (1.0 + returns[:1]), close[:-1]])
    spread = np.abs(rng.normal(0.0, sigma / 2, close.shape))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    volume = rng.integers(100_000, 1_000_000, close.shape).astype(float)
    ts = pd.bdate_range("2000-01-03", periods=n_bars, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    symbols = [f"P{j:02d}" for j in range(n_symbols)]
    bars = long_bars(symbols, ts, open_, high, low, close, volume)
    return panel_from_frames("1d", bars)


def _feature(state, name: str) -> np.ndarray:
    """Feature `name` (N,) of every asset at the decision bar."""
    panel = state.panel
    return panel.features[state.t, :, panel.feature_names.index(name)]


def _sized(state, scores: np.ndarray) -> np.ndarray:
    """Scores (N,) in [0, 1] -> the agent's volatility-targeted weights at the decision bar."""
    from tt_rl.kernels import Sizing, vol_targeted_weights

    sizing = Sizing.of(state.config, state.bars_per_year)
    return vol_targeted_weights(
        scores.astype(np.float64), state.vols[state.t], np.zeros((0, state.n_assets)), sizing
    )


def sign_persistence_oracle(state) -> np.ndarray:
    return _sized(state, (_feature(state, "ret_1") > 0).astype(float))


def reversal_oracle(state) -> np.ndarray:
    """Scores proportional to the expected next return, strength * (mean - r_i), where it is positive."""
    last = _feature(state, "ret_1").astype(np.float64)
    edge = np.maximum(last.mean() - last, 0.0)
    return _sized(state, edge / edge.max() if edge.max() > 0 else edge)


def drift_oracle(state) -> np.ndarray:
    scores = np.zeros(state.n_assets)
    scores[0] = 1.0
    return _sized(state, scores)


def vol_regime_oracle(state, sigma: float = 0.015) -> np.ndarray:
    calm = float(np.mean(_feature(state, "vol_20"))) < 2.0 * sigma
    return _sized(state, np.full(state.n_assets, 1.0 if calm else 0.0))


def noise_oracle(state) -> np.ndarray:
    return np.zeros(state.n_assets)


ORACLES: dict[PlantedKind, Callable] = {
    "sign_persistence": sign_persistence_oracle,
    "reversal": reversal_oracle,
    "drift": drift_oracle,
    "vol_regime": vol_regime_oracle,
    "noise": noise_oracle,
}
