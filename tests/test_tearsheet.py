"""The tear sheet: every figure against QuantStats on the same returns, round trips and sector exposure on
hand-built holdings with known answers, the HTML report of a seeded evaluation, and the dashboard's tab."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import quantstats as qs
import sqlalchemy as sa
from dashboard_seed import seed_evaluation
from test_dashboard import assert_clean, dashboard, figures, url_of  # noqa: F401 (dashboard: a fixture)

from tt_pipeline.tearsheet import (
    UNKNOWN_SECTOR,
    blotter,
    choose_benchmark,
    drawdown_table,
    excess_figures,
    exposures,
    monthly_table,
    return_stats,
    rolling_window,
    tear_sheet,
)
from tt_pipeline.tearsheet_report import evaluation_episodes, report_path, trades_path, write_report
from tt_resources.db import reports
from tt_resources.terms import AGENT, CASH, EQUAL_WEIGHT, EQUAL_WEIGHT_VOL

BARS_PER_YEAR = 252


@pytest.fixture(scope="module")
def daily_returns() -> pd.Series:
    """14 months of daily net returns (fat-tailed), on NYSE-like weekdays at 14:30 UTC."""
    rng = np.random.default_rng(3)
    index = pd.bdate_range("2025-03-03", "2026-04-30") + pd.Timedelta(hours=14, minutes=30)
    return pd.Series(rng.standard_t(4, len(index)) * 0.01 + 0.0004, index=index)


@pytest.fixture(scope="module")
def hourly_returns() -> pd.Series:
    """Seven 1h bars per session over three months."""
    rng = np.random.default_rng(5)
    days = pd.bdate_range("2026-01-05", "2026-03-31")
    index = pd.DatetimeIndex([d + pd.Timedelta(hours=14 + h, minutes=30) for d in days for h in range(7)])
    return pd.Series(rng.normal(0.0001, 0.004, len(index)), index=index)


def test_return_figures_are_quantstats_on_the_same_returns(daily_returns):
    r = daily_returns
    stats = return_stats(r, BARS_PER_YEAR)
    assert stats == pytest.approx(
        {
            "total_return": qs.stats.comp(r),
            "volatility": qs.stats.volatility(r, periods=BARS_PER_YEAR),
            "sharpe": qs.stats.sharpe(r, periods=BARS_PER_YEAR),
            "max_drawdown": -qs.stats.max_drawdown(r),
            "var": qs.stats.value_at_risk(r, confidence=0.95),
            "cvar": qs.stats.conditional_value_at_risk(r, confidence=0.95),
            "cvar_historical": qs.stats.conditional_value_at_risk(r, confidence=0.95, method="historical"),
            "skew": qs.stats.skew(r),
            "kurtosis": qs.stats.kurtosis(r),
            "best_bar": qs.stats.best(r),
            "worst_bar": qs.stats.worst(r),
            "best_day": qs.stats.best(r),
            "worst_day": qs.stats.worst(r),
            "best_month": qs.stats.best(r, aggregate="ME"),
            "worst_month": qs.stats.worst(r, aggregate="ME"),
        },
        rel=1e-12,
    )
    # the figures themselves, independently of QuantStats
    assert stats["total_return"] == pytest.approx(np.prod(1 + r) - 1)
    assert stats["sharpe"] == pytest.approx(r.mean() / r.std() * np.sqrt(BARS_PER_YEAR))
    monthly = (1 + r).groupby([r.index.year, r.index.month]).prod() - 1
    assert (stats["best_month"], stats["worst_month"]) == pytest.approx((monthly.max(), monthly.min()))


def test_intraday_tail_figures_use_returns_compounded_per_session(hourly_returns):
    r = hourly_returns
    stats = return_stats(r, 1764)
    days = (1 + r).groupby(r.index.normalize()).prod() - 1
    assert stats["best_day"] == pytest.approx(days.max()) and stats["worst_day"] == pytest.approx(days.min())
    assert stats["best_bar"] == pytest.approx(r.max())
    assert stats["var"] == pytest.approx(qs.stats.value_at_risk(days, confidence=0.95))
    assert stats["skew"] == pytest.approx(qs.stats.skew(days))
    assert stats["volatility"] == pytest.approx(r.std() * np.sqrt(1764))


def test_monthly_and_yearly_tables_are_quantstats_with_blank_months(daily_returns):
    table, yearly = monthly_table(daily_returns)
    expected = qs.stats.monthly_returns(daily_returns, eoy=True)
    assert list(table.index) == [2025, 2026]
    assert np.isnan(table.loc[2025, "Jan"]) and np.isnan(table.loc[2026, "May"])  # no bars: blank, not 0
    for year in (2025, 2026):
        months = table.loc[year].drop("Year").dropna()
        assert months.to_numpy() == pytest.approx(
            expected.loc[str(year), months.index.str.upper()].to_numpy(dtype=float)
        )
        assert yearly[year] == pytest.approx(float(expected.loc[str(year), "EOY"]))
    assert table["Year"].to_numpy() == pytest.approx(yearly.to_numpy())


def test_worst_drawdowns_are_quantstats_with_their_recovery(daily_returns):
    table, drawdown = drawdown_table(daily_returns)
    details = qs.stats.drawdown_details(qs.stats.to_drawdown_series(daily_returns)).sort_values(
        "max drawdown"
    )
    top = details.head(5)
    assert len(table) == 5
    assert table["max_drawdown"].to_numpy() == pytest.approx(-top["max drawdown"].to_numpy() / 100)
    assert table["start"].dt.strftime("%Y-%m-%d").tolist() == top["start"].tolist()
    assert table["valley"].dt.strftime("%Y-%m-%d").tolist() == top["valley"].tolist()
    assert table["days"].tolist() == top["days"].tolist()
    assert drawdown.to_numpy() == pytest.approx(qs.stats.to_drawdown_series(daily_returns).to_numpy())


def test_a_drawdown_recovers_on_the_first_bar_back_at_its_peak():
    index = pd.bdate_range("2026-01-05", periods=6) + pd.Timedelta(hours=14, minutes=30)
    # 100 -> 110 -> 88 -> 99 -> 110 (recovered) -> 99 (still under water at the end)
    returns = pd.Series([0.10, -0.20, 0.125, 1 / 9, -0.10, 0.0], index=index)
    table, _ = drawdown_table(returns)
    first, second = table.sort_values("start").to_dict("records")
    assert first["start"] == pd.Timestamp("2026-01-06") and first["valley"] == pd.Timestamp("2026-01-06")
    assert first["recovery"] == pd.Timestamp("2026-01-08")
    assert first["max_drawdown"] == pytest.approx(0.20)
    assert second["start"] == pd.Timestamp("2026-01-09") and pd.isna(second["recovery"])
    assert second["max_drawdown"] == pytest.approx(0.10)


def test_an_intraday_drawdown_that_recovers_on_its_last_date_has_that_date():
    index = pd.date_range("2026-01-05 14:30", periods=4, freq="h")
    table, _ = drawdown_table(pd.Series([0.10, -0.20, 0.25, 0.01], index=index))  # 110, 88, 110 (back), 111.1
    [row] = table.to_dict("records")
    assert row["start"] == row["valley"] == row["recovery"] == pd.Timestamp("2026-01-05")
    assert row["max_drawdown"] == pytest.approx(0.20)


def test_rolling_volatility_excess_and_information_ratio_are_quantstats(daily_returns):
    rng = np.random.default_rng(9)
    bench = pd.Series(rng.normal(0.0002, 0.008, len(daily_returns)), index=daily_returns.index)
    figures, excess = excess_figures(daily_returns, bench, BARS_PER_YEAR)
    assert figures["information_ratio"] == pytest.approx(
        qs.stats.information_ratio(daily_returns, bench) * np.sqrt(BARS_PER_YEAR)
    )
    assert figures["excess_return"] == pytest.approx(qs.stats.comp(daily_returns) - qs.stats.comp(bench))
    active = daily_returns - bench
    assert figures["tracking_error"] == pytest.approx(active.std() * np.sqrt(BARS_PER_YEAR))
    assert excess.iloc[-1] == pytest.approx(
        (1 + qs.stats.comp(daily_returns)) / (1 + qs.stats.comp(bench)) - 1
    )
    window = rolling_window(BARS_PER_YEAR, len(daily_returns))
    assert window == 21
    steps = _steps({"p": daily_returns})
    sheet = tear_sheet("p", steps, {"p": ["p-0"]}, _holdings([]), {}, BARS_PER_YEAR)
    expected = qs.stats.rolling_volatility(daily_returns, rolling_period=21, periods_per_year=BARS_PER_YEAR)
    pd.testing.assert_series_equal(sheet.rolling_volatility, expected, check_names=False)


def test_the_benchmark_is_the_best_baseline_by_sharpe_never_the_oracle_nor_the_policy(daily_returns):
    rng = np.random.default_rng(1)
    noise = {p: pd.Series(rng.normal(m, 0.004, len(daily_returns)), index=daily_returns.index)
             for p, m in ((EQUAL_WEIGHT, 0.0008), (EQUAL_WEIGHT_VOL, 0.002), ("oracle", 0.01))}  # fmt: skip
    cash = pd.Series(0.0, index=daily_returns.index)
    best, note = choose_benchmark(AGENT, {AGENT: daily_returns, CASH: cash, **noise}, BARS_PER_YEAR)
    assert best == EQUAL_WEIGHT_VOL and "after the fact" in note
    assert choose_benchmark(EQUAL_WEIGHT_VOL, {CASH: cash, **noise}, BARS_PER_YEAR)[0] == EQUAL_WEIGHT
    losing = {EQUAL_WEIGHT: -noise[EQUAL_WEIGHT_VOL], CASH: cash}
    assert choose_benchmark(AGENT, losing, BARS_PER_YEAR)[0] == CASH  # cash's 0 beats a negative Sharpe
    assert choose_benchmark(AGENT, {AGENT: daily_returns}, BARS_PER_YEAR)[0] is None


def test_cash_has_no_exposure_no_trades_and_undefined_ratios_without_warnings(daily_returns):
    flat = pd.Series(0.0, index=daily_returns.index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sheet = tear_sheet(
            CASH, _steps({CASH: flat}), {CASH: [f"{CASH}-0"]}, _holdings([]), {}, BARS_PER_YEAR
        )
    assert sheet.stats["total_return"] == 0 and np.isnan(sheet.stats["sharpe"])
    assert (sheet.exposure.to_numpy() == 0).all() and sheet.trades.empty and sheet.round_trips.empty
    assert sheet.benchmark is None and sheet.drawdowns.empty


def _holdings(rows: list[tuple]) -> pd.DataFrame:
    """tt_holdings rows (episode_id, step, ts, symbol, quantity, price, value, trade_value, cost)."""
    columns = ["episode_id", "step", "ts", "symbol", "quantity", "price", "value", "trade_value", "cost"]
    return pd.DataFrame(rows, columns=columns).astype({"step": int})


def _steps(returns: dict[str, pd.Series]) -> pd.DataFrame:
    """tt_portfolio rows of one episode `<policy>-0` per policy from its returns (net worth from 100,000)."""
    return pd.concat(
        pd.DataFrame(
            {
                "episode_id": f"{p}-0",
                "step": range(len(r)),
                "ts": r.index.tz_localize("UTC"),
                "net_worth": 100_000 * (1 + r).cumprod().to_numpy(),
                "period_return": r.to_numpy(),
            }
        )
        for p, r in returns.items()
    )


def test_round_trips_on_a_hand_built_trade_list():
    t = pd.date_range("2026-01-05 14:30", periods=6, freq="D", tz="UTC")
    rows = [  # (episode, step, ts, symbol, shares after, price, value, trade value, cost)
        ("e", 0, t[0], "AAA", 10, 100, 1000, 1000, 1.0),  # buy 10 @ 100
        ("e", 1, t[1], "AAA", 15, 110, 1650, 550, 0.5),  # buy 5 @ 110
        ("e", 2, t[2], "AAA", 0, 120, 0, -1800, 2.0),  # sell 15 @ 120: closed, 1800 - 1550 - 3.5 = 246.5
        ("e", 3, t[3], "AAA", -5, 100, -500, -500, 0.5),  # short 5 @ 100
        ("e", 4, t[4], "AAA", 5, 90, 450, 900, 1.0),  # buy 10 @ 90: covers 5 (P&L 50 - 0.5 - 0.5), long 5
        ("e", 5, t[5], "AAA", 5, 95, 475, 0, 0.0),  # held: open, marked 475 - 450 - 0.5 = 24.5
        ("e", 2, t[2], "BBB", 2, 50, 100, 100, 0.1),  # open at the end: marked at its last row? none: step 5
        ("e", 5, t[5], "BBB", 2, 40, 80, 0, 0.0),  # 80 - 100 - 0.1 = -20.1
    ]
    trades, trips = blotter(_holdings(rows))
    assert len(trades) == 7  # the crossing trade counts as a cover and an opening
    got = trips.set_index("trip")
    assert got["symbol"].tolist() == ["AAA", "AAA", "AAA", "BBB"]
    assert got["direction"].tolist() == ["long", "short", "long", "long"]
    assert got["status"].tolist() == ["closed", "closed", "open", "open"]
    assert got["pnl"].to_numpy() == pytest.approx([246.5, 49.0, 24.5, -20.1])
    assert got["entry_value"].to_numpy() == pytest.approx([1550, 500, 450, 100])
    assert got.loc[1, "bars"] == 3 and got.loc[1, "trades"] == 3
    assert got.loc[1, "closed"] == t[2] and pd.isna(got.loc[3, "closed"])
    cover = trades[(trades["step"] == 4)].sort_values("trip")
    assert cover["shares"].to_numpy() == pytest.approx([5, 5]) and cover["position"].tolist() == [0, 5]
    assert cover["trade_value"].sum() == pytest.approx(900) and cover["cost"].sum() == pytest.approx(1.0)


def test_gross_net_and_sector_exposure_on_known_holdings():
    ts = pd.date_range("2026-01-05 14:30", periods=3, freq="D")
    net_worth = pd.Series([100.0, 200.0, 100.0], index=ts)
    rows = [
        ("e", 0, ts[0], "AAPL", 1, 30, 30, 0, 0),
        ("e", 0, ts[0], "MSFT", 1, 20, 20, 0, 0),
        ("e", 0, ts[0], "XOM", -1, 10, -10, 0, 0),
        ("e", 1, ts[1], "XOM", 1, 50, 50, 0, 0),
        ("e", 1, ts[1], "ZZZ", 1, 50, 50, 0, 0),
    ]  # step 2: flat
    sectors = {"AAPL": "Information Technology", "MSFT": "Information Technology", "XOM": "Energy"}
    exposure, by_sector = exposures(
        _holdings(rows).assign(ts=lambda f: f["ts"].dt.tz_localize("UTC")), net_worth, sectors
    )
    assert exposure["gross"].tolist() == pytest.approx([0.6, 0.5, 0.0])
    assert exposure["net"].tolist() == pytest.approx([0.4, 0.5, 0.0])
    assert list(by_sector.columns) == ["Energy", "Information Technology", UNKNOWN_SECTOR]
    assert by_sector.to_numpy() == pytest.approx(np.array([[-0.1, 0.5, 0.0], [0.25, 0.0, 0.25], [0, 0, 0]]))


@pytest.mark.slow
def test_the_report_of_a_seeded_evaluation(sqlite_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    seeded = seed_evaluation(sqlite_engine, seeds=(0, 1))
    path = write_report(sqlite_engine, seeded.model_id, "run-1")
    assert (
        path
        == report_path(seeded.model_id, "run-1")
        == tmp_path / "reports" / f"{seeded.model_id}-run-1.html"
    )
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page  # plotly.js inlined: offline
    # the agent's first seed over the three windows, against the best baseline
    metrics = reports.eval_metrics(sqlite_engine, seeded.model_id)
    episodes, seed = evaluation_episodes(metrics)
    assert seed == 0 and episodes[AGENT] == [seeded.agent_episodes[(0, w)] for w in range(seeded.windows)]
    steps = reports.portfolio_series(sqlite_engine, episodes[AGENT])
    total = float(np.prod(1 + steps["period_return"]) - 1)
    summary = re.search(r"Total return</td><td>([-0-9.]+)%", page)
    assert float(summary.group(1)) == pytest.approx(total * 100, abs=0.005)
    for title in ("Monthly returns", "Yearly returns", "Rolling volatility", "Return distribution",
                  "Gross and net exposure", "Sector exposure", "Excess return over"):  # fmt: skip
        assert title in page
    assert "Information Technology" in page  # the watchlist's sectors
    blotter_csv = pd.read_csv(trades_path(path))
    with sqlite_engine.connect() as conn:
        traded = conn.execute(
            sa.text("SELECT count(*) FROM tt_holdings WHERE trade_value != 0 AND episode_id IN (:a, :b, :c)"),
            dict(zip("abc", episodes[AGENT], strict=True)),
        ).scalar_one()
    assert len(blotter_csv) >= traded  # every trade (a crossing one twice)
    assert f"Trade blotter ({len(blotter_csv)} trades)" in page


@pytest.mark.slow
def test_the_dashboard_tab_shows_the_selected_policys_tear_sheet(sqlite_engine, dashboard):  # noqa: F811
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    assert "Monthly returns" not in figures(at)  # built when asked
    at.toggle(key="tearsheet").set_value(True).run()
    assert_clean(at)
    assert {"Monthly returns", "Yearly returns", "Sector exposure", "Gross and net exposure"} <= set(
        figures(at)
    )
    summary = next(d.value for d in at.dataframe if list(d.value.columns) == ["Figure", "Value"])
    ppo = [seeded.test_episodes[(AGENT, w)] for w in range(seeded.windows)]
    steps = reports.portfolio_series(sqlite_engine, ppo)
    total = float(np.prod(1 + steps["period_return"]) - 1)
    assert summary.set_index("Figure").loc["Total return", "Value"] == f"{total:.2%}"
    trades = next(d.value for d in at.dataframe if "shares" in d.value.columns)
    at.multiselect(key="blotter_symbols").set_value(["AAPL"]).run()
    filtered = next(d.value for d in at.dataframe if "shares" in d.value.columns)
    assert 0 < len(filtered) < len(trades) and set(filtered["symbol"]) == {"AAPL"}
    csv = at.get("download_button")[0]
    assert csv.proto.label == "Download these trades (CSV)"

    baseline = seeded.test_episodes[(EQUAL_WEIGHT, 1)]  # the tab follows the selection: one baseline episode
    at.selectbox(key="episode").select(baseline).run()
    assert_clean(at)
    steps = reports.portfolio_series(sqlite_engine, [baseline])
    summary = next(d.value for d in at.dataframe if list(d.value.columns) == ["Figure", "Value"])
    expected = float(np.prod(1 + steps["period_return"]) - 1)
    assert summary.set_index("Figure").loc["Total return", "Value"] == f"{expected:.2%}"
    assert "Equal weight (buy & hold) on 1 episode(s)" in " ".join(c.value for c in at.caption)


def test_report_path_follows_the_current_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path / "a"))
    assert report_path("m", "r") == tmp_path / "a" / "reports" / "m-r.html"
    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path / "b"))
    assert report_path("m", "r").parent == tmp_path / "b" / "reports"
