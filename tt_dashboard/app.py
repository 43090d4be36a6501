"""Streamlit P&L dashboard (`make dashboard`: `streamlit run tt_dashboard/app.py`).

Reads the database named by DATABASE_URL (default: the embedded SQLite file) through tt_resources.db.reports and
brings its schema up to date on first use. A running episode is followed live: a fragment re-runs every
LIVE_REFRESH_SECONDS and reads only the steps logged since its previous run.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import make_url

from tt_dashboard import charts
from tt_dashboard.series import bucket_stride, from_steps, headline, holding_summary, rebucket, stitch
from tt_resources import config
from tt_resources.db import reports
from tt_resources.db.engine import DatabaseConnectionError, check_connection, create_engine, describe
from tt_resources.db.migrate import upgrade
from tt_resources.terms import AGENT, EQUAL_WEIGHT, METRIC_NAMES, METRICS, POLICY_NAMES, SIGNIFICANCE
from tt_resources.timeframes import get_timeframe

LOG = logging.getLogger(__name__)
LIVE_REFRESH_SECONDS = 3
TOP_HOLDINGS = 8
LINE_BUCKETS = 1_000  # buckets per line chart (a bucket draws as at most 3 points)
MAX_BUCKETS = 300  # time buckets of the weights and turnover charts
SECTIONS = ("Performance", "Holdings & attribution", "Trades", "Data freshness")
OUT_OF_SAMPLE = "__out_of_sample__"
STATUS_ICONS = {"running": "🟢", "finished": "✅", "incomplete": "⚠️"}
NUMBER_FORMATS = {"percent": "percent", "ratio": "%.2f"}  # streamlit format of each terms.MetricKind


@st.cache_resource(show_spinner=False)
def database(url: str) -> sa.Engine:
    """A migrated engine for `url` (connection checked, schema upgraded once per process)."""
    engine = create_engine(url)
    check_connection(engine)
    upgrade(engine)
    return engine


def one_line(exc: BaseException, url: str) -> str:
    """First line of an error, with the database password (if any) masked."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = make_url(url).password
    return text.replace(str(password), "***") if password else text


def metric_columns(columns) -> dict:
    """Streamlit column configs that label and format tt_eval metric columns (data stays unrounded)."""
    return {
        m.name: st.column_config.NumberColumn(m.label, format=NUMBER_FORMATS[m.kind])
        for m in (*METRICS, *SIGNIFICANCE)
        if m.name in columns
    }


# ---------------------------------------------------------------- picking what to show


def episode_label(row) -> str:
    """Picker label, e.g. '🟢 train · ppo · ppo-1d-live (120 steps)'."""
    where = f"test fold {int(row.window)}" if row.split == "test" and pd.notna(row.window) else row.split
    return f"{STATUS_ICONS.get(row.status, '')} {where} · {row.policy} · {row.episode_id} ({row.steps} steps)"


def pick(engine: sa.Engine, catalog: pd.DataFrame) -> tuple[str, pd.DataFrame, pd.DataFrame, str]:
    """Sidebar pickers; defaults follow the catalog order (latest evaluation first).

    Returns (model_id, episodes of the model, its tt_eval rows, chosen episode id or OUT_OF_SAMPLE)."""
    timeframes = list(dict.fromkeys(catalog["timeframe"]))
    timeframe = st.sidebar.selectbox("Timeframe", timeframes, key="timeframe")
    candidates = catalog[catalog["timeframe"] == timeframe]
    labels = {
        r.model_id: f"{r.model_id} · evaluated {r.evaluated_at:%Y-%m-%d %H:%M}"
        if pd.notna(r.evaluated_at)
        else f"{r.model_id} · not evaluated"
        for r in candidates.itertuples()
    }
    model_id = st.sidebar.selectbox("Model", list(labels), format_func=labels.get, key="model")
    episodes = reports.model_episodes(engine, model_id)
    metrics = reports.eval_metrics(engine, model_id)
    ordered = episodes.assign(_live=episodes["status"] != "running").sort_values(
        ["_live", "started_at"], ascending=[True, False], kind="stable"
    )
    options = ([OUT_OF_SAMPLE] if not metrics.empty else []) + ordered["episode_id"].tolist()
    names = {OUT_OF_SAMPLE: "Out-of-sample: all walk-forward folds"} | {
        r.episode_id: episode_label(r) for r in ordered.itertuples()
    }
    choice = st.sidebar.selectbox("Episode", options, format_func=names.get, key="episode")
    return model_id, episodes, metrics, choice


# ---------------------------------------------------------------- panels


def kpis(curve: pd.DataFrame, initial: float, benchmark: pd.DataFrame | None, bars_per_year: int) -> None:
    """Headline numbers of the agent's curve (total return against equal weight when that baseline is shown)."""
    numbers = headline(curve, initial, bars_per_year)
    delta = None
    if benchmark is not None:
        edge = numbers["total_return"] - headline(benchmark, initial, bars_per_year)["total_return"]
        delta = f"{edge:+.2%} vs equal weight"
    cols = st.columns(5)
    cols[0].metric("Net worth", f"{numbers['net_worth']:,.0f}")
    cols[1].metric("Total return", f"{numbers['total_return']:.2%}", delta)
    cols[2].metric("Sharpe (ann.)", f"{numbers['sharpe']:.2f}")
    cols[3].metric("Max drawdown", f"{numbers['max_drawdown']:.2%}")
    cols[4].metric("Costs paid", f"{numbers['costs']:,.0f}")


def performance(curves: dict[str, pd.DataFrame], split_ts, windows: pd.DataFrame, bars_per_year: int) -> None:
    """Equity (with the train/test boundary), drawdown and rolling Sharpe charts."""
    st.plotly_chart(charts.equity_figure(curves, split_ts, windows), key="equity")
    left, right = st.columns(2)
    left.plotly_chart(charts.drawdown_figure(curves), key="drawdown")
    steps = max(int(c["n"].sum()) for c in curves.values())
    window = max(5, min(bars_per_year // 4, steps // 4))
    right.plotly_chart(charts.sharpe_figure(curves, window, bars_per_year), key="sharpe")


def risk_table(metrics: pd.DataFrame) -> None:
    """tt_eval rows: per policy stitched over the folds and averaged over the seeds (fold -1, seed -1) with
    the significance columns, and every fold and seed in an expander."""
    columns = ["policy", *METRIC_NAMES, *(m.name for m in SIGNIFICANCE)]
    summary = metrics[(metrics["fold"] == -1) & (metrics["seed"] == -1)]
    st.subheader("Risk metrics")
    st.dataframe(
        summary[columns].reset_index(drop=True),
        hide_index=True,
        column_config=metric_columns(columns),
    )
    seeds = sorted(metrics.loc[metrics["seed"] >= 0, "seed"].unique())
    trials = metrics.loc[metrics["policy"] == AGENT, "n_trials"].dropna()
    st.caption(
        f"{AGENT}: mean over {len(seeds) or 1} seed(s), Sharpe CI = 95% Student-t interval across seeds; "
        "PSR = probability that the true Sharpe ratio is above 0 (cash); DSR = the PSR deflated for the "
        f"{int(trials.iloc[0]) if len(trials) else 1} configuration(s) tried on this dataset."
    )
    with st.expander("Per-fold metrics"):
        folds = metrics[metrics["fold"] >= 0]
        st.dataframe(
            folds[["fold", "seed", "test_start", "test_end", *columns]].reset_index(drop=True),
            hide_index=True,
            column_config=metric_columns(columns),
        )


def holdings_panel(engine: sa.Engine, agent: pd.DataFrame, stride: int, episode_ids: list[str]) -> None:
    """Stacked weights of the top holdings, per-symbol P&L attribution, turnover and costs over time.

    `agent` is the agent's bucketed curve read with `stride` steps per bucket."""
    attribution = reports.symbol_attribution(engine, episode_ids)
    if attribution.empty:
        st.info("No holdings were logged for this selection.")
        return
    top = attribution.nlargest(TOP_HOLDINGS, "mean_weight")["symbol"].tolist()
    coarse = stride * bucket_stride(
        len(agent), MAX_BUCKETS
    )  # a multiple of stride: buckets start on agent rows
    weights = reports.weight_buckets(engine, episode_ids, top, coarse).merge(
        agent[["episode_id", "step", "ts"]], on=["episode_id", "step"]
    )
    st.plotly_chart(charts.weights_figure(weights), key="weights")
    left, right = st.columns(2)
    left.plotly_chart(charts.attribution_figure(attribution), key="attribution")
    right.plotly_chart(charts.turnover_costs_figure(rebucket(agent, MAX_BUCKETS)), key="turnover")


def trades_panel(engine: sa.Engine, episode_ids: list[str], timeframe: str) -> None:
    """Largest trades, holding periods and costs per symbol."""
    trades = reports.largest_trades(engine, episode_ids, limit=15)
    st.subheader("Largest trades")
    st.dataframe(
        trades.assign(side=np.where(trades["trade_value"] > 0, "buy", "sell"))[
            [
                "ts",
                "symbol",
                "side",
                "trade_value",
                "price",
                "quantity",
                "weight",
                "cost",
                "episode_id",
                "step",
            ]
        ],
        hide_index=True,
        column_config={
            "trade_value": st.column_config.NumberColumn("Traded value", format="%.0f"),
            "price": st.column_config.NumberColumn("Price", format="%.2f"),
            "quantity": st.column_config.NumberColumn("Shares after", format="%.1f"),
            "weight": st.column_config.NumberColumn("Weight after", format="percent"),
            "cost": st.column_config.NumberColumn("Cost", format="%.2f"),
        },
    )
    left, right = st.columns(2)
    left.subheader(f"Holding periods ({timeframe} bars)")
    left.dataframe(
        holding_summary(reports.holding_periods(engine, episode_ids)),
        hide_index=True,
        column_config={"mean_bars": st.column_config.NumberColumn("mean_bars", format="%.1f")},
    )
    attribution = reports.symbol_attribution(engine, episode_ids)
    right.subheader("Costs by symbol")
    right.dataframe(
        attribution.assign(
            cost_bps=attribution["costs"] / attribution["traded"].where(attribution["traded"] > 0) * 1e4
        )[["symbol", "trades", "traded", "costs", "cost_bps"]],
        hide_index=True,
        column_config={
            "traded": st.column_config.NumberColumn("Traded value", format="%.0f"),
            "costs": st.column_config.NumberColumn("Costs", format="%.2f"),
            "cost_bps": st.column_config.NumberColumn("Cost (bps of traded)", format="%.1f"),
        },
    )


def freshness_panel(engine: sa.Engine) -> None:
    """Per timeframe: partitions fresh/stale/failed, last bar, coverage; the unhealthy partitions listed."""
    partitions = reports.partition_freshness(engine)
    if partitions.empty:
        st.info("No market data stored yet.")
        return
    st.dataframe(
        reports.freshness_summary(partitions),
        hide_index=True,
        column_config={
            "min_coverage": st.column_config.NumberColumn("Min coverage", format="percent"),
            "mean_coverage": st.column_config.NumberColumn("Mean coverage", format="percent"),
        },
    )
    problems = partitions[partitions["status"] != "fresh"]
    if not problems.empty:
        st.caption("Partitions that need attention")
        st.dataframe(
            problems[
                ["symbol", "timeframe", "status", "last_ts", "n_bars", "coverage", "outcome", "message"]
            ],
            hide_index=True,
            column_config={"coverage": st.column_config.NumberColumn("Coverage", format="percent")},
        )


# ---------------------------------------------------------------- views


def curves_for(buckets: pd.DataFrame, chosen: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Stitched curve per policy (agent first) from the `chosen` episodes (policy, episode_id, initial_net_worth),
    listed in window order."""
    curves = {}
    for policy in sorted(chosen["policy"].unique(), key=lambda p: (*POLICY_NAMES, p).index(p)):
        rows = chosen[chosen["policy"] == policy]
        curve = stitch(buckets, rows["episode_id"].tolist(), rows["initial_net_worth"].tolist())
        if not curve.empty:
            curves[policy] = curve
    return curves


def results(
    engine: sa.Engine,
    chosen: pd.DataFrame,
    metrics: pd.DataFrame,
    windows: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
) -> None:
    """The report on the `chosen` episodes (policy, episode_id, steps, initial_net_worth): KPIs, then the
    section picked in the section bar (only that section is computed)."""
    longest = int(chosen.groupby("policy")["steps"].sum().max())
    stride = bucket_stride(longest, LINE_BUCKETS)
    curves = curves_for(reports.portfolio_buckets(engine, chosen["episode_id"].tolist(), stride), chosen)
    if not curves:
        st.info("No steps have been logged for this selection yet.")
        return
    agent_policy = next(iter(curves))
    agent = chosen[chosen["policy"] == agent_policy]
    bars_per_year = get_timeframe(timeframe).bars_per_year
    kpis(
        curves[agent_policy],
        float(agent["initial_net_worth"].iloc[0]),
        curves.get(EQUAL_WEIGHT),
        bars_per_year,
    )
    section = st.segmented_control(
        "Section", SECTIONS, default=SECTIONS[0], key="section", label_visibility="collapsed"
    )
    if section == "Holdings & attribution":
        holdings_panel(engine, curves[agent_policy], stride, agent["episode_id"].tolist())
    elif section == "Trades":
        trades_panel(engine, agent["episode_id"].tolist(), timeframe)
    elif section == "Data freshness":
        freshness_panel(engine)
    else:
        performance(curves, split_ts, windows, bars_per_year)
        if not metrics.empty:
            risk_table(metrics)


def evaluation_view(
    engine: sa.Engine,
    episodes: pd.DataFrame,
    metrics: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
):
    """Agent against the baselines on every walk-forward fold, stitched (the agent's first seed)."""
    seeds = metrics.loc[metrics["seed"] >= 0, "seed"]
    first_seed = seeds.min() if len(seeds) else -1
    refs = metrics.loc[
        (metrics["fold"] >= 0) & metrics["episode_id"].notna() & metrics["seed"].isin([-1, first_seed]),
        ["policy", "fold", "episode_id"],
    ]
    chosen = refs.merge(episodes[["episode_id", "steps", "initial_net_worth"]], on="episode_id").sort_values(
        "fold"
    )
    folds = metrics.loc[metrics["fold"] >= 0, ["fold", "test_start", "test_end"]].drop_duplicates("fold")
    first, last = metrics["test_start"].min(), metrics["test_end"].max()
    shown = f"; curves of seed {first_seed}" if len(seeds) else ""
    st.caption(
        f"Out-of-sample: {len(folds)} walk-forward folds, {first:%Y-%m-%d} → {last:%Y-%m-%d}{shown}; "
        f"evaluated {metrics['created_at'].max():%Y-%m-%d %H:%M} UTC"
    )
    results(engine, chosen, metrics, folds, split_ts, timeframe)


def episode_view(
    engine: sa.Engine,
    row: pd.Series,
    episodes: pd.DataFrame,
    metrics: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
):
    """One episode; a test fold's episode is compared with the baselines of the same fold."""
    chosen = pd.DataFrame([row])
    fold_metrics = metrics.iloc[0:0]
    if row["split"] == "test" and pd.notna(row["window"]):
        fold_metrics = metrics[metrics["fold"] == row["window"]]
        others = fold_metrics.loc[
            (fold_metrics["policy"] != row["policy"]) & fold_metrics["episode_id"].notna(),
            ["policy", "episode_id"],
        ]
        others = others.merge(episodes[["episode_id", "steps", "initial_net_worth"]], on="episode_id")
        chosen = pd.concat([chosen, others], ignore_index=True)
    folds = fold_metrics[["fold", "test_start", "test_end"]].drop_duplicates("fold")
    results(engine, chosen, fold_metrics, folds, split_ts, timeframe)


@st.fragment(run_every=LIVE_REFRESH_SECONDS)
def live_view(engine: sa.Engine, row: pd.Series, split_ts: pd.Timestamp | None, timeframe: str) -> None:
    """A running episode: append the steps logged since the last refresh and redraw its P&L."""
    key = f"live:{row['episode_id']}"
    seen = st.session_state.get(key)
    after = int(seen["step"].iloc[-1]) if seen is not None and not seen.empty else -1
    new = reports.portfolio_series(engine, [row["episode_id"]], after_step=after)
    steps = new if seen is None else pd.concat([seen, new], ignore_index=True)
    st.session_state[key] = steps
    status = reports.episode_status(engine, row["episode_id"])
    if status != "running":
        st.rerun()
    st.caption(
        f"🟢 Live: {len(steps)} steps logged, {len(new)} new since the last refresh "
        f"(every {LIVE_REFRESH_SECONDS} s)"
    )
    if steps.empty:
        st.info("Waiting for the first steps of this episode…")
        return
    initial = float(row["initial_net_worth"])
    curve = rebucket(stitch(from_steps(steps), [row["episode_id"]], [initial]), LINE_BUCKETS)
    bars_per_year = get_timeframe(timeframe).bars_per_year
    kpis(curve, initial, None, bars_per_year)
    performance({row["policy"]: curve}, split_ts, pd.DataFrame(), bars_per_year)


def empty_page(engine: sa.Engine, url: str) -> None:
    """What a fresh installation shows: how to get results, and the market data already stored (if any)."""
    st.info(
        f"**No trained models or evaluations yet** in the {describe(url)}.\n\n"
        "Run `make demo` to fetch market data, train a PPO agent and evaluate it against the baselines, "
        "then reload this page."
    )
    st.subheader("Data freshness")
    freshness_panel(engine)


def page(engine: sa.Engine, url: str) -> None:
    st.title("TensorTrade P&L")
    st.sidebar.caption(f"Database: {describe(url)}")
    catalog = reports.model_catalog(engine)
    if catalog.empty:
        empty_page(engine, url)
        return
    model_id, episodes, metrics, choice = pick(engine, catalog)
    summary = reports.model_summary(engine, model_id)
    split_ts = summary.get("split_ts") or summary.get("train_end")  # first held-out bar, else end of training
    timeframe = catalog.loc[catalog["model_id"] == model_id, "timeframe"].iloc[0]
    running = episodes[episodes["status"] == "running"]
    if not running.empty and choice not in set(running["episode_id"]):
        st.info(
            f"{len(running)} episode(s) of this model are being logged: pick one under Episode to watch it live."
        )
    if choice == OUT_OF_SAMPLE:
        evaluation_view(engine, episodes, metrics, split_ts, timeframe)
        return
    row = episodes.set_index("episode_id").loc[choice].copy()
    row["episode_id"] = choice
    st.caption(f"Episode {choice}: {row['split']} · {row['policy']} · {row['status']}")
    if row["status"] == "running":
        live_view(engine, row, split_ts, timeframe)
    else:
        episode_view(engine, row, episodes, metrics, split_ts, timeframe)


def main() -> None:
    st.set_page_config(page_title="TensorTrade P&L", page_icon="📈", layout="wide")
    url = config.database_url()
    try:
        page(database(url), url)
    except DatabaseConnectionError as exc:
        st.error(f"{exc}. Check DATABASE_URL, or unset it to use the embedded SQLite database.")
    except Exception as exc:  # one line on the page, the traceback in the server log
        LOG.exception("dashboard failed")
        st.error(f"The dashboard could not render this page: {one_line(exc, url)}")


main()
