"""Planted-signal markets generated in code, each with its oracle: the yardstick of what an agent can learn.

Every market is daily bars of `n_symbols` assets with per-bar volatility `sigma` and pairwise correlation
`correlation` (one common factor). A bar's close-to-close return is its overnight gap (close -> open) times its
session (open -> close); a decision at a bar's close fills at the next open, so a signal can only be captured
in the next bar's session. The first kinds have no gap (each bar opens at the previous close); the later
kinds (lead_lag and after) add an unpredictable gap of GAP_SIGMA per bar and plant their signal in the session
part only. Kinds:

- sign_persistence: r[t+1] = strength * sign(r[t]) + noise, per asset (time-series momentum of one bar;
  tt_resources.sign_persistence). Oracle: hold the assets whose last return was positive.
- reversal: r_i[t+1] = -strength * (r_i[t] - mean_j r_j[t]) + noise (cross-sectional short-term
  reversal). Oracle: hold the assets whose last return was below the cross-sectional mean, each in proportion
  to its expected rebound.
- drift: one asset at a time outperforms: it drifts by `strength` per bar and the others by
  -strength / (N - 1) (the market does not drift); every DRIFT_BARS bars the drift moves to another asset,
  drawn at random. (A fixed drifter is what equal weight bought and held captures over a long test: on 6,000
  bars that book became 98 % asset 0, Sharpe 2.82 against the capped oracle's 3.27.) Oracle: hold the asset
  of the highest 20-bar return (mom_20), where it is positive.
- vol_regime: a hidden two-state Markov regime (mean stay `regime_bars` bars): calm (sigma, drift
  +strength) and stormy (3 sigma, drift -2 strength); the 20-bar realised volatility feature reveals it.
  Oracle: invested while vol_20 is below the midpoint 2 sigma.
- lead_lag: in each pair (2i, 2i + 1) the leader's close-to-close return moves its follower's next session,
  session_{2i+1}[t+1] += strength * r_{2i}[t] (a signal in another asset: invisible to the follower's own
  features). Oracle: hold each follower in proportion to its expected session return, where it is positive.
- volume: each asset's volume spikes (x VOLUME_SPIKE) on a share SPIKE_RATE of its bars, and the session after
  a spike drifts by +strength. Oracle: hold the assets whose volume z-score (volume_z_20) exceeds
  SPIKE_Z.
- momentum_rank: the next session of each asset drifts by strength * sigma * its centred cross-sectional rank
  of the last MOMENTUM_BARS bars' return (in [-1, 1]; meant for ~15 assets). Oracle: hold the top half in
  proportion to that rank.
- beta: every asset drifts by `strength` per bar (a market Sharpe of about 1) and nothing predicts anything
  beyond it: a null market, on which holding the market is all there is to know. Oracle: hold every asset.
- noise: no signal at all. Oracle: cash (there is nothing to know).

Oracles are weight policies like tt_rl.baselines (target weights (N,) from the TradingState at the decision
bar) and size their positions through the agent's own volatility targeting (`kernels.vol_targeted_weights`),
so the agent, the oracle and the baselines pay the same costs and obey the same caps and next-open fills.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tt_resources.sign_persistence import persistence_drift
from tt_resources.terms import PLANTED_MARKETS, PlantedKind
from tt_rl.panel import Panel, panel_from_frames
from tt_rl.synthetic import long_bars

NULL_KINDS: tuple[PlantedKind, ...] = ("beta", "noise")  # nothing to predict: no skill can be found there
PLANTED_KINDS: tuple[PlantedKind, ...] = tuple(k for k in PLANTED_MARKETS if k not in NULL_KINDS)  # a signal
# per-bar size of each kind's signal (fraction of price) at sigma 1.5 % (sign_persistence:
# tt_resources.sign_persistence says why it differs from the synthetic source's)
STRENGTH: dict[PlantedKind, float] = {
    "sign_persistence": 0.003,
    "reversal": 0.15,  # a reversal coefficient, not a return
    "drift": 0.005,
    "vol_regime": 0.0015,
    "lead_lag": 0.2,  # a coefficient on the leader's return, not a return
    "volume": 0.006,  # per session after a spike (a spike on 1 bar in 10)
    "momentum_rank": 0.2,  # in units of sigma per unit of centred rank
    "beta": 0.0006,  # the market's drift: an equal-weight Sharpe of about 1 at the default sigma, correlation
    "noise": 0.0,
}
SYMBOLS: dict[PlantedKind, int] = {"momentum_rank": 15}  # assets of a kind's market when not 5
REGIME_BARS = 60
DRIFT_BARS = 100  # bars between moves of the drift to another asset
GAP_KINDS: tuple[PlantedKind, ...] = ("lead_lag", "volume", "momentum_rank", "beta")  # with overnight gaps
GAP_SIGMA = 0.005  # per-bar volatility of their overnight gaps (unpredictable)
SPIKE_RATE, VOLUME_SPIKE, SPIKE_Z = 0.1, 6.0, 1.5
MOMENTUM_BARS = 5


@dataclass(frozen=True)
class PlantedBars:
    """A planted market's bars as simple returns (n_bars, n_symbols): `gap` previous close -> open (the part a
    next-open fill cannot reach) and `session` open -> close; `volume` shares per bar; `spread` the bar's
    range beyond its body."""

    gap: np.ndarray
    session: np.ndarray
    volume: np.ndarray
    spread: np.ndarray  # high above max(open, close) and low below min(open, close), as fractions

    @property
    def returns(self) -> np.ndarray:
        """Close-to-close simple returns (n_bars, n_symbols)."""
        return (1.0 + self.gap) * (1.0 + self.session) - 1.0


def planted_bars(
    kind: PlantedKind,
    n_bars: int,
    n_symbols: int,
    *,
    seed: int = 0,
    sigma: float = 0.015,
    correlation: float = 0.3,
    strength: float | None = None,
) -> PlantedBars:
    """Gaps, sessions and volumes of a planted market of `kind` (see module doc); seeded. The kinds before
    lead_lag draw exactly what they drew before the gap kinds existed (their markets are unchanged)."""
    if kind not in PLANTED_MARKETS:
        raise ValueError(f"unknown planted market {kind!r}: one of {', '.join(PLANTED_MARKETS)}")
    rng = np.random.default_rng(seed)
    k = STRENGTH[kind] if strength is None else strength
    common = rng.standard_normal((n_bars, 1))
    shocks = np.sqrt(correlation) * common + np.sqrt(1 - correlation) * rng.standard_normal(
        (n_bars, n_symbols)
    )
    ranges = np.random.default_rng([seed, 1])
    spread = np.abs(ranges.normal(0.0, sigma / 2, shocks.shape))
    volume = ranges.integers(100_000, 1_000_000, shocks.shape).astype(float)
    extra = np.random.default_rng([seed, 2])  # what the gap kinds draw beyond the shocks
    gap = GAP_SIGMA * extra.standard_normal(shocks.shape) if kind in GAP_KINDS else np.zeros(shocks.shape)
    session = sigma * shocks
    if kind == "vol_regime":
        stay = 1.0 - 1.0 / REGIME_BARS
        stormy = np.zeros(n_bars, dtype=bool)
        for t in range(1, n_bars):
            stormy[t] = stormy[t - 1] if rng.random() < stay else not stormy[t - 1]
        scale = np.where(stormy, 3.0 * sigma, sigma)[:, None]
        session = np.where(stormy, -2.0 * k, k)[:, None] + scale * shocks
    elif kind == "drift":
        drifter = 0
        for start in range(0, n_bars, DRIFT_BARS):
            stint = session[start : start + DRIFT_BARS]
            stint -= k / (n_symbols - 1)
            stint[:, drifter] += k * n_symbols / (n_symbols - 1)
            drifter = (drifter + extra.integers(1, n_symbols)) % n_symbols  # another asset
    elif kind == "beta":
        session += k
    elif kind == "sign_persistence":
        session = session + persistence_drift(session, k)
    elif kind == "reversal":
        for t in range(1, n_bars):
            last = session[t - 1]
            session[t] += -k * (last - last.mean())
    elif kind == "lead_lag":
        leaders = np.arange(0, n_symbols - 1, 2)
        session[1:, leaders + 1] += k * ((1.0 + gap[:-1, leaders]) * (1.0 + session[:-1, leaders]) - 1.0)
    elif kind == "volume":
        spikes = extra.random(shocks.shape) < SPIKE_RATE
        volume = np.where(spikes, VOLUME_SPIKE * volume, volume)
        session[1:] += np.where(spikes[:-1], k, 0.0)
    elif kind == "momentum_rank":
        r = (1.0 + gap) * (1.0 + session) - 1.0
        for t in range(MOMENTUM_BARS - 1, n_bars - 1):
            momentum = np.prod(1.0 + r[t - MOMENTUM_BARS + 1 : t + 1], axis=0)
            session[t + 1] += k * sigma * centred_rank(momentum)
            r[t + 1] = (1.0 + gap[t + 1]) * (1.0 + session[t + 1]) - 1.0
    return PlantedBars(gap, np.maximum(session, -0.9), volume, spread)


def centred_rank(values: np.ndarray) -> np.ndarray:
    """Cross-sectional ranks of `values` (N,) mapped linearly onto [-1, 1] (lowest -1, highest +1)."""
    n = len(values)
    return 2.0 * np.argsort(np.argsort(values)) / max(n - 1, 1) - 1.0


def planted_returns(kind: PlantedKind, n_bars: int, n_symbols: int, **market) -> np.ndarray:
    """Close-to-close simple returns (n_bars, n_symbols) of `planted_bars(kind, ...)`."""
    return planted_bars(kind, n_bars, n_symbols, **market).returns


def planted_panel(
    kind: PlantedKind,
    n_bars: int = 2000,
    n_symbols: int | None = None,
    *,
    seed: int = 0,
    sigma: float = 0.015,
    correlation: float = 0.3,
    strength: float | None = None,
) -> Panel:
    """Daily panel of a planted market (`n_symbols` None: the kind's SYMBOLS, else 5): bars from
    `planted_bars` (opening at the previous close times the gap), features computed from them (the warm-up
    bars cut, so the panel is a little shorter than n_bars)."""
    n_symbols = n_symbols or SYMBOLS.get(kind, 5)
    bars = planted_bars(
        kind, n_bars, n_symbols, seed=seed, sigma=sigma, correlation=correlation, strength=strength
    )
    close = 100.0 * np.cumprod(1.0 + bars.returns, axis=0)
    open_ = np.vstack([np.full((1, n_symbols), 100.0), close[:-1]]) * (1.0 + bars.gap)
    high = np.maximum(open_, close) * (1.0 + bars.spread)
    low = np.minimum(open_, close) * (1.0 - bars.spread)
    ts = pd.bdate_range("2000-01-03", periods=n_bars, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    symbols = [f"P{j:02d}" for j in range(n_symbols)]
    return panel_from_frames("1d", long_bars(symbols, ts, open_, high, low, close, bars.volume))


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


def _in_proportion(state, edge: np.ndarray) -> np.ndarray:
    """Sized weights with scores proportional to the expected next session return `edge` (N,) where it is
    positive (the largest scores 1), cash where it is not."""
    edge = np.maximum(edge.astype(np.float64), 0.0)
    return _sized(state, edge / edge.max() if edge.max() > 0 else edge)


def reversal_oracle(state) -> np.ndarray:
    """Scores proportional to the expected next return, strength * (mean - r_i), where it is positive."""
    last = _feature(state, "ret_1").astype(np.float64)
    return _in_proportion(state, last.mean() - last)


def drift_oracle(state) -> np.ndarray:
    """The asset of the highest 20-bar return (mom_20), where it is positive."""
    trailing = _feature(state, "mom_20").astype(np.float64)
    scores = np.zeros(state.n_assets)
    if trailing.max() > 0:
        scores[int(np.argmax(trailing))] = 1.0
    return _sized(state, scores)


def vol_regime_oracle(state, sigma: float = 0.015) -> np.ndarray:
    calm = float(np.mean(_feature(state, "vol_20"))) < 2.0 * sigma
    return _sized(state, np.full(state.n_assets, 1.0 if calm else 0.0))


def lead_lag_oracle(state) -> np.ndarray:
    """Each follower 2i + 1 in proportion to strength * its leader's last return, where that is positive."""
    last = _feature(state, "ret_1").astype(np.float64)
    edge = np.zeros(state.n_assets)
    leaders = np.arange(0, state.n_assets - 1, 2)
    edge[leaders + 1] = last[leaders]
    return _in_proportion(state, edge)


def volume_oracle(state) -> np.ndarray:
    """The assets whose volume spiked at the decision bar (volume_z_20 above SPIKE_Z)."""
    return _sized(state, (_feature(state, "volume_z_20") > SPIKE_Z).astype(float))


def momentum_rank_oracle(state) -> np.ndarray:
    """The top half by MOMENTUM_BARS-bar return, in proportion to the centred rank (from the panel's closes)."""
    prices = state.panel.prices
    if state.t < MOMENTUM_BARS:
        return np.zeros(state.n_assets)
    return _in_proportion(state, centred_rank(prices[state.t] / prices[state.t - MOMENTUM_BARS]))


def beta_oracle(state) -> np.ndarray:
    """The market: every asset (the common drift is all there is to know)."""
    return _sized(state, np.ones(state.n_assets))


def noise_oracle(state) -> np.ndarray:
    return np.zeros(state.n_assets)


ORACLES: dict[PlantedKind, Callable] = {
    "sign_persistence": sign_persistence_oracle,
    "reversal": reversal_oracle,
    "drift": drift_oracle,
    "vol_regime": vol_regime_oracle,
    "lead_lag": lead_lag_oracle,
    "volume": volume_oracle,
    "momentum_rank": momentum_rank_oracle,
    "beta": beta_oracle,
    "noise": noise_oracle,
}
