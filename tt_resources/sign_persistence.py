"""The sign-persistence market, defined once: each period's return is its noise plus `strength` in the
direction of the previous period's return, r[t] = noise[t] + strength * sign(r[t-1]) (r[0] = noise[0]).
Holding yesterday's risers is its oracle (tt_rl.planted.sign_persistence_oracle).

Two markets use it, each with the strength its purpose needs:
- `SESSION_STRENGTH` (0.2 % log return per NYSE session): the signal planted in the synthetic source
  (tt_resources.sources.synthetic, TT_SYNTHETIC_SIGNAL=sign_persistence), what `tt demo` trains on. Its symbols have
  realistic daily volatility (about 1.5-2.5 %); the edge is kept small so the market still looks like one, and
  the demo's breadth (25 symbols) makes it learnable within the demo's budget.
- `tt_rl.planted.STRENGTH["sign_persistence"]` (0.3 % simple return per bar at sigma 1.5 %): the learnability
  yardstick, where every planted kind has a signal of comparable size (0.2 sigma) on 5 symbols, so the kinds'
  results (bench/results/learnability.json) compare with each other.
"""

from __future__ import annotations

import numpy as np

SESSION_STRENGTH = 0.002  # the synthetic source's per-session drift (log return)


def persistence_drift(noise: np.ndarray, strength: float) -> np.ndarray:
    """The drift (like `noise`: periods along axis 0, any assets after) that makes `noise + drift` a
    sign-persistence market: drift[0] = 0, drift[t] = strength * sign(noise[t-1] + drift[t-1])."""
    drift = np.zeros_like(noise, dtype=np.float64)
    for t in range(1, len(noise)):
        drift[t] = strength * np.sign(noise[t - 1] + drift[t - 1])
    return drift
