"""tt_resources.db.reports (both backends) and tt_dashboard.series against the raw rows they summarise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from dashboard_seed import FAILED_PARTITION, STALE_PARTITION, seed_evaluation, start_live_episode

from tt_dashboard.series import from_steps, line, rebucket, rolling_sharpe, stitch
from tt_resources.db import reports
from tt_resources.db.schema import episodes, holdings, models, portfolio, prices


@pytest.fixture
def seeded(engine):
    return seed_evaluation(engine, windows=2, steps_per_window=30, train_steps=60)


def raw(engine: sa.Engine, table: sa.Table, episode_id: str) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).where(table.c.episode_id == episode_id))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def test_portfolio_series_reads_only_rows_after_a_step(engine, seeded):
    live = start_live_episode(engine, seeded, steps=50)
    live.log(12)
    first = reports.portfolio_series(engine, [live.episode_id])
    assert first["step"].tolist() == list(range(12))
    live.log(5)
    new = reports.portfolio_series(engine, [live.episode_id], after_step=int(first["step"].iloc[-1]))
    assert new["step"].tolist() == list(range(12, 17))
    assert new["net_worth"].to_numpy() == pytest.approx(live.sim.net_worth[12:17])
    assert str(new["ts"].dt.tz) == "UTC"
    assert reports.episode_status(engine, live.episode_id) == "running"


@pytest.mark.parametrize("stride", [1, 7])
def test_portfolio_buckets_match_the_rows_they_aggregate(engine, seeded, stride):
    episode_id = seeded.test_episodes[("ppo", 1)]
    rows = raw(engine, portfolio, episode_id).sort_values("step")
    buckets = reports.portfolio_buckets(engine, [episode_id], stride)
    groups = rows.groupby(rows["step"] // stride)
    assert len(buckets) == groups.ngroups == -(-seeded.steps_per_window // stride)
    assert buckets["low"].to_numpy() == pytest.approx(groups["net_worth"].min().to_numpy())
    assert buckets["high"].to_numpy() == pytest.approx(groups["net_worth"].max().to_numpy())
    assert buckets["close"].to_numpy() == pytest.approx(groups["net_worth"].last().to_numpy())
    assert buckets["r_sum"].to_numpy() == pytest.approx(groups["period_return"].sum().to_numpy())
    assert buckets["costs"].to_numpy() == pytest.approx(groups["costs"].sum().to_numpy())
    assert buckets["n"].tolist() == groups.size().tolist()
    assert buckets["end_ts"].iloc[-1] == pd.Timestamp(rows["ts"].iloc[-1])


def test_holding_periods_are_the_runs_of_long_positions(engine, seeded):
    episode_id = seeded.test_episodes[("ppo", 0)]
    rows = raw(engine, holdings, episode_id)
    quantity = rows.pivot(index="step", columns="symbol", values="quantity")
    quantity = quantity.reindex(range(seeded.steps_per_window)).fillna(0.0)  # no row = no position
    expected = []
    for symbol in quantity.columns:
        held = np.concatenate([[0], (quantity[symbol].to_numpy() > 0).astype(int), [0]])
        starts, ends = np.flatnonzero(np.diff(held) == 1), np.flatnonzero(np.diff(held) == -1)
        expected += [(symbol, int(s), int(e - 1), int(e - s)) for s, e in zip(starts, ends, strict=True)]
    periods = reports.holding_periods(engine, [episode_id])
    got = list(periods[["symbol", "first_step", "last_step", "steps"]].itertuples(index=False, name=None))
    assert got == sorted(expected)
    assert len(got) > len(seeded.symbols)  # the seeded agent opens and closes positions


def test_weight_buckets_split_top_symbols_from_the_rest(engine, seeded):
    episode_id = seeded.test_episodes[("ppo", 0)]
    rows = raw(engine, holdings, episode_id)
    assert len(rows) < seeded.steps_per_window * len(seeded.symbols)  # flat symbols have no rows
    top = ["AAPL", "NVDA"]
    weights = reports.weight_buckets(engine, [episode_id], top, 7).set_index(["step", "symbol"])["weight"]
    assert set(weights.index.get_level_values("symbol")) == {"AAPL", "NVDA", "other"}
    assert set(weights.index.get_level_values("step")) == set(range(0, seeded.steps_per_window, 7))
    first, last = rows[rows["step"] < 7], rows[rows["step"] >= 28]  # the last bucket holds steps 28, 29
    assert weights[(0, "AAPL")] == pytest.approx(first.loc[first["symbol"] == "AAPL", "weight"].sum() / 7)
    assert weights[(0, "other")] == pytest.approx(first.loc[~first["symbol"].isin(top), "weight"].sum() / 7)
    assert weights[(28, "other")] == pytest.approx(last.loc[~last["symbol"].isin(top), "weight"].sum() / 2)
    invested = weights.groupby(level="step").sum()
    net = raw(engine, portfolio, episode_id)
    exposure = (net["gross_exposure"].groupby(net["step"] // 7).mean()).to_numpy()
    assert invested.to_numpy() == pytest.approx(exposure)


def test_largest_trades_are_ordered_by_absolute_value(engine, seeded):
    ids = [seeded.test_episodes[("ppo", w)] for w in range(seeded.windows)]
    trades = reports.largest_trades(engine, ids, limit=5)
    assert len(trades) == 5
    sizes = trades["trade_value"].abs().to_numpy()
    assert (np.diff(sizes) <= 0).all()
    assert trades["ts"].notna().all()


def test_partition_freshness_flags_stale_failed_and_gaps(engine, seeded):
    symbol, timeframe = "MSFT", seeded.timeframe
    with engine.begin() as conn:  # punch a 10-bar hole into one partition
        stamps = (
            conn.execute(
                sa.select(prices.c.ts)
                .where(prices.c.symbol == symbol, prices.c.timeframe == timeframe)
                .order_by(prices.c.ts)
            )
            .scalars()
            .all()
        )
        conn.execute(
            prices.delete().where(
                prices.c.symbol == symbol, prices.c.timeframe == timeframe, prices.c.ts.in_(stamps[50:60])
            )
        )
    fresh = reports.partition_freshness(engine).set_index(["symbol", "timeframe"])
    assert fresh.loc[STALE_PARTITION, "status"] == "stale"
    assert fresh.loc[FAILED_PARTITION, "status"] == "failed"
    assert fresh.loc[FAILED_PARTITION, "outcome"] == "pacing"
    assert (fresh["status"] == "fresh").sum() == len(fresh) - 2
    assert fresh.loc[(symbol, timeframe), "coverage"] == pytest.approx((len(stamps) - 10) / len(stamps))
    summary = reports.freshness_summary(fresh.reset_index())
    assert summary["timeframe"].tolist() == ["1d", "1h", "15m"]
    assert summary["partitions"].sum() == len(fresh)


def test_model_catalog_puts_the_latest_evaluation_first(engine, seeded):
    later = seed_evaluation(
        engine, model_id="ppo-1h-later", timeframe="1h", windows=1, steps_per_window=20, with_prices=False
    )
    catalog = reports.model_catalog(engine)
    assert catalog["model_id"].tolist()[:2] == [later.model_id, seeded.model_id]
    assert reports.model_summary(engine, seeded.model_id)["split_ts"] == seeded.split_ts
    assert reports.model_summary(engine, "no-such-model") == {}


def _steps(returns: list[float], episode_id: str, start: float, first_ts: str) -> pd.DataFrame:
    net_worth = start * np.cumprod(1 + np.asarray(returns))
    return pd.DataFrame(
        {
            "episode_id": episode_id,
            "step": range(len(returns)),
            "ts": pd.date_range(first_ts, periods=len(returns), freq="D", tz="UTC"),
            "net_worth": net_worth,
            "period_return": returns,
            "turnover": 0.1,
            "costs": 1.0,
        }
    )


def test_stitch_chains_windows_and_measures_drawdown():
    steps = pd.concat(
        [
            _steps([0.10, -0.20, 0.05], "w0", 100.0, "2024-01-01"),
            _steps([0.5, -0.5], "w1", 1_000.0, "2024-02-01"),
        ]
    )
    curve = stitch(from_steps(steps), ["w0", "w1"], [100.0, 1_000.0])
    level = 100 * 1.1 * 0.8 * 1.05
    assert curve["close"].to_numpy() == pytest.approx([110, 88, 92.4, level * 1.5, level * 0.75])
    assert curve["drawdown"].to_numpy() == pytest.approx([0, 0.2, 1 - 92.4 / 110, 0, 0.5])
    assert curve["costs"].iloc[-1] == pytest.approx(level / 1_000)


def test_rebucket_and_line_keep_extremes_and_sums():
    rng = np.random.default_rng(3)
    steps = _steps(list(rng.normal(0, 0.01, 10_000)), "e", 100.0, "2000-01-01")
    fine = stitch(from_steps(steps), ["e"], [100.0])
    coarse = rebucket(fine, 500)
    assert len(coarse) == 500
    assert coarse["low"].min() == fine["low"].min() and coarse["high"].max() == fine["high"].max()
    assert coarse["close"].iloc[-1] == fine["close"].iloc[-1]
    assert coarse["r_sum"].sum() == pytest.approx(fine["r_sum"].sum())
    points = line(coarse)
    assert len(points) == 3 * 500
    assert points["net_worth"].min() == fine["low"].min() and points["net_worth"].max() == fine["high"].max()
    assert points["ts"].is_monotonic_increasing
    assert line(fine)["net_worth"].tolist() == fine["close"].tolist()


def test_rolling_sharpe_equals_the_textbook_formula_on_one_step_buckets():
    rng = np.random.default_rng(5)
    returns = pd.Series(rng.normal(0.001, 0.01, 300))
    curve = from_steps(_steps(returns.tolist(), "e", 100.0, "2000-01-01"))
    expected = returns.rolling(20).mean() / returns.rolling(20).std() * np.sqrt(252)
    got = rolling_sharpe(curve, 20, 252)
    assert got.to_numpy()[19:] == pytest.approx(expected.to_numpy()[19:])
    assert got.iloc[:19].isna().all()


def test_a_models_tokens_move_with_its_own_rows_only(engine, seeded):
    token = reports.model_token(engine, seeded.model_id)
    tested = list(seeded.test_episodes.values())
    finished = reports.episodes_token(engine, tested)
    changes = reports.change_token(engine)
    seed_evaluation(
        engine, model_id="ppo-1d-other", windows=1, steps_per_window=20, train_steps=30, with_prices=False
    )
    assert reports.model_token(engine, seeded.model_id) == token
    assert reports.episodes_token(engine, tested) == finished
    assert reports.change_token(engine).models != changes.models  # the model list has a new model
    assert reports.change_token(engine).market == changes.market  # and no new market data

    live = start_live_episode(engine, seeded, steps=20)
    tokens = [reports.model_token(engine, seeded.model_id)]
    live.log(5)
    tokens.append(reports.model_token(engine, seeded.model_id))
    live.finish()
    tokens.append(reports.model_token(engine, seeded.model_id))
    assert len({token, *tokens}) == 4  # started, steps logged, finished: each moves the model's token
    assert reports.episodes_token(engine, tested) == finished


def test_a_fold_models_training_episodes_belong_to_its_walk_forward_model(engine, seeded):
    token = reports.model_token(engine, seeded.model_id)
    fold_model = "fold-model-0-1"
    with engine.begin() as conn:
        conn.execute(
            models.insert(),
            {
                "model_id": fold_model,
                "timeframe": seeded.timeframe,
                "path": "data/models/fold",
                "config": {},
                "created_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
                "group_id": seeded.model_id,
                "fold": 0,
                "seed": 1,
            },
        )
        conn.execute(
            episodes.insert(),
            {
                "episode_id": "fold-train-episode",
                "model_id": fold_model,
                "split": "train",
                "policy": "ppo",
                "status": "finished",
                "started_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
                "steps": 0,
            },
        )
    logged = reports.model_episodes(engine, seeded.model_id).set_index("episode_id")
    assert logged.loc["fold-train-episode", ["fold", "seed"]].tolist() == [0, 1]
    assert reports.model_token(engine, seeded.model_id) != token
    assert fold_model not in set(reports.model_catalog(engine)["model_id"])


def test_partition_freshness_lists_registered_symbols_first_in_their_order(engine, seeded):
    registered = ["ZZZ", *reversed(seeded.symbols)]  # ZZZ: registered, never fetched
    fresh = reports.partition_freshness(engine, registered)
    daily = fresh[fresh["timeframe"] == "1d"]
    assert daily["symbol"].tolist() == registered
    assert daily.set_index("symbol").loc["ZZZ", ["status", "n_bars"]].tolist() == ["no data", 0]
