"""The Streamlit dashboard under streamlit.testing's AppTest, against seeded SQLite and PostgreSQL databases."""

from __future__ import annotations

import base64
import json
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import streamlit as st
from dashboard_seed import (
    DAGSTER_RUN_ID,
    FAILED_PARTITION,
    INITIAL_NET_WORTH,
    SEEDED_VERDICT,
    STALE_PARTITION,
    SYMBOLS,
    SeededEvaluation,
    seed_evaluation,
    start_live_episode,
)
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from tt_dashboard.formats import (
    bar_time_format,
    bar_times,
    dagster_run_exists,
    hover_time_format,
    in_policy_order,
    percent,
    ratio,
    usd,
)
from tt_resources import config
from tt_resources.db.engine import create_engine
from tt_resources.db.schema import episodes, evals, holdings, portfolio, prices
from tt_resources.sources.settings import SYNTHETIC_END
from tt_resources.terms import (
    AGENT,
    EQUAL_WEIGHT,
    METRIC_NAMES,
    POLICY_LABELS,
    POLICY_NAMES,
    SIGNIFICANCE_NAMES,
)
from tt_resources.timeframes import TIMEFRAME_NAMES

UNFETCHED = "ZZZ"  # on the test watchlist, never fetched
APP = Path(__file__).resolve().parents[1] / "tt_dashboard" / "app.py"


@pytest.fixture
def dashboard(monkeypatch, tmp_path):
    """Build an AppTest of the dashboard for a database URL (set as DATABASE_URL, as `make dashboard` would),
    with a watchlist of the seeded symbols and UNFETCHED (TT_WATCHLIST)."""
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol\n" + "\n".join([*SYMBOLS, UNFETCHED]) + "\n")
    monkeypatch.setenv("TT_WATCHLIST", str(watchlist))
    monkeypatch.delenv("TT_WATCHLIST_LIMIT", raising=False)
    monkeypatch.setenv("TT_SYNTHETIC_END", "now")  # the seeded bars end at the wall clock

    def build(url: str, query: dict[str, str] | None = None) -> AppTest:
        monkeypatch.setenv("DATABASE_URL", url)
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.query_params.update(query or {})
        return at

    st.cache_resource.clear()
    st.cache_data.clear()
    yield build
    st.cache_resource.clear()
    st.cache_data.clear()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly figure specs on the page, by title."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def values(array) -> np.ndarray:
    """A trace's x/y: plotly serialises numeric arrays as base64 typed arrays."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The one dataframe on the page that shows all of `columns` (whatever else it shows, in any order)."""
    frames = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(frames) == 1, f"{len(frames)} tables show the columns {columns}"
    return frames[0]


def test_evaluation_page_shows_the_seeded_evaluation(engine, dashboard):
    seeded = seed_evaluation(engine)
    at = dashboard(url_of(engine)).run()
    assert_clean(at)
    assert [s.value for s in at.selectbox] == ["1d", seeded.model_id, "__out_of_sample__"]

    figs = figures(at)
    assert list(figs) == [  # tab by tab
        "Equity curve",
        "Drawdown",
        "Rolling Sharpe (30 bars)",
        "Weights over time (top holdings)",
        "P&L attribution by symbol",
        "Turnover and costs over time",
    ]
    equity = figs["Equity curve"]
    test_steps = seeded.windows * seeded.steps_per_window
    tested = [t for t in equity["data"] if "training" not in t["name"]]
    assert [t["name"] for t in tested] == [POLICY_LABELS[p] for p in POLICY_NAMES]
    assert all(len(values(trace["y"])) == test_steps for trace in tested)
    boundary = [s for s in equity["layout"]["shapes"] if s["type"] == "line"]
    assert pd.Timestamp(boundary[0]["x0"]) == seeded.split_ts.tz_localize(None)
    assert "train | test" in [a["text"] for a in equity["layout"]["annotations"]]

    with engine.connect() as conn:
        stored = pd.DataFrame(
            conn.execute(
                sa.select(evals.c.policy, *(evals.c[m] for m in METRIC_NAMES))
                .where(evals.c.model_id == seeded.model_id, evals.c.fold == -1)
                .order_by(evals.c.policy)
            ).all()
        )
        ppo_ids = [seeded.test_episodes[("ppo", w)] for w in range(seeded.windows)]
        finals = conn.execute(
            sa.select(portfolio.c.net_worth)
            .where(portfolio.c.episode_id.in_(ppo_ids), portfolio.c.step == seeded.steps_per_window - 1)
            .order_by(portfolio.c.episode_id)
        ).scalars()
        biggest = conn.execute(
            sa.select(holdings.c.symbol, holdings.c.trade_value)
            .where(holdings.c.episode_id.in_(ppo_ids))
            .order_by(sa.func.abs(holdings.c.trade_value).desc())
            .limit(1)
        ).one()
        pnl_by_symbol = dict(
            conn.execute(
                sa.select(holdings.c.symbol, sa.func.sum(holdings.c.pnl))
                .where(holdings.c.episode_id.in_(ppo_ids))
                .group_by(holdings.c.symbol)
            ).all()
        )
    stored["policy"] = stored["policy"].map(POLICY_LABELS)
    shown = table(at, "policy", *METRIC_NAMES, *SIGNIFICANCE_NAMES)[["policy", *METRIC_NAMES]]
    assert shown["policy"].tolist() == [POLICY_LABELS[p] for p in POLICY_NAMES]  # as in Dagster and the CLI
    pd.testing.assert_frame_equal(
        shown, stored.set_index("policy").loc[shown["policy"]].reset_index(), check_dtype=False
    )

    stitched = INITIAL_NET_WORTH
    for final in finals:
        stitched *= final / INITIAL_NET_WORTH
    assert at.metric[0].label == "Net worth"
    assert at.metric[0].value == f"${stitched:,.2f}"

    attribution = figures(at)["P&L attribution by symbol"]["data"][0]
    assert dict(zip(attribution["x"], values(attribution["y"]), strict=True)) == pytest.approx(pnl_by_symbol)

    trades = table(at, "symbol", "side", "trade_value")  # largest first
    assert (trades["symbol"].iloc[0], trades["trade_value"].iloc[0]) == pytest.approx(tuple(biggest))
    assert trades["side"].iloc[0] == ("buy" if biggest.trade_value > 0 else "sell")
    fresh = table(at, "timeframe", "fresh", "stale", "no data", "failed").set_index("timeframe")
    assert fresh.loc["1d", ["fresh", "stale", "no data", "failed"]].tolist() == [6, 0, 1, 0]
    assert fresh.loc["1h", ["fresh", "stale", "no data", "failed"]].tolist() == [5, 1, 1, 0]
    assert fresh.loc["15m", ["fresh", "stale", "no data", "failed"]].tolist() == [5, 0, 1, 1]


def test_picking_one_test_window_compares_it_with_that_windows_baselines(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    episode_id = seeded.test_episodes[("ppo", 1)]
    at.selectbox(key="episode").select(episode_id).run()
    assert_clean(at)
    equity = figures(at)["Equity curve"]
    assert [t["name"] for t in equity["data"]] == [POLICY_LABELS[p] for p in POLICY_NAMES]
    assert all(len(values(t["y"])) == seeded.steps_per_window for t in equity["data"])
    with sqlite_engine.connect() as conn:
        final = conn.execute(
            sa.select(portfolio.c.net_worth).where(
                portfolio.c.episode_id == episode_id, portfolio.c.step == seeded.steps_per_window - 1
            )
        ).scalar_one()
    assert at.metric[0].value == f"${final:,.2f}"


def test_one_test_window_shows_that_windows_risk_metrics(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    at.selectbox(key="episode").select(seeded.test_episodes[("ppo", 1)]).run()
    assert_clean(at)
    with sqlite_engine.connect() as conn:
        stored = pd.DataFrame(
            conn.execute(
                sa.select(evals.c.policy, *(evals.c[m] for m in METRIC_NAMES)).where(
                    evals.c.model_id == seeded.model_id, evals.c.fold == 1
                )
            ).all()
        )
    stored["policy"] = stored["policy"].map(POLICY_LABELS)
    shown = table(at, "fold", "policy", *METRIC_NAMES)
    assert shown["fold"].tolist() == [1] * len(POLICY_NAMES)
    pd.testing.assert_frame_equal(
        shown[["policy", *METRIC_NAMES]].sort_values("policy").reset_index(drop=True),
        stored.sort_values("policy").reset_index(drop=True),
        check_dtype=False,
    )


def test_the_evaluation_lists_every_test_windows_risk_metrics(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    shown = table(at, "fold", "policy", *METRIC_NAMES)
    assert sorted(shown["fold"].unique()) == list(range(seeded.windows))
    assert len(shown) == seeded.windows * len(POLICY_NAMES)


def test_training_episodes_are_drawn_before_the_train_test_boundary(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    [training] = [t for t in figures(at)["Equity curve"]["data"] if "training" in t["name"]]
    stamps = pd.to_datetime(pd.Series(training["x"]), utc=True).dropna()
    assert len(stamps) == 120  # the seeded training episode's steps
    assert stamps.max() <= seeded.split_ts  # a step is stamped with the bar it marks to


def test_episode_picker_reads_window_split_and_policy(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    shown = at.selectbox(key="episode").options  # the labels the picker shows
    assert "fold 1 test · PPO agent (40 bars)" in shown
    assert "train ep 1 · PPO agent (120 bars)" in shown
    assert not any(seeded.model_id in label for label in shown)


def test_money_is_shown_in_dollars(sqlite_engine, dashboard):
    seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Net worth"].startswith("$") and shown["Costs paid"].startswith("$")


@pytest.mark.parametrize("end", [SYNTHETIC_END, "now"])
def test_freshness_is_judged_at_the_markets_clock_as_ingest_judges_it(
    sqlite_engine, dashboard, monkeypatch, end
):
    """`make demo` fills a market pinned at TT_SYNTHETIC_END and says every partition is fresh; the dashboard
    said all of them were stale, judging them at the wall clock. It judges at the market's clock now; with
    TT_SYNTHETIC_END=now that clock is the wall clock, days after these bars."""
    pinned = pd.Timestamp(SYNTHETIC_END, tz="UTC")
    seed_evaluation(sqlite_engine, now=pinned)
    monkeypatch.setenv("TT_SYNTHETIC_END", end)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    status = table(at, "symbol", "timeframe", "status").set_index(["symbol", "timeframe"])["status"]
    stored = status[[s != UNFETCHED for s, _ in status.index]]
    stored = stored.drop([STALE_PARTITION, FAILED_PARTITION])
    if end == SYNTHETIC_END:
        assert (stored == "fresh").all(), stored[stored != "fresh"]
        assert status[STALE_PARTITION] == "stale"
        captions = [c.value for c in at.caption]
        assert any(f"as of {pinned:%Y-%m-%d %H:%M} UTC" in c for c in captions), captions
    else:
        assert (stored == "stale").all(), stored[stored != "stale"]


def test_freshness_lists_every_registered_partition_in_watchlist_order(sqlite_engine, dashboard):
    seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    partitions = table(at, "symbol", "timeframe", "status")
    expected = [(s, t) for t in TIMEFRAME_NAMES for s in (*SYMBOLS, UNFETCHED)]
    assert list(partitions[["symbol", "timeframe"]].itertuples(index=False, name=None)) == expected
    status = partitions.set_index(["symbol", "timeframe"])["status"]
    assert status[(UNFETCHED, "1d")] == "no data"
    assert (status[STALE_PARTITION], status[FAILED_PARTITION]) == ("stale", "failed")
    shown = partitions.set_index(["symbol", "timeframe"])["last_ts"]
    with sqlite_engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.select(prices.c.timeframe, sa.func.max(prices.c.ts)).group_by(prices.c.timeframe)
            ).all()
        )
    last = {t: pd.to_datetime(ts, utc=True) for t, ts in stored.items()}
    assert shown[(SYMBOLS[0], "1d")] == f"{last['1d']:%Y-%m-%d}"  # the session, not its opening time
    assert shown[(SYMBOLS[0], "1h")] == f"{last['1h']:%Y-%m-%d %H:%M}"
    assert pd.isna(shown[(UNFETCHED, "1d")])
    summary = table(at, "partitions", "last_bar").set_index("timeframe")["last_bar"]
    assert summary["1d"] == f"{last['1d']:%Y-%m-%d}"


def test_model_query_parameter_selects_that_model(sqlite_engine, dashboard):
    first = seed_evaluation(sqlite_engine)
    seed_evaluation(
        sqlite_engine,
        model_id="ppo-1h-later",
        timeframe="1h",
        windows=1,
        steps_per_window=20,
        with_prices=False,
    )
    at = dashboard(url_of(sqlite_engine), {"model": first.model_id}).run()
    assert_clean(at)
    assert (at.selectbox(key="timeframe").value, at.selectbox(key="model").value) == ("1d", first.model_id)


def test_the_model_links_back_to_its_dagster_run_and_asset(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    base = config.dagster_url()
    [links] = [c.value for c in at.caption if "in Dagster" in c.value]
    assert f"({base}/runs/{DAGSTER_RUN_ID})" in links and f"({base}/assets/ppo_model)" in links
    assert seeded.model_id in links


def test_a_model_trained_in_process_links_to_no_dagster_run(sqlite_engine, dashboard):
    seed_evaluation(
        sqlite_engine,
        run_id="cli-35ecdad2f86f",
        train_steps=20,
        windows=1,
        steps_per_window=10,
        with_prices=False,
    )
    at = dashboard(url_of(sqlite_engine)).run()
    assert_clean(at)
    [links] = [c.value for c in at.caption if "in Dagster" in c.value]
    assert "/runs/" not in links and "trained in process" in links


def test_empty_database_page_points_to_make_demo(engine, dashboard):
    at = dashboard(url_of(engine)).run()
    assert_clean(at)
    assert any("make demo" in info.value for info in at.info)
    assert not at.get("plotly_chart")


def test_empty_database_page_lists_the_registered_partitions_without_data(engine, dashboard):
    at = dashboard(url_of(engine)).run()
    assert_clean(at)
    partitions = table(at, "symbol", "timeframe", "status")
    assert len(partitions) == len(TIMEFRAME_NAMES) * (len(SYMBOLS) + 1)
    assert set(partitions["status"]) == {"no data"}


def test_unreachable_database_shows_one_line_without_the_password(dashboard):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    at = dashboard(f"postgresql+psycopg://tt:s3cr3tpw@127.0.0.1:{port}/tt").run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "cannot connect" in message and f"127.0.0.1:{port}" in message
    assert "s3cr3tpw" not in message


def test_live_view_reads_only_the_new_steps(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    live = start_live_episode(sqlite_engine, seeded, steps=200)
    live.log(30)
    at = dashboard(url_of(sqlite_engine)).run()
    assert any("being logged" in info.value for info in at.info)
    at.selectbox(key="episode").select(live.episode_id).run()
    assert_clean(at)
    assert any("30 steps logged, 30 new" in c.value for c in at.caption)
    assert len(values(figures(at)["Equity curve"]["data"][0]["y"])) == 30

    live.log(20)
    at.run()
    assert_clean(at)
    assert any("50 steps logged, 20 new" in c.value for c in at.caption)
    equity = figures(at)["Equity curve"]["data"][0]
    assert len(values(equity["y"])) == 50
    assert values(equity["y"])[-1] == pytest.approx(live.sim.net_worth[49])

    live.finish()
    at.run()
    assert_clean(at)
    assert not any("Live:" in c.value for c in at.caption)
    assert len(values(figures(at)["Equity curve"]["data"][0]["y"])) == 50


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements every engine of this process runs inside the block (the dashboard's own too)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)


ANSWER_READS = {  # what a model's page reads, by a table or column only that read names
    "model_summary": "tt_dataset",
    "model_episodes": "tt_episode.final_net_worth",
    "eval_metrics": "tt_eval.sharpe",
    "steps": "tt_portfolio",
    "holdings and trades": "tt_holdings",
}


def answers_read(run: list[str]) -> set[str]:
    return {answer for answer, marker in ANSWER_READS.items() if any(marker in sql for sql in run)}


def test_registering_another_model_leaves_a_models_cached_answers(sqlite_engine, dashboard):
    seeded = seed_evaluation(sqlite_engine)
    url = url_of(sqlite_engine)
    with statements() as first:
        assert_clean(dashboard(url, {"model": seeded.model_id}).run())
    assert answers_read(first) == set(ANSWER_READS)

    retrained = seed_evaluation(sqlite_engine, model_id="ppo-1d-retrained", seed=8, with_prices=False)
    with statements() as after:
        at = dashboard(url, {"model": seeded.model_id}).run()  # a new session
    assert_clean(at)
    assert answers_read(after) == set()
    assert at.selectbox(key="model").value == seeded.model_id
    assert len(at.selectbox(key="model").options) == 2  # the model list shows the new model,
    assert dashboard(url).run().selectbox(key="model").value == retrained.model_id  # first: the newest

    start_live_episode(sqlite_engine, seeded, steps=20)  # a row of this model: its episode list is read again
    with statements() as changed:
        assert_clean(dashboard(url, {"model": seeded.model_id}).run())
    assert answers_read(changed) == {"model_episodes", "eval_metrics", "model_summary"}


def test_a_production_model_is_named_as_one_not_as_an_unevaluated_model(sqlite_engine, dashboard):
    """A production model (trained on the whole history after its walk-forward model's evaluation) showed in
    the model list as 'not evaluated', and picking one without episodes failed the page ('KeyError: None')."""
    from tt_resources.db.rl_log import register_model

    seeded = seed_evaluation(sqlite_engine)
    production = register_model(
        sqlite_engine, timeframe="1d", path="-", config={}, production_of=seeded.model_id
    )
    at = dashboard(url_of(sqlite_engine), {"model": production}).run()
    assert_clean(at)
    picker = at.selectbox(key="model")  # its options are the shown labels
    assert picker.value == production
    [shown] = [o for o in picker.options if f"model {production[:8]}" in o]
    assert shown.endswith(f"production model of {seeded.model_id[:8]}, whole history, no test")
    [walk_forward] = [o for o in picker.options if f"model {seeded.model_id[:8]}" in o]
    assert "production" not in walk_forward and "not evaluated" not in walk_forward
    assert (
        at.info[0].value
        == (  # the Research tab's (the Live tab's come after it)
            f"Production model {production[:8]}: trained on the whole history after walk-forward model "
            f"{seeded.model_id[:8]}, so none of its bars is out of sample; that model's evaluation is its evidence "
            "(pick it above), and the Live tab shows it trading once promoted."
        )
    )


# ---------------------------------------------------------------- every panel shows what is selected


@pytest.fixture(scope="module")
def walk_forward(sqlite_template, tmp_path_factory) -> Iterator[tuple[sa.Engine, SeededEvaluation]]:
    """A SQLite database with a walk-forward evaluation of two agent seeds (one fold model per fold and seed,
    each with its training episode), the oracle and the baselines; seeded once for the module, read only."""
    path = tmp_path_factory.mktemp("walk_forward") / "tt.sqlite"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(f"sqlite:///{path}")
    yield engine, seed_evaluation(engine, seeds=(0, 1))
    engine.dispose()


def eval_rows(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(sa.select(evals).where(evals.c.model_id == model_id))
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def episode_row(engine: sa.Engine, episode_id: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(episodes).where(episodes.c.episode_id == episode_id)).one()


def largest_trades(engine: sa.Engine, episode_id: str) -> list[tuple[str, float]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(holdings.c.symbol, holdings.c.trade_value)
                .where(holdings.c.episode_id == episode_id, holdings.c.trade_value != 0)
                .order_by(sa.func.abs(holdings.c.trade_value).desc())
                .limit(15)
            )
        ]


def pnl_by_symbol(engine: sa.Engine, episode_ids: list[str]) -> dict[str, float]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.select(holdings.c.symbol, sa.func.sum(holdings.c.pnl))
                .where(holdings.c.episode_id.in_(episode_ids))
                .group_by(holdings.c.symbol)
            ).all()
        )


def kpis(at: AppTest) -> dict[str, object]:
    return {m.label: m for m in at.metric}


def boundary(at: AppTest) -> pd.Timestamp:
    [line] = [s for s in figures(at)["Equity curve"]["layout"]["shapes"] if s["type"] == "line"]
    return pd.Timestamp(line["x0"]).tz_localize("UTC")


def assert_panels_show(at: AppTest, engine: sa.Engine, episode_ids: list[str]) -> None:
    """The Holdings and Trades tabs show the positions and trades of `episode_ids` and of nothing else."""
    pnl = pnl_by_symbol(engine, episode_ids)
    if not pnl:
        assert any("No holdings" in info.value for info in at.info)
        assert table(at, "symbol", "side", "trade_value").empty
        return
    attribution = figures(at)["P&L attribution by symbol"]["data"][0]
    assert dict(zip(attribution["x"], values(attribution["y"]), strict=True)) == pytest.approx(pnl)
    trades = table(at, "symbol", "side", "trade_value")
    expected = sorted((t for e in episode_ids for t in largest_trades(engine, e)), key=lambda t: -abs(t[1]))
    shown = [
        (symbol, round(value, 6))
        for symbol, value in trades[["symbol", "trade_value"]].itertuples(index=False)
    ]
    assert len(shown) == min(15, len(expected))
    assert sorted(shown) == sorted((symbol, round(value, 6)) for symbol, value in expected[: len(shown)])


TEST_WINDOW_PICKS = [(AGENT, 1), *((p, -1) for p in POLICY_NAMES if p != AGENT)]  # (policy, seed) on fold 1


@pytest.mark.parametrize(("policy", "seed"), TEST_WINDOW_PICKS, ids=[p for p, _ in TEST_WINDOW_PICKS])
def test_a_test_window_episode_shows_its_own_policys_numbers(walk_forward, dashboard, policy, seed):
    engine, seeded = walk_forward
    episode_id = seeded.agent_episodes[(seed, 1)] if seed >= 0 else seeded.test_episodes[(policy, 1)]
    at = dashboard(url_of(engine)).run()
    at.selectbox(key="episode").select(episode_id).run()
    assert_clean(at)
    stored = eval_rows(engine, seeded.model_id).set_index(["policy", "fold", "seed"])
    row = stored.loc[(policy, 1, seed)]
    logged = episode_row(engine, episode_id)
    shown = kpis(at)
    assert shown["Net worth"].value == f"${logged.final_net_worth:,.2f}"
    assert shown["Total return"].value == f"{row.total_return:.2%}"
    assert shown["Sharpe (ann.)"].value == ("n/a" if pd.isna(row.sharpe) else f"{row.sharpe:.2f}")
    assert shown["Max drawdown"].value == f"{row.max_drawdown:.2%}"
    assert shown["Costs paid"].value == f"${row.costs * INITIAL_NET_WORTH:,.2f}"
    edge = shown["Total return"].proto.delta
    if policy == EQUAL_WEIGHT:
        assert not edge
    else:  # the edge over the same window's equal weight
        benchmark = stored.loc[(EQUAL_WEIGHT, 1, -1), "total_return"]
        assert edge == f"{row.total_return - benchmark:+.2%} vs equal weight"
    assert_panels_show(at, engine, [episode_id])
    equity = figures(at)["Equity curve"]
    assert equity["data"][0]["name"] == POLICY_LABELS[AGENT]  # compared with the window's agent
    assert boundary(at) == stored.loc[(policy, 1, seed), "test_start"]


def test_a_training_episode_of_a_later_fold_shows_that_folds_boundary(walk_forward, dashboard):
    engine, seeded = walk_forward
    episode_id = seeded.fold_train_episodes[(0, 2)]
    at = dashboard(url_of(engine)).run()
    at.selectbox(key="episode").select(episode_id).run()
    assert_clean(at)
    logged = episode_row(engine, episode_id)
    assert kpis(at)["Net worth"].value == f"${logged.final_net_worth:,.2f}"
    fold_start = eval_rows(engine, seeded.model_id).query("fold == 2")["test_start"].min()
    assert boundary(at) == fold_start > seeded.split_ts
    [curve] = figures(at)["Equity curve"]["data"]
    assert pd.to_datetime(pd.Series(curve["x"]), utc=True).max() <= fold_start
    assert_panels_show(at, engine, [episode_id])


def test_the_out_of_sample_view_shows_the_evaluations_headline_and_the_seed_spread(walk_forward, dashboard):
    engine, seeded = walk_forward
    at = dashboard(url_of(engine)).run()
    assert_clean(at)
    stitched = eval_rows(engine, seeded.model_id).query("fold == -1").set_index(["policy", "seed"])
    summary = stitched.loc[(AGENT, -1)]  # the seed ensemble: the risk table's agent row too
    shown = kpis(at)
    assert shown["Total return"].value == f"{summary.total_return:.2%}"
    assert shown["Sharpe (ann.)"].value == f"{summary.sharpe:.2f}"
    assert shown["Net worth"].value == f"${INITIAL_NET_WORTH * (1 + summary.total_return):,.2f}"
    edge = summary.total_return - stitched.loc[(EQUAL_WEIGHT, -1), "total_return"]
    assert shown["Total return"].proto.delta == f"{edge:+.2%} vs equal weight"
    risk = table(at, "policy", *METRIC_NAMES, *SIGNIFICANCE_NAMES).set_index("policy")
    assert risk.loc[POLICY_LABELS[AGENT], "sharpe"] == pytest.approx(summary.sharpe)
    assert [m.value for m in at.markdown if "Verdict:" in m.value] == [f"**{SEEDED_VERDICT}**"]
    [spread] = [c.value for c in at.caption if "Seed range" in c.value]
    for seed in (0, 1):
        assert f"{stitched.loc[(AGENT, seed), 'total_return']:.2%} (seed {seed})" in spread
    # curves, holdings and trades: the first seed's episodes; its fold 0 training before fold 0's boundary
    assert boundary(at) == seeded.split_ts
    [training] = [t for t in figures(at)["Equity curve"]["data"] if "training" in t["name"]]
    stamps = pd.to_datetime(pd.Series(training["x"]), utc=True).dropna()
    assert len(stamps) == 120 and stamps.max() <= seeded.split_ts
    assert_panels_show(at, engine, [seeded.agent_episodes[(0, w)] for w in range(seeded.windows)])


def test_net_worth_arrows_follow_the_sign_of_the_change(walk_forward, dashboard):
    engine, _ = walk_forward
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(episodes.c.episode_id, episodes.c.final_net_worth, episodes.c.initial_net_worth).where(
                episodes.c.split == "test", episodes.c.policy != "cash"
            )
        ).all()
    loss = min(rows, key=lambda r: r.final_net_worth - r.initial_net_worth)
    gain = max(rows, key=lambda r: r.final_net_worth - r.initial_net_worth)
    assert loss.final_net_worth < loss.initial_net_worth < gain.final_net_worth
    at = dashboard(url_of(engine)).run()
    for row, direction, sign in (
        (loss, MetricProto.MetricDirection.DOWN, "-"),
        (gain, MetricProto.MetricDirection.UP, "+"),
    ):
        at.selectbox(key="episode").select(row.episode_id).run()
        assert_clean(at)
        net_worth = kpis(at)["Net worth"].proto
        change = row.final_net_worth - row.initial_net_worth
        assert net_worth.delta == f"{sign}${abs(change):,.2f} from ${row.initial_net_worth:,.2f}"
        assert net_worth.direction == direction


def test_tables_show_na_one_percent_format_and_session_dates(walk_forward, dashboard):
    engine, _ = walk_forward
    at = dashboard(url_of(engine)).run()
    assert_clean(at)
    risk = table(at, "policy", *METRIC_NAMES, *SIGNIFICANCE_NAMES)
    assert risk["policy"].tolist() == [POLICY_LABELS[p] for p in POLICY_NAMES]
    assert risk.isna().any().any()  # e.g. the DSR of the baselines: shown as n/a
    assert all(d.proto.placeholder == "n/a" for d in at.dataframe)
    configs = [json.loads(d.proto.columns) for d in at.dataframe]
    percents = [
        c["type_config"]
        for cols in configs
        for c in cols.values()
        if c.get("type_config", {}).get("format") == "percent"
    ]
    assert len(percents) > len(METRIC_NAMES) and all(c["step"] == 0.0001 for c in percents)  # two decimals
    [risk_columns] = [cols for cols in configs if "dsr" in cols]
    assert risk_columns["psr"]["type_config"]["format"] == "percent"  # a probability, as in Dagster
    [trades] = [cols for cols in configs if "trade_value" in cols]
    assert (trades["ts"]["label"], trades["ts"]["type_config"]["format"]) == ("Session", "YYYY-MM-DD")
    assert figures(at)["Equity curve"]["layout"]["xaxis"]["hoverformat"] == "%Y-%m-%d"
    per_window = table(at, "fold", "seed", "policy", *METRIC_NAMES)
    first = per_window[per_window["fold"] == 0]
    assert first["policy"].tolist() == [POLICY_LABELS[p] for p in (AGENT, *POLICY_NAMES)]
    assert first["seed"].iloc[:2].tolist() == [0, 1] and first["seed"].iloc[2:].isna().all()


def test_turnover_axis_is_a_percentage(walk_forward, dashboard):
    engine, _ = walk_forward
    at = dashboard(url_of(engine)).run()
    layout = figures(at)["Turnover and costs over time"]["layout"]
    assert layout["yaxis"]["tickprefix"] == "$"
    assert "tickprefix" not in layout["yaxis2"] and layout["yaxis2"]["tickformat"].endswith("%")


def test_formats():
    assert (usd(-1234.5), usd(96563.456), usd(None)) == ("-$1,234.50", "$96,563.46", "n/a")
    assert (usd(-3436.54, signed=True), usd(12.0, signed=True)) == ("-$3,436.54", "+$12.00")
    assert (percent(0.0), percent(0.214), percent(0.24264), percent(float("nan"))) == (
        "0.00%",
        "21.40%",
        "24.26%",
        "n/a",
    )
    assert (percent(-0.0344, signed=True), percent(0.1549, signed=True)) == ("-3.44%", "+15.49%")
    assert (ratio(1.534), ratio(None), ratio(float("inf"))) == ("1.53", "n/a", "n/a")
    assert bar_time_format("1d") == ("Session", "YYYY-MM-DD")
    assert bar_time_format("15m") == ("Bar (UTC)", "YYYY-MM-DD HH:mm")
    assert (hover_time_format("1d"), hover_time_format("1h")) == ("%Y-%m-%d", "%Y-%m-%d %H:%M")
    stamps = pd.Series(pd.to_datetime(["2026-12-04 14:30", None, "2026-12-04 15:00"], utc=True))
    shown = bar_times(stamps, pd.Series(["1d", "1d", "1h"]))
    assert shown[0] == "2026-12-04" and pd.isna(shown[1]) and shown[2] == "2026-12-04 15:00"
    assert dagster_run_exists(DAGSTER_RUN_ID)
    assert not any(dagster_run_exists(r) for r in ("cli-35ecdad2f86f", None, ""))
    frame = pd.DataFrame({"policy": sorted(POLICY_NAMES), "fold": 0})
    assert in_policy_order(frame)["policy"].tolist() == list(POLICY_NAMES)
