"""Performance metrics of a per-step return series (the one place they are computed).

Conventions match empyrical: Sharpe = mean / std (ddof 1) * sqrt(periods_per_year); Sortino uses the
downside deviation sqrt(mean(min(r, 0)^2)); CAGR annualises over len(r) / periods_per_year years. Max drawdown
is a positive fraction measured from the initial net worth too (empyrical ignores a loss on the first step).
Hit rate is the share of invested steps with a positive return: a step where the portfolio held no position
(all cash) is neither a win nor a loss. Undefined values (zero volatility, no drawdown, never invested) are
NaN.
"""

from __future__ import annotations

import numpy as np

from tt_resources.terms import METRIC_NAMES


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 and np.isfinite(den) else float("nan")


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall from a running peak of the equity curve 1, (1+r1), (1+r1)(1+r2), ...; >= 0."""
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


def hit_rate(returns: np.ndarray, invested: np.ndarray | None = None) -> float:
    """Share of the `invested` steps (bool mask; None: all) with a positive return; NaN when none."""
    r = np.asarray(returns, dtype=np.float64)
    if invested is not None:
        r = r[np.asarray(invested, dtype=bool)]
    return float(np.mean(r > 0.0)) if len(r) else float("nan")


def performance(
    returns: np.ndarray,
    periods_per_year: int,
    *,
    turnover: np.ndarray | None = None,
    costs: float = 0.0,
    invested: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of simple per-step `returns` (net of costs), keyed by tt_resources.terms.METRIC_NAMES.
    `turnover` (per step, fraction of net worth) is averaged; `costs` (total costs / initial net worth) is
    passed through; `invested` (bool per step: the portfolio held a position during the step; None: every
    step) selects the steps the hit rate counts."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    if n == 0:
        return dict.fromkeys(METRIC_NAMES, float("nan"))
    total = float(np.prod(1.0 + r) - 1.0)
    years = n / periods_per_year
    cagr = float((1.0 + total) ** (1.0 / years) - 1.0) if total > -1.0 else -1.0
    std = float(np.std(r, ddof=1)) if n > 1 else float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    mdd = max_drawdown(r)
    return {
        "total_return": total,
        "cagr": cagr,
        "ann_volatility": std * np.sqrt(periods_per_year),
        "sharpe": _ratio(r.mean() * np.sqrt(periods_per_year), std),
        "sortino": _ratio(r.mean() * periods_per_year, downside * np.sqrt(periods_per_year)),
        "max_drawdown": mdd,
        "calmar": _ratio(cagr, mdd),
        "turnover": float(np.mean(turnover)) if turnover is not None and len(turnover) else 0.0,
        "costs": float(costs),
        "hit_rate": hit_rate(r, invested),
    }
