"""The environment's arithmetic, compiled with numba: sizing, accounting, reward, observation, the step.

A step is a few dozen operations on N numbers; as numpy calls each cost a microsecond or more of dispatch,
several times that under PPO, whose forward pass evicts the caches between steps. So a whole step is one
call of `env_step` (see `tt_rl.state`), which writes its arrays into preallocated rows and returns its
scalars as one tuple. Parameters travel from Python as plain tuples (numba types a named tuple argument
~20x slower, ~2 us) and become `Sizing` / `RewardParams` inside compiled code.

Everything compiled lives in this one module on purpose: numba caches compiled code beside the module and
invalidates it when that module's file changes, not when a compiled function it calls changes in another
file, so a cached `env_step` would keep running an old `trade_and_mark` edited elsewhere. Compiled once per
machine (first use ~5-10 s), then loaded from the cache (~1 s).

Reward (`risk_aware_reward`), every term in the units of D, a step return over the running volatility:
reward = D - drawdown_penalty * new_drawdown / sigma - turnover_penalty * turnover / sigma, where D is Moody &
Saffell's (1998, "Performance functions and reinforcement learning for trading systems") differential Sharpe
ratio of the step return R (net of costs, so costs are charged once, inside R), O(1) per step: with moving
moments A (mean) and B (second moment) of R and rate eta, D = (B dA - A+ dB / 2) / sigma^3, dA = R - A,
dB = R^2 - B, sigma^2 = max(B - A^2, v_floor), clipped to +-clip. A+ = max(A, 0) departs from the paper on
purpose: with a negative running mean, -A dB / 2 grows with R^2 and the paper's D rewards a large loss
(a -59 % step scored the maximum reward); with A+ the term is increasing in R whenever A <= 0. new_drawdown
is the drawdown beyond `drawdown_tolerance` that this step added (max(dd, tol) - max(dd_before, tol), >= 0),
so holding through an ordinary dip costs nothing and flat is not the optimum; turnover_penalty is an extra
cost per unit of turnover (a fraction, like the cost rate; default 0). B starts at target_vol^2 /
bars_per_year (a portfolio on target), so the first steps are of order R / sigma; the floor v_floor =
vol_floor^2 / bars_per_year is far below it (1 % a year by default), so a quiet portfolio is scored on its own
volatility: a floor at the target volatility made D proportional to the return of any portfolio below target
and preferred a diluted book to the Sharpe-optimal one. A non-finite R counts as -100 %.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from tt_rl.config import EnvConfig, RewardConfig


class Sizing(NamedTuple):
    """Parameters of `vol_targeted_weights` (the step passes them as a plain tuple: see above)."""

    long_only: bool
    target_vol: float  # annualised
    correlation: float  # constant pairwise correlation of the covariance model
    shrinkage: float  # weight of the model vs the sample covariance (1 = model only)
    periods_per_year: float  # bars per year, to annualise the sample variance
    max_weight: float  # cap on each |weight|
    max_leverage: float  # cap on sum |weight|

    @classmethod
    def of(cls, config: EnvConfig, periods_per_year: float) -> Sizing:
        """From an EnvConfig, with plain bool/float fields (one compiled specialisation)."""
        return cls(
            bool(config.long_only),
            float(config.target_vol),
            float(config.correlation),
            float(config.cov_shrinkage),
            float(periods_per_year),
            float(config.max_weight),
            float(config.max_leverage),
        )


class RewardParams(NamedTuple):
    """Coefficients of `risk_aware_reward` (the step passes them as a plain tuple: see above)."""

    eta: float  # adaptation rate of the moving moments
    clip: float  # cap on |D|
    var_seed: float  # B before the first step: the per-bar variance of a portfolio on target
    var_floor: float  # per-bar variance floor of sigma^2
    drawdown_penalty: float
    drawdown_tolerance: float  # drawdown (fraction) below which a new drawdown costs nothing
    turnover_penalty: float  # extra cost per unit turnover (fraction)

    @classmethod
    def of(cls, config: RewardConfig, target_vol: float, bars_per_year: float) -> RewardParams:
        """From a RewardConfig; the variance seed from the env's annual target vol, the floor from the reward's
        annual vol_floor, both per bar."""
        return cls(
            float(config.eta),
            float(config.clip),
            float(target_vol**2 / bars_per_year),
            float(config.vol_floor**2 / bars_per_year),
            float(config.drawdown_penalty),
            float(config.drawdown_tolerance),
            float(config.turnover_penalty),
        )

    def initial_moments(self) -> np.ndarray:
        """(A, B) before the first step: (0, the variance seed)."""
        return np.array([0.0, self.var_seed])


@njit(cache=True)
def trade_and_mark(
    values: np.ndarray,
    cash: float,
    worth: float,
    peak: float,
    target: np.ndarray,
    band: float,
    cost_rate: float,
    growth: np.ndarray,
    new_peak: bool,
    out: np.ndarray,
    row: int,
    tradable: np.ndarray,
) -> tuple[float, float, float, float, bool]:
    """One step of the book: trade `values` (N,) of a portfolio worth `worth` towards `target` weights (N,)
    unless their distance sum |target - weights| is below `band`, then multiply by `growth` (N,). An asset
    whose `tradable` (N,) is 0 has no bar to fill on (a no-trade bar): its position is held as it is, and
    its distance to the target neither counts nor costs; the tradable assets' targets are scaled down so
    the book's gross weight stays within the target's (a held position above its target is not financed by
    borrowing: a long-only book stays out of debt).

    Writes the new values, weights and trades (signed traded value) to out[0, row], out[1, row],
    out[2, row] (`out` (3, R, N), as `RowBlocks`); returns the new (cash, net worth, peak, gross traded
    value, whether it traded). The peak follows the net worth only when `new_peak`."""
    n = len(values)
    moved, weights, trades = out[0, row], out[1, row], out[2, row]
    asked = held = wanted = (
        0.0  # gross weights: the target's, the untradable positions', the tradable targets'
    )
    for i in range(n):
        asked += abs(target[i])
        if tradable[i] == 0.0:
            held += abs(values[i] / worth)
        else:
            wanted += abs(target[i])
    scale = min(1.0, max(asked - held, 0.0) / wanted) if held > 0.0 and wanted > 0.0 else 1.0
    distance = 0.0
    for i in range(n):
        if tradable[i] != 0.0:
            distance += abs(scale * target[i] - values[i] / worth)
        moved[i] = values[i]
        trades[i] = 0.0
    traded = 0.0
    rebalanced = distance >= band
    if rebalanced:
        after_costs = worth * (1.0 - cost_rate * distance)
        bought = sold = 0.0
        for i in range(n):
            if tradable[i] == 0.0:
                continue
            goal = scale * target[i] * after_costs
            delta = goal - values[i]
            trades[i] = delta
            if delta > 0.0:
                bought += delta
                goal -= cost_rate * delta
            else:
                sold -= delta
            moved[i] = goal
        cash += sold - bought - cost_rate * sold
        traded = bought + sold
    total = cash
    for i in range(n):
        moved[i] *= growth[i]
        total += moved[i]
    for i in range(n):
        weights[i] = moved[i] / total
    if new_peak and total > peak:
        peak = total
    return cash, total, peak, traded, rebalanced


@njit(cache=True)
def forecast_variance(
    weights: np.ndarray,
    vols: np.ndarray,
    correlation: float,
    shrinkage: float,
    returns: np.ndarray,
    periods_per_year: float,
) -> float:
    """Annualised portfolio variance of `weights` (N,) with annualised asset `vols` (N,).

    Model: constant pairwise `correlation` (variance = (1-rho) sum (w s)^2 + rho (sum w s)^2). With
    shrinkage < 1 and at least two bars of `returns` (L, N) per bar it is blended with the sample variance
    of the portfolio's return over them: w' S w = var(returns @ w), computed in O(L N) without forming S."""
    net = squares = 0.0
    for i in range(len(weights)):
        risk = weights[i] * vols[i]
        net += risk
        squares += risk * risk
    model = (1.0 - correlation) * squares + correlation * net * net
    if shrinkage >= 1.0 or len(returns) < 2:
        return model
    sample = np.var(returns @ weights) * len(returns) / (len(returns) - 1) * periods_per_year
    return shrinkage * model + (1.0 - shrinkage) * sample


@njit(cache=True)
def action_scores(action: np.ndarray, long_only: bool) -> np.ndarray:
    """Policy actions (N,) in [-1, 1] (clipped) -> scores: long-only max(a, 0) in [0, 1], so an asset is out
    of the book unless the policy's action for it is positive (cash is what the initial mean 0 holds); long/short
    a. docs/rl.md, "Action mapping", says why not (a + 1) / 2."""
    n = len(action)
    scores = np.empty(n)
    for i in range(n):
        a = min(max(float(action[i]), -1.0), 1.0)
        scores[i] = max(a, 0.0) if long_only else a
    return scores


@njit(cache=True)
def vol_targeted_weights(
    scores: np.ndarray, vols: np.ndarray, returns: np.ndarray, sizing: Sizing
) -> np.ndarray:
    """Scores (N,) clipped to [-1, 1] (long-only: [0, 1]; see `action_scores`) -> weights whose forecast volatility is
    target_vol * mean |score|, each |weight| capped at max_weight, then scaled to sum |weight| <= max_leverage.

    Each asset's raw weight is score / vol (risk budget proportional to the score); `vols` (N,) annualised,
    `returns` (L, N) per bar for the sample part of `forecast_variance`."""
    n = len(scores)
    raw = np.empty(n)
    gross_score = 0.0
    for i in range(n):
        score = min(max(float(scores[i]), 0.0 if sizing.long_only else -1.0), 1.0)
        gross_score += abs(score)
        raw[i] = score / vols[i]
    if gross_score == 0.0:
        return np.zeros(n)
    variance = forecast_variance(
        raw, vols, sizing.correlation, sizing.shrinkage, returns, sizing.periods_per_year
    )
    weights = scale_to_vol(raw, variance, sizing.target_vol * gross_score / n)
    return cap_weights(weights, sizing.max_weight, sizing.max_leverage)


@njit(cache=True)
def cap_weights(weights: np.ndarray, max_weight: float, max_leverage: float) -> np.ndarray:
    """Clip each |weight| (N,) to max_weight, then scale down so sum |weight| <= max_leverage."""
    capped = np.minimum(np.maximum(weights, -max_weight), max_weight)
    gross = np.abs(capped).sum()
    return capped * (max_leverage / gross) if gross > max_leverage else capped


@njit(cache=True)
def scale_to_vol(raw: np.ndarray, variance: float, target_vol: float) -> np.ndarray:
    """Scale `raw` weights (N,) so their forecast volatility (sqrt(variance), annualised) is `target_vol`."""
    return raw * (target_vol / math.sqrt(variance)) if variance > 0.0 else np.zeros_like(raw)


@njit(cache=True)
def risk_aware_reward(
    moments: np.ndarray, r: float, drawdown_before: float, drawdown: float, turnover: float, p: RewardParams
) -> tuple[float, float, float, float]:
    """(reward, D, drawdown term, turnover term) of a step with return `r`, drawdown before and after it and
    turnover (fractions; see the module doc); updates `moments` (A, B) in place."""
    if not math.isfinite(r):
        r = -1.0
    mean, second = moments[0], moments[1]
    d_mean, d_second = r - mean, r * r - second
    sigma = math.sqrt(max(second - mean * mean, p.var_floor))
    dsr = (second * d_mean - 0.5 * max(mean, 0.0) * d_second) / sigma**3
    sharpe = min(max(dsr, -p.clip), p.clip)
    moments[0] = mean + p.eta * d_mean
    moments[1] = second + p.eta * d_second
    new_drawdown = max(drawdown, p.drawdown_tolerance) - max(drawdown_before, p.drawdown_tolerance)
    drawdown_term = min(p.drawdown_penalty * max(new_drawdown, 0.0) / sigma, p.clip)
    turnover_term = min(p.turnover_penalty * turnover / sigma, p.clip)
    return sharpe - drawdown_term - turnover_term, sharpe, drawdown_term, turnover_term


@njit(cache=True)
def observe(features: np.ndarray, t: int, window: int, weights: np.ndarray, out: np.ndarray) -> None:
    """Write the observation at bar t to `out` (D,) float32: `features` (T, M) rows t-W+1..t, then `weights`."""
    k = 0
    for bar in range(t - window + 1, t + 1):
        for j in range(features.shape[1]):
            out[k] = features[bar, j]
            k += 1
    for i in range(len(weights)):
        out[k + i] = weights[i]


@njit(cache=True)
def cap_sectors(weights: np.ndarray, sectors: np.ndarray, max_sector_weight: float) -> np.ndarray:
    """`weights` (N,) with each sector's weights scaled down so that its gross sum |weight| is at most
    `max_sector_weight`; `sectors` (N,) int sector ids, -1 for a symbol without a sector (never capped)."""
    out = weights.copy()
    if len(sectors) == 0 or sectors.max() < 0:
        return out
    gross = np.zeros(sectors.max() + 1)
    for i in range(len(weights)):
        if sectors[i] >= 0:
            gross[sectors[i]] += abs(weights[i])
    for i in range(len(weights)):
        if sectors[i] >= 0 and gross[sectors[i]] > max_sector_weight:
            out[i] *= max_sector_weight / gross[sectors[i]]
    return out


@njit(cache=True)
def sized_target(
    action: np.ndarray,
    t: int,
    market: np.ndarray,
    sizing_fields: tuple,
    cov_window: int,
    sectors: np.ndarray,
    max_sector_weight: float,
) -> np.ndarray:
    """The weights (N,) a step from bar t trades to for the policy's `action` (N,): `vol_targeted_weights` of
    its `action_scores`, with the volatilities of bar t and the last `cov_window` log returns up to t
    (`market` as in `env_step`), then `cap_sectors`. The live trading loop sizes its targets with this call."""
    lo = max(0, t - cov_window + 1) if cov_window else t + 1
    sizing = Sizing(*sizing_fields)
    weights = vol_targeted_weights(
        action_scores(action, sizing.long_only), market[1, t], market[2, lo : t + 1], sizing
    )
    return cap_sectors(weights, sectors, max_sector_weight)


@njit(cache=True)
def env_step(
    action: np.ndarray,
    sized: bool,
    t: int,
    market: np.ndarray,
    sizing_fields: tuple,
    cov_window: int,
    sectors: np.ndarray,
    max_sector_weight: float,
    band: float,
    cost_rate: float,
    maintenance_margin: float,
    values: np.ndarray,
    cash: float,
    worth: float,
    peak: float,
    book: np.ndarray,
    row: int,
    reward_fields: tuple,
    moments: np.ndarray,
    features: np.ndarray,
    window: int,
    observations: np.ndarray,
    obs_row: int,
) -> tuple[tuple, float, bool]:
    """One environment step from bar t: target weights (`sized_target` of `action` when `sized`, with the
    sector caps of `sectors` and `max_sector_weight`; else `action` itself), the positions carried over the gap to the fill, `trade_and_mark`
    into book[:, row], the reward (`risk_aware_reward`, updating `moments`) and the observation at t+1 into
    observations[0, obs_row].

    `market` (5, T, N): [0] gross return of the fill price -> close of bar t+1, [1] annualised vol,
    [2] log return per bar, [3] gross return of the close of t -> the fill price (the overnight gap to t+1's
    open when filling at the next open, ones when filling at t's close), [4] 1 where the asset has the bar
    it would fill on, 0 on a no-trade bar (see `trade_and_mark`). The sample covariance uses the last
    `cov_window` log returns up to t (0: model only). Returns (record, new peak, ruined): the record laid out
    as `tt_rl.record.STEP_RECORD`; ruined when the net worth is <= 0 or below `maintenance_margin` times the
    gross position value."""
    if sized:
        target = sized_target(action, t, market, sizing_fields, cov_window, sectors, max_sector_weight)
    else:
        target = action.astype(np.float64)
    before, drawdown_before = worth, 1.0 - worth / peak
    at_fill = values * market[3, t]
    worth = cash + at_fill.sum()
    cash, worth, peak, traded, rebalanced = trade_and_mark(
        at_fill, cash, worth, peak, target, band, cost_rate, market[0, t], True, book, row, market[4, t]
    )
    period_return = worth / before - 1.0
    drawdown = 1.0 - worth / peak
    turnover = traded / before
    reward, sharpe, drawdown_term, turnover_term = risk_aware_reward(
        moments, period_return, drawdown_before, drawdown, turnover, RewardParams(*reward_fields)
    )
    observe(features, t + 1, window, book[1, row], observations[0, obs_row])
    gross = 0.0
    for value in book[0, row]:
        gross += abs(value)
    ruined = worth <= 0.0 or worth < maintenance_margin * gross
    record = (
        t + 1,
        reward,
        sharpe,
        drawdown_term,
        turnover_term,
        worth,
        cash,
        period_return,
        drawdown,
        turnover,
        cost_rate * traded,
        rebalanced,
    )
    return record, peak, ruined
