"""tt_rl numeric parts: features, panel, portfolio accounting, volatility targeting, metrics (vs empyrical)."""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from tt_resources.terms import FEATURE_COLUMNS
from tt_rl.config import RLConfig
from tt_rl.features import compute_features
from tt_rl.kernels import Sizing, vol_targeted_weights
from tt_rl.metrics import performance
from tt_rl.panel import Panel, panel_from_frames
from tt_rl.portfolio import Portfolio
from tt_rl.synthetic import synthetic_bars


def test_features_columns_and_values():
    bars = synthetic_bars(["X"], n_bars=80, seed=1).drop(columns="symbol")
    out = compute_features(bars.sample(frac=1.0, random_state=0))  # order must not matter
    assert list(out.columns) == ["ts", *FEATURE_COLUMNS]
    close = bars["close"].to_numpy()
    log_ret = np.diff(np.log(close))
    assert out["log_ret_1"].iloc[1:].to_numpy() == pytest.approx(log_ret)
    assert out["vol_20"].iloc[-1] == pytest.approx(np.std(log_ret[-20:], ddof=1))
    assert out["mom_20"].iloc[-1] == pytest.approx(close[-1] / close[-21] - 1)
    assert out["rsi_14"].dropna().between(0, 100).all()


def test_unknown_volume_scores_no_information_and_leaves_no_gap():
    """IBKR's unknown volume (stored as NULL) on one bar must not blank the volume z-score for 20 bars (the
    panel would then refuse the symbol): the statistics use the known volumes, the bar itself scores 0."""
    bars = synthetic_bars(["X"], n_bars=80, seed=1).drop(columns="symbol")
    known = compute_features(bars)
    bars.loc[50, "volume"] = np.nan
    out = compute_features(bars)
    assert out["volume_z_20"].iloc[20:].notna().all()
    assert out.loc[50, "volume_z_20"] == 0.0
    window = bars["volume"].iloc[32:52].dropna()  # bar 51's 20-bar window without the unknown one
    expected = (bars.loc[51, "volume"] - window.mean()) / window.std()
    assert out.loc[51, "volume_z_20"] == pytest.approx(expected)
    assert out.loc[60:, "vol_20"].tolist() == known.loc[60:, "vol_20"].tolist()  # prices are untouched


def test_panel_ffill_drop_and_roundtrip(tmp_path, caplog):
    bars = synthetic_bars(["A", "AA", "GAP", "HOLE"], n_bars=120, seed=2)
    ts = sorted(bars["ts"].unique())
    bars = bars[~((bars["symbol"] == "GAP") & bars["ts"].isin(ts[60:70]))]  # 10-bar gap: dropped
    bars = bars[~((bars["symbol"] == "HOLE") & (bars["ts"] == ts[80]))]  # 1-bar hole: carried forward
    panel = panel_from_frames("1d", bars, ffill_limit=3)
    assert panel.symbols == ("A", "AA", "HOLE")
    assert "GAP" in caplog.text
    assert panel.features.dtype == np.float32 and not np.isnan(panel.features).any()
    j = panel.symbols.index("HOLE")
    k = panel.index.get_loc(ts[80])
    assert panel.prices[k, j] == panel.prices[k - 1, j]
    loaded = Panel.load(panel.save(tmp_path / "p.npz"))
    assert loaded.version == panel.version and loaded.index.equals(panel.index)
    train, test = panel.split(panel.index[50])
    assert len(train) == 50 and test.index[0] == panel.index[50]


def test_portfolio_rebalance_hits_targets_and_books_costs():
    book = Portfolio(3, 100_000.0, cost_rate=0.001)
    book.reset(np.array([10.0, 20.0, 30.0]))
    target = np.array([0.5, 0.3, 0.0])
    _, traded, costs, traded_any = book.rebalance(target)
    assert traded_any
    assert costs == pytest.approx(0.001 * traded)
    assert book.net_worth == pytest.approx(100_000.0 - costs, rel=1e-12)
    assert book.weights == pytest.approx(target, abs=2e-3 * target.max())
    growth = np.array([1.1, 0.9, 1.0])
    before = book.net_worth
    book.mark(book.prices * growth, growth)
    assert book.net_worth == pytest.approx(before + (book.values / growth * (growth - 1)).sum())


VOLS = np.array([0.1, 0.2, 0.4, 0.3])  # annualised
NO_RETURNS = np.zeros((0, 4))


def _sized(
    scores,
    *,
    long_only=True,
    target_vol=0.15,
    max_weight=1.0,
    max_leverage=10.0,
    returns=NO_RETURNS,
    shrinkage=1.0,
) -> np.ndarray:
    sizing = Sizing(long_only, target_vol, 0.3, shrinkage, 252.0, max_weight, max_leverage)
    return vol_targeted_weights(np.asarray(scores, dtype=np.float32), VOLS, returns, sizing)


def _forecast_vol(weights: np.ndarray, correlation: float = 0.3) -> float:
    """sqrt(w' C w) with the constant-correlation covariance C written out in full."""
    cov = correlation * np.outer(VOLS, VOLS)
    np.fill_diagonal(cov, VOLS**2)
    return float(np.sqrt(weights @ cov @ weights))


def test_vol_targeted_weights_hit_the_target_within_caps():
    scores = [1.0, 0.5, -0.75, 0.25]  # exact in float32, the action's dtype
    long = _sized(scores)
    assert long[2] == 0.0 and (long >= 0).all()  # long-only: a negative score is no position
    assert _forecast_vol(long) == pytest.approx(0.15 * 1.75 / 4, rel=1e-12)  # target * mean |clipped score|
    assert long[0] * VOLS[0] == pytest.approx(2 * long[1] * VOLS[1])  # risk budget proportional to the score
    short = _sized(scores, long_only=False)
    assert short[2] < 0 and _forecast_vol(short) == pytest.approx(0.15 * 2.5 / 4, rel=1e-12)
    assert _sized([3.0, -2.0, 0, 0], long_only=False) == pytest.approx(
        _sized([1.0, -1.0, 0, 0], long_only=False)
    )
    assert not _sized([0.0, 0.0, -1.0, 0.0]).any()

    capped = _sized(scores, long_only=False, max_weight=0.05)
    assert np.abs(capped).max() == pytest.approx(0.05) and np.abs(capped).max() <= 0.05
    levered = _sized(scores, long_only=False, target_vol=5.0, max_weight=1e6, max_leverage=1.5)
    assert np.abs(levered).sum() == pytest.approx(1.5)
    assert levered / levered[0] == pytest.approx(short / short[0])  # scaled down, not reshaped

    returns = np.random.default_rng(2).normal(0.0, 0.02, (60, 4))
    blended = _sized(scores, returns=returns, shrinkage=0.25)
    raw = long / long[0]  # same direction as the model-only weights; only the scale differs
    model = _forecast_vol(raw) ** 2
    sample = raw @ np.cov(returns, rowvar=False) @ raw * 252
    expected = 0.15 * 1.75 / 4 / np.sqrt(0.25 * model + 0.75 * sample)
    assert blended == pytest.approx(raw * expected, rel=1e-9)


def test_config_from_file(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("env:\n  target_vol: 0.1\nppo:\n  total_timesteps: 5\n")
    cfg = RLConfig.from_file(path)
    assert cfg.env.target_vol == 0.1 and cfg.ppo.total_timesteps == 5
    assert RLConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text("env:\n  target_volatility: 0.1\n")
    with pytest.raises(ValueError, match=r"env\.target_volatility"):
        RLConfig.from_file(path)


def test_metrics_match_empyrical():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0005, 0.01, 500)
    r[0] = 0.01  # empyrical measures drawdowns from the first step's value
    m = performance(r, 252, turnover=np.full(500, 0.1), costs=0.002)
    s = pd.Series(r)
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(s, annualization=252))
    assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(s, annualization=252))
    assert m["ann_volatility"] == pytest.approx(empyrical.annual_volatility(s, annualization=252))
    assert m["cagr"] == pytest.approx(empyrical.cagr(s, annualization=252))
    assert m["max_drawdown"] == pytest.approx(-empyrical.max_drawdown(s))
    assert m["calmar"] == pytest.approx(empyrical.calmar_ratio(s, annualization=252))
    assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(s))
    assert m["hit_rate"] == pytest.approx((r > 0).mean())
    assert (m["turnover"], m["costs"]) == (pytest.approx(0.1), 0.002)
    flat = performance(np.zeros(10), 252)
    assert np.isnan(flat["sharpe"]) and flat["max_drawdown"] == 0.0
