"""The learnability suite's small case: the default PPO learns a planted signal out-of-sample and claims
nothing on noise (the full suite with its targets is bench/learnability.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tt_resources.terms import AGENT, ORACLE
from tt_rl.learnability import run_case
from tt_rl.significance import probabilistic_sharpe

pytestmark = pytest.mark.slow  # each case trains PPO for STEPS steps

STEPS = 30_000


def test_ppo_learns_a_planted_signal_and_beats_every_baseline():
    """On sign persistence (oracle Sharpe above 2), out-of-sample and after costs, the default agent beats
    every baseline and reaches a good part of the oracle's Sharpe within 30k steps."""
    result = run_case("sign_persistence", n_bars=1500, timesteps=STEPS, eval_every=STEPS)
    baselines = {k: v for k, v in result.sharpe.items() if k not in (AGENT, ORACLE)}
    assert result.sharpe[ORACLE] > 2.0, result.sharpe
    assert result.sharpe[AGENT] > max(np.nan_to_num(list(baselines.values()))), result.sharpe
    assert result.ratio > 0.3, result.sharpe
    assert result.curve and result.curve[-1][0] == STEPS


def test_ppo_claims_nothing_significant_on_noise():
    """On a market with no signal at all, PPO's out-of-sample Sharpe is not significantly above cash's."""
    result = run_case("noise", n_bars=1500, timesteps=STEPS, eval_every=STEPS)
    psr = probabilistic_sharpe(result.ppo_returns)
    assert math.isnan(psr) or psr < 0.95, (psr, result.sharpe)
