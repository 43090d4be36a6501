"""Streamlit P&L dashboard (`make dashboard`: `streamlit run tt_dashboard/app.py`).

Reads the database named by DATABASE_URL (default: the embedded SQLite file) through tt_resources.db.reports and
brings its schema up to date on first use. Answers are cached per model and per episode (tt_dashboard.cache:
rows about one model never invalidate another's); the model list follows every new row and data freshness
each fetch and minute; the Live tab (tt_dashboard.live) the trading tables. `?model=<model_id>` opens that model (Dagster's metadata links here); each model links
back to its Dagster run and the ppo_model asset. A running episode is followed live: a fragment re-runs every
LIVE_REFRESH_SECONDS and reads only the steps logged since its previous run.
Money is in the account currency, US dollars (the watchlist's stocks trade in USD).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import make_url

from tt_dashboard import charts, live, tearsheet
from tt_dashboard.cache import Reports
from tt_dashboard.formats import (
    NA,
    bar_time_format,
    bar_times,
    dagster_run_exists,
    hover_time_format,
    in_policy_order,
    percent,
    percent_column,
    policy_rank,
    ratio,
    usd,
)
from tt_dashboard.series import (
    bucket_stride,
    evaluated_headline,
    from_steps,
    headline,
    holding_summary,
    rebucket,
    seed_spread,
    stitch,
)
from tt_resources import config
from tt_resources.db import reports
from tt_resources.db.engine import DatabaseConnectionError, describe
from tt_resources.sources import market_now
from tt_resources.terms import AGENT, EQUAL_WEIGHT, METRIC_NAMES, METRICS, SIGNIFICANCE, Metric
from tt_resources.timeframes import get_timeframe

LOG = logging.getLogger(__name__)
LIVE_REFRESH_SECONDS = 3
TOP_HOLDINGS = 8
LINE_BUCKETS = 1_000  # buckets per line chart (a bucket draws as at most 3 points)
MAX_BUCKETS = 300  # time buckets of the weights and turnover charts
SECTIONS = ("Performance", "Holdings & attribution", "Trades", "Tear sheet", "Data freshness")
OUT_OF_SAMPLE = "__out_of_sample__"
STATUS_ICONS = {"running": "🟢", "finished": "", "incomplete": "⚠️"}
DOLLARS = "dollar"  # streamlit's number format: $1,234.57
SHORT_ID = 8  # hex digits of an id shown in labels
PARTITION_ROWS = 30  # rows of the partitions table in view (it scrolls beyond)
ROW_PIXELS = 35  # st.dataframe's row height
LAST_BAR = st.column_config.TextColumn(
    "Last bar (UTC)", help="1d: the session's date; 1h, 15m: the bar's start"
)


def registered_symbols() -> list[str]:
    """The watchlist's symbols (TT_WATCHLIST, TT_WATCHLIST_LIMIT): the symbol partitions Dagster's
    watchlist_sensor keeps registered; [] when the watchlist cannot be read."""
    path = config.watchlist_path()
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        modified = None
    return _watchlist(str(path), modified, config.settings().tt_watchlist_limit)


@st.cache_data(show_spinner=False, max_entries=8)
def _watchlist(path: str, modified: int | None, limit: int | None) -> list[str]:
    """The symbols of the watchlist file `path` (as it was at `modified`)."""
    from tt_resources.watchlist import WatchlistError, load_watchlist

    try:
        return load_watchlist(path, limit=limit).symbols
    except WatchlistError as exc:
        LOG.warning("data freshness lists stored partitions only: %s", exc)
        return []


def one_line(exc: BaseException, url: str) -> str:
    """First line of an error, with the database password (if any) masked."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = make_url(url).password
    return text.replace(str(password), "***") if password else text


def metric_column(metric: Metric) -> st.column_config.NumberColumn:
    if metric.kind == "percent":
        return percent_column(metric.label)
    return st.column_config.NumberColumn(metric.label, format="%.2f")


def metric_columns(columns) -> dict:
    """Streamlit column configs that label and format tt_eval metric columns (data stays unrounded)."""
    return {m.name: metric_column(m) for m in (*METRICS, *SIGNIFICANCE) if m.name in columns} | {
        "policy": st.column_config.TextColumn("Policy")
    }


def show_table(frame: pd.DataFrame, column_config: dict, where=st, **options) -> None:
    """`frame` as a table in `where` (the page or a column), without its index and with `n/a` in empty cells."""
    where.dataframe(frame, hide_index=True, placeholder=NA, column_config=column_config, **options)


def with_policy_labels(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(policy=frame["policy"].map(charts.policy_label))


# ---------------------------------------------------------------- picking what to show


def model_label(row) -> str:
    """Picker label, e.g. '1d · 2026-11-29 21:40 · dataset 3f9e2a1b · model 8c1d2e4f'; a production model
    (trained on the whole history: nothing of it is out of sample) names the walk-forward model it follows."""
    when = f"{row.created_at:%Y-%m-%d %H:%M}" if pd.notna(row.created_at) else "not registered"
    dataset = f" · dataset {row.dataset_version[:SHORT_ID]}" if isinstance(row.dataset_version, str) else ""
    if isinstance(row.production_of, str):
        status = f" · production model of {row.production_of[:SHORT_ID]}, whole history, no test"
    else:
        status = "" if pd.notna(row.evaluated_at) else " · not evaluated"
    return f"{row.timeframe} · {when}{dataset} · model {row.model_id[:SHORT_ID]}{status}"


def episode_labels(episodes: pd.DataFrame) -> dict[str, str]:
    """Picker label per episode_id: 'fold 1 test · seed 0 · PPO agent', 'train ep 3 · fold 0 · seed 1 ·
    PPO agent' (training episodes numbered per fold's model in start order), with a status icon."""
    train = episodes[episodes["split"] != "test"].sort_values("started_at", kind="stable")
    number = train.groupby([train["fold"].fillna(-1), train["seed"].fillna(-1)]).cumcount() + 1
    labels = {}
    for row in episodes.itertuples():
        fold = row.window if pd.notna(row.window) else row.fold
        where = f"fold {int(fold)}" if pd.notna(fold) else ""
        seed = f"seed {int(row.seed)}" if pd.notna(row.seed) else ""
        if row.split == "test":
            parts = [f"{where} test".strip(), seed]
        else:
            parts = [f"{row.split} ep {number.get(row.Index, 1)}", where, seed]
        text = " · ".join(p for p in [*parts, charts.policy_label(row.policy)] if p)
        labels[row.episode_id] = f"{STATUS_ICONS.get(row.status, '')} {text} ({row.steps} bars)".strip()
    return labels


def requested_model(catalog: pd.DataFrame) -> None:
    """Preselect the model named by `?model=` (and its timeframe) on a session's first run."""
    wanted = st.query_params.get("model")
    if wanted is None or "model" in st.session_state:
        return
    match = catalog[catalog["model_id"] == wanted]
    if match.empty:
        st.warning(f"Model {wanted} (from the link) is not in this database; showing the latest model.")
        return
    st.session_state["timeframe"] = match["timeframe"].iloc[0]
    st.session_state["model"] = wanted


def pick(data: Reports, catalog: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, str, dict]:
    """Pickers above the report; defaults follow the catalog order (latest evaluation first).

    Returns (the model's catalog row, its episodes, its tt_eval rows, the chosen episode id or OUT_OF_SAMPLE,
    episode labels)."""
    requested_model(catalog)
    left, middle, right = st.columns([1, 4, 4])
    timeframes = list(dict.fromkeys(catalog["timeframe"]))
    timeframe = left.selectbox("Timeframe", timeframes, key="timeframe")
    candidates = catalog[catalog["timeframe"] == timeframe].set_index("model_id", drop=False)
    labels = {r.model_id: model_label(r) for r in candidates.itertuples()}
    model_id = middle.selectbox("Model", list(labels), format_func=labels.get, key="model")
    st.query_params["model"] = model_id
    episodes = data.model_episodes(model_id)
    metrics = data.eval_metrics(model_id)
    ordered = episodes.assign(
        _live=episodes["status"] != "running", _policy=episodes["policy"].map(policy_rank)
    ).sort_values(
        ["_live", "split", "window", "fold", "_policy", "seed", "started_at"],
        ascending=[True, True, True, True, True, True, False],
        kind="stable",
    )
    options = ([OUT_OF_SAMPLE] if not metrics.empty else []) + ordered["episode_id"].tolist()
    names = {OUT_OF_SAMPLE: "Out-of-sample: all walk-forward folds"} | episode_labels(episodes)
    choice = right.selectbox("Episode", options, format_func=names.get, key="episode")
    return candidates.loc[model_id], episodes, metrics, choice, names


def nothing_to_show(model: pd.Series) -> str:
    """Why a model without evaluation and episodes shows nothing here, and where to look instead."""
    if isinstance(model["production_of"], str):
        return (
            f"Production model {model['model_id'][:SHORT_ID]}: trained on the whole history after walk-forward "
            f"model {model['production_of'][:SHORT_ID]}, so none of its bars is out of sample; that model's "
            "evaluation is its evidence (pick it above), and the Live tab shows it trading once promoted."
        )
    return (
        f"Model {model['model_id'][:SHORT_ID]} has no evaluation and no logged episode yet "
        "(`tt train` evaluates; `--log-training` logs its training episodes)."
    )


def dagster_links(model: pd.Series) -> None:
    """Links to the model's Dagster run (when a Dagster run trained it) and the ppo_model asset
    (TT_DAGSTER_URL)."""
    base = config.dagster_url()
    links = [f"[ppo_model asset]({base}/assets/ppo_model)"]
    run_id = model["run_id"]
    if dagster_run_exists(run_id):
        links.insert(0, f"[run {run_id[:SHORT_ID]}]({base}/runs/{run_id})")
    elif isinstance(run_id, str):
        links.insert(0, f"trained in process (`{run_id}`, no Dagster run)")
    st.caption(f"Model `{model['model_id']}` in Dagster: " + " · ".join(links))


# ---------------------------------------------------------------- panels


def kpis(numbers: dict[str, float], initial: float, benchmark: float | None = None) -> None:
    """Headline numbers (series.headline's keys) with the change from `initial` and, given the equal-weight
    total return `benchmark`, the edge over it; each delta's arrow follows its sign."""
    change = numbers["net_worth"] - initial
    cols = st.columns(5)
    cols[0].metric(
        "Net worth",
        usd(numbers["net_worth"]),
        f"{usd(change, signed=True)} from {usd(initial)}",
        delta_arrow="auto" if change else "off",
    )
    if benchmark is None:
        cols[1].metric("Total return", percent(numbers["total_return"]))
    else:
        edge = numbers["total_return"] - benchmark
        cols[1].metric(
            "Total return",
            percent(numbers["total_return"]),
            f"{percent(edge, signed=True)} vs equal weight",
            delta_arrow="auto" if edge else "off",
        )
    cols[2].metric("Sharpe (ann.)", ratio(numbers["sharpe"]))
    cols[3].metric("Max drawdown", percent(numbers["max_drawdown"]))
    cols[4].metric("Costs paid", usd(numbers["costs"]))


def spread_caption(seeds: pd.DataFrame, summary: pd.Series) -> str:
    """The spread behind a seed ensemble: per-seed stitched rows `seeds` and the summary row."""
    low, high = seeds.loc[seeds["total_return"].idxmin()], seeds.loc[seeds["total_return"].idxmax()]
    return (
        f"{charts.policy_label(summary['policy'])}: the ensemble of {len(seeds)} seeds (mean return per bar); "
        f"its Sharpe 95% interval over time {ratio(summary['sharpe_ci_low'])} to "
        f"{ratio(summary['sharpe_ci_high'])}. Seed range: total return {percent(low['total_return'])} "
        f"(seed {int(low['seed'])}) to {percent(high['total_return'])} (seed {int(high['seed'])}); "
        f"Sharpe {ratio(seeds['sharpe'].min())} to {ratio(seeds['sharpe'].max())}."
    )


def plot(figure, key: str, timeframe: str, where=st) -> None:
    """`figure` in `where` (the page or a column), its bar times under the cursor as formats.hover_time_format
    (session dates for daily bars)."""
    figure.update_xaxes(hoverformat=hover_time_format(timeframe))
    where.plotly_chart(figure, key=key)


def performance(
    curves: dict[str, pd.DataFrame],
    split_ts,
    windows: pd.DataFrame,
    timeframe: str,
    training: list[pd.DataFrame] = (),
) -> None:
    """Equity (with the train/test boundary and the agent's `training` episodes), drawdown and rolling
    Sharpe charts."""
    plot(charts.equity_figure(curves, split_ts, windows, training), "equity", timeframe)
    left, right = st.columns(2)
    plot(charts.drawdown_figure(curves), "drawdown", timeframe, left)
    bars_per_year = get_timeframe(timeframe).bars_per_year
    steps = max(int(c["n"].sum()) for c in curves.values())
    window = max(5, min(bars_per_year // 4, steps // 4))
    plot(charts.sharpe_figure(curves, window, bars_per_year), "sharpe", timeframe, right)


def risk_table(metrics: pd.DataFrame) -> None:
    """The evaluation's tt_eval rows: per policy stitched over the test windows and averaged over the seeds
    (fold -1, seed -1) with the significance columns, then every test window's rows."""
    columns = ["policy", *METRIC_NAMES, *(m.name for m in SIGNIFICANCE)]
    summary = in_policy_order(metrics[(metrics["fold"] == -1) & (metrics["seed"] == -1)])
    st.subheader("Risk metrics: all test windows stitched")
    show_table(with_policy_labels(summary[columns]).reset_index(drop=True), metric_columns(columns))
    seeds = sorted(metrics.loc[metrics["seed"] >= 0, "seed"].unique())
    trials = metrics.loc[metrics["policy"] == AGENT, "n_trials"].dropna()
    st.caption(
        f"{charts.policy_label(AGENT)}: the ensemble of {len(seeds) or 1} seed(s) (mean return per bar); Sharpe "
        "interval = 95% sampling interval over time (Lo/Mertens); PSR vs cash = probability that the true Sharpe "
        "ratio is above 0; vs best baseline = of the excess returns over the best baseline (chosen by Sharpe "
        "ratio on each fold's training span) levered to the agent's volatility; DSR = the PSR deflated for the "
        f"{int(trials.iloc[0]) if len(trials) else 1} configuration(s) tried on overlapping data."
    )
    window_table(metrics[metrics["fold"] >= 0], "Risk metrics per test window")


def window_table(rows: pd.DataFrame, title: str) -> None:
    """tt_eval rows of single test windows: fold, seed (agent rows; blank for baselines), window, metrics."""
    columns = ["fold", "seed", "test_start", "test_end", "policy", *METRIC_NAMES]
    st.subheader(title)
    if rows.empty:
        st.info("This episode is not part of an evaluation: no risk metrics were computed for it.")
        return
    rows = in_policy_order(rows.sort_values("seed", kind="stable"), "fold")
    shown = with_policy_labels(rows[columns]).assign(seed=rows["seed"].where(rows["seed"] >= 0))
    show_table(
        shown.reset_index(drop=True),
        metric_columns(columns)
        | {
            "fold": st.column_config.NumberColumn("Fold"),
            "seed": st.column_config.NumberColumn("Seed"),
            "test_start": st.column_config.DatetimeColumn("Test from", format="YYYY-MM-DD"),
            "test_end": st.column_config.DatetimeColumn("Test to", format="YYYY-MM-DD"),
        },
    )


def holdings_panel(
    data: Reports, agent: pd.DataFrame, stride: int, episode_ids: list[str], timeframe: str
) -> None:
    """Stacked weights of the top holdings, per-symbol P&L attribution, turnover and costs over time.

    `agent` is the agent's bucketed curve read with `stride` steps per bucket."""
    attribution = data.symbol_attribution(episode_ids)
    if attribution.empty:
        st.info("No holdings were logged for this selection.")
        return
    top = attribution.nlargest(TOP_HOLDINGS, "mean_weight")["symbol"].tolist()
    coarse = stride * bucket_stride(
        len(agent), MAX_BUCKETS
    )  # a multiple of stride: buckets start on agent rows
    weights = data.weight_buckets(episode_ids, top, coarse).merge(
        agent[["episode_id", "step", "ts"]], on=["episode_id", "step"]
    )
    plot(charts.weights_figure(weights), "weights", timeframe)
    left, right = st.columns(2)
    left.plotly_chart(charts.attribution_figure(attribution), key="attribution")  # x: symbols
    plot(charts.turnover_costs_figure(rebucket(agent, MAX_BUCKETS)), "turnover", timeframe, right)


def trades_panel(data: Reports, episode_ids: list[str], timeframe: str, names: dict[str, str]) -> None:
    """Largest trades, holding periods and costs per symbol (money in dollars)."""
    trades = data.largest_trades(episode_ids, limit=15)
    st.subheader("Largest trades")
    columns = [
        "ts",
        "symbol",
        "side",
        "trade_value",
        "price",
        "quantity",
        "weight",
        "cost",
        "episode",
        "step",
    ]
    bar_label, bar_format = bar_time_format(timeframe)
    show_table(
        trades.assign(
            side=np.where(trades["trade_value"] > 0, "buy", "sell"),
            episode=trades["episode_id"].map(names),
        )[columns],
        {
            "ts": st.column_config.DatetimeColumn(bar_label, format=bar_format),
            "symbol": "Symbol",
            "side": "Side",
            "trade_value": st.column_config.NumberColumn("Traded value", format=DOLLARS),
            "price": st.column_config.NumberColumn("Price", format=DOLLARS),
            "quantity": st.column_config.NumberColumn("Shares after", format="%.1f"),
            "weight": percent_column("Weight after"),
            "cost": st.column_config.NumberColumn("Cost", format=DOLLARS),
            "episode": "Episode",
            "step": st.column_config.NumberColumn("Bar #"),
        },
    )
    left, right = st.columns(2)
    left.subheader("Holding periods")
    show_table(
        holding_summary(data.holding_periods(episode_ids)),
        {
            "symbol": "Symbol",
            "positions": "Positions",
            "mean_bars": st.column_config.NumberColumn(f"Mean ({timeframe} bars)", format="%.1f"),
            "median_bars": st.column_config.NumberColumn(f"Median ({timeframe} bars)", format="%.1f"),
            "max_bars": st.column_config.NumberColumn(f"Longest ({timeframe} bars)"),
        },
        left,
    )
    attribution = data.symbol_attribution(episode_ids)
    right.subheader("Costs by symbol")
    show_table(
        attribution.assign(
            cost_bps=attribution["costs"] / attribution["traded"].where(attribution["traded"] > 0) * 1e4
        )[["symbol", "trades", "traded", "costs", "cost_bps"]],
        {
            "symbol": "Symbol",
            "trades": "Trades",
            "traded": st.column_config.NumberColumn("Traded value", format=DOLLARS),
            "costs": st.column_config.NumberColumn("Costs", format=DOLLARS),
            "cost_bps": st.column_config.NumberColumn("Cost (bps of traded)", format="%.1f"),
        },
        right,
    )


def freshness_panel(data: Reports) -> None:
    """Per timeframe: partitions fresh/stale/without data/failed, last bar, coverage; then every partition
    (the watchlist's symbols x timeframes, in watchlist order, and any other stored one)."""
    env = config.settings()
    # the market's present, as ingest and the partition checks take it (the synthetic market's is pinned);
    # in the cache key: staleness moves with the clock, and new bars show within a minute
    now = market_now(env.tt_source, env.tt_synthetic_end).floor("min")
    partitions = data.partition_freshness(registered_symbols(), now)
    if partitions.empty:
        st.info("No market data stored yet and no watchlist to list its partitions.")
        return
    if env.tt_source == "synthetic" and env.tt_synthetic_end != "now":
        st.caption(
            f"Fresh or stale as of {now:%Y-%m-%d %H:%M} UTC: the synthetic market's clock (TT_SYNTHETIC_END), "
            "the present that ingest takes for it."
        )
    coverage = {
        "min_coverage": percent_column("Min coverage"),
        "mean_coverage": percent_column("Mean coverage"),
        "coverage": percent_column("Coverage"),
        "last_bar": LAST_BAR,
        "last_ts": LAST_BAR,
        "n_bars": st.column_config.NumberColumn("Bars"),
        "timeframe": "Timeframe",
        "partitions": "Partitions",
        "fresh": "Fresh",
        "stale": "Stale",
        "no data": "No data",
        "failed": "Failed",
    }
    summary = reports.freshness_summary(partitions)
    show_table(summary.assign(last_bar=bar_times(summary["last_bar"], summary["timeframe"])), coverage)
    st.subheader("Partitions")
    show_table(
        partitions.assign(last_ts=bar_times(partitions["last_ts"], partitions["timeframe"]))[
            ["symbol", "timeframe", "status", "last_ts", "n_bars", "coverage", "outcome", "message"]
        ],
        coverage
        | {
            "symbol": "Symbol",
            "status": "Status",
            "outcome": "Last fetch",
            "message": "Message",
        },
        height=ROW_PIXELS * (min(len(partitions), PARTITION_ROWS) + 1) + 3,  # header + rows + border
    )


# ---------------------------------------------------------------- views


def first_seed(metrics: pd.DataFrame) -> int:
    """The agent's first seed in the evaluation's rows (-1 when they carry none)."""
    seeds = metrics.loc[metrics["seed"] >= 0, "seed"]
    return int(seeds.min()) if len(seeds) else -1


def episode_fold(row: pd.Series):
    """The walk-forward fold an episode belongs to: a test episode's window, a training episode's fold model's
    fold (NA outside a walk-forward)."""
    return row["window"] if row["split"] == "test" else row["fold"]


def fold_boundary(metrics: pd.DataFrame, fold, default: pd.Timestamp | None) -> pd.Timestamp | None:
    """The train/test boundary of walk-forward fold `fold`: the first bar of its test window (tt_eval's
    test_start); `default` (the model's own split) when the evaluation has no such fold."""
    starts = metrics.loc[metrics["fold"] == fold, "test_start"] if pd.notna(fold) else ()
    return starts.min() if len(starts) else default


def curves_for(buckets: pd.DataFrame, chosen: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Stitched curve per policy (terms.POLICY_NAMES order) from the `chosen` episodes (policy, episode_id,
    initial_net_worth), listed in window order."""
    curves = {}
    for policy in sorted(chosen["policy"].unique(), key=lambda p: (policy_rank(p), p)):
        rows = chosen[chosen["policy"] == policy]
        curve = stitch(buckets, rows["episode_id"].tolist(), rows["initial_net_worth"].tolist())
        if not curve.empty:
            curves[policy] = curve
    return curves


def results(
    data: Reports,
    chosen: pd.DataFrame,
    focus: str,
    windows: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
    names: dict[str, str],
    risk,
    training: pd.DataFrame | None = None,
    evaluated: pd.DataFrame | None = None,
) -> None:
    """The report on the `chosen` episodes (policy, episode_id, steps, initial_net_worth) and the agent's
    `training` episodes (drawn before the boundary): KPIs of the policy in `focus` (from tt_eval's stitched
    rows `evaluated` when given, else from its curve), then one tab per section, the holdings and trades
    those of `focus`'s episodes. All tabs are sent with the page so that switching tabs needs no server round
    trip (`risk()` draws the Performance tab's risk tables). Sending only the open tab halves the first
    page's charts but costs every switch a server rerun, several times a switch's time here
    (bench/dashboard.py; bench/results/dashboard.json)."""
    training = training if training is not None else chosen.iloc[0:0]
    longest = int(chosen.groupby("policy")["steps"].sum().max())
    stride = bucket_stride(longest, LINE_BUCKETS)
    ids = [*chosen["episode_id"], *training["episode_id"]]
    buckets = data.portfolio_buckets(ids, stride)
    curves = curves_for(buckets, chosen)
    if focus not in curves:
        st.info("No steps have been logged for this selection yet.")
        return
    focused = chosen[chosen["policy"] == focus]
    initial = float(focused["initial_net_worth"].iloc[0])
    bars_per_year = get_timeframe(timeframe).bars_per_year
    if evaluated is not None:
        numbers = evaluated_headline(evaluated, focus, initial)
        compared = focus != EQUAL_WEIGHT and (evaluated["policy"] == EQUAL_WEIGHT).any()
        benchmark = evaluated_headline(evaluated, EQUAL_WEIGHT, initial)["total_return"] if compared else None
    else:
        numbers = headline(curves[focus], initial, bars_per_year)
        benchmark = None
        if focus != EQUAL_WEIGHT and EQUAL_WEIGHT in curves:
            start = float(chosen.loc[chosen["policy"] == EQUAL_WEIGHT, "initial_net_worth"].iloc[0])
            benchmark = headline(curves[EQUAL_WEIGHT], start, bars_per_year)["total_return"]
    kpis(numbers, initial, benchmark)
    verdicts = evaluated["verdict"].dropna() if evaluated is not None and "verdict" in evaluated else []
    if len(verdicts):
        st.markdown(f"**{verdicts.iloc[0]}**")
    if evaluated is not None and len(seeds := seed_spread(evaluated, focus)) > 1:
        summary = evaluated[(evaluated["policy"] == focus) & (evaluated["seed"] == -1)].iloc[0]
        st.caption(spread_caption(seeds, summary))
    tabs = dict(zip(SECTIONS, st.tabs(SECTIONS), strict=True))
    with tabs["Performance"]:  # drawn first: the default view shows while the other tabs are computed
        trained = [stitch(buckets, [r.episode_id], [r.initial_net_worth]) for r in training.itertuples()]
        performance(curves, split_ts, windows, timeframe, [c for c in trained if not c.empty])
        risk()
    focus_ids = focused["episode_id"].tolist()
    with tabs["Holdings & attribution"]:
        holdings_panel(data, curves[focus], stride, focus_ids, timeframe)
    with tabs["Trades"]:
        trades_panel(data, focus_ids, timeframe, names)
    with tabs["Tear sheet"]:
        tearsheet.panel(data, chosen, focus, timeframe, names)
    with tabs["Data freshness"]:
        freshness_panel(data)


def evaluation_view(
    data: Reports,
    episodes: pd.DataFrame,
    metrics: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
    names: dict[str, str],
):
    """The agent against the baselines on every walk-forward fold, stitched. KPIs are the evaluation's (the
    agent's seed ensemble, with the seeds' range); curves, holdings and trades are the first seed's, with
    its training episodes of the first fold before that fold's train/test boundary (later folds train on
    earlier folds' test windows: their training episodes would overlap the out-of-sample period)."""
    seed = first_seed(metrics)
    refs = metrics.loc[
        (metrics["fold"] >= 0) & metrics["episode_id"].notna() & metrics["seed"].isin([-1, seed]),
        ["policy", "fold", "episode_id"],
    ]
    chosen = refs.merge(episodes[["episode_id", "steps", "initial_net_worth"]], on="episode_id").sort_values(
        "fold", kind="stable"
    )
    folds = metrics.loc[metrics["fold"] >= 0, ["fold", "test_start", "test_end"]].drop_duplicates("fold")
    first_fold = folds["fold"].min() if len(folds) else None
    boundary = fold_boundary(metrics, first_fold, split_ts)
    training = episodes[
        (episodes["split"] == "train")
        & (episodes["status"] == "finished")
        & (episodes["seed"].isna() | (episodes["seed"] == seed))
        & (episodes["fold"].isna() | (episodes["fold"] == first_fold))
    ].sort_values("start_ts")
    first, last = metrics["test_start"].min(), metrics["test_end"].max()
    shown = f"; curves, holdings and trades of seed {seed}" if seed >= 0 else ""
    st.caption(
        f"Out-of-sample: {len(folds)} walk-forward folds, {first:%Y-%m-%d} → {last:%Y-%m-%d}{shown}; "
        f"{len(training)} training episode(s) of fold {first_fold} drawn dotted; "
        f"evaluated {metrics['created_at'].max():%Y-%m-%d %H:%M} UTC"
    )
    stitched = metrics[metrics["fold"] == -1]
    summarised = ((stitched["policy"] == AGENT) & (stitched["seed"] == -1)).any()
    results(
        data,
        chosen,
        AGENT,
        folds,
        boundary,
        timeframe,
        names,
        lambda: risk_table(metrics),
        training,
        evaluated=stitched if summarised else None,  # else the KPIs of the curves shown
    )


def episode_view(
    data: Reports,
    row: pd.Series,
    episodes: pd.DataFrame,
    metrics: pd.DataFrame,
    split_ts: pd.Timestamp | None,
    timeframe: str,
    names: dict[str, str],
):
    """One episode, with its fold's train/test boundary; a test window's episode is compared with the other
    policies of the same window (a baseline's with the agent's first seed), and that window's risk metrics are
    shown (the agent's row of this seed, the baselines')."""
    chosen = pd.DataFrame([row])
    fold_metrics = metrics.iloc[0:0]
    if row["split"] == "test" and pd.notna(row["window"]):
        seed = row["seed"] if pd.notna(row["seed"]) else first_seed(metrics)
        fold_metrics = metrics[(metrics["fold"] == row["window"]) & metrics["seed"].isin([-1, seed])]
        others = fold_metrics.loc[
            (fold_metrics["policy"] != row["policy"]) & fold_metrics["episode_id"].notna(),
            ["policy", "episode_id"],
        ]
        others = others.merge(episodes[["episode_id", "steps", "initial_net_worth"]], on="episode_id")
        chosen = pd.concat([chosen, others], ignore_index=True)
    folds = fold_metrics[["fold", "test_start", "test_end"]].drop_duplicates("fold")
    boundary = fold_boundary(metrics, episode_fold(row), split_ts)
    title = f"Risk metrics: test window {int(row['window'])}" if not fold_metrics.empty else "Risk metrics"
    results(
        data,
        chosen,
        row["policy"],
        folds,
        boundary,
        timeframe,
        names,
        lambda: window_table(fold_metrics, title),
    )


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
    kpis(headline(curve, initial, bars_per_year), initial)
    performance({row["policy"]: curve}, split_ts, pd.DataFrame(), timeframe)


def empty_page(data: Reports, url: str) -> None:
    """What a fresh installation shows: how to get results, and the market data already stored (if any)."""
    st.info(
        f"**No trained models or evaluations yet** in the {describe(url)}.\n\n"
        "Run `make demo` to fetch market data, train a PPO agent and evaluate it against the baselines, "
        "then reload this page."
    )
    st.subheader("Data freshness")
    freshness_panel(data)


def page(url: str) -> None:
    st.title("TensorTrade P&L")
    st.caption(f"Database: {describe(url)} · money in US dollars")
    data = Reports(url)
    research, trading = st.tabs(["Research", "Live"])
    with research:  # drawn first: the default view shows while the Live tab is computed
        research_page(data, url)
    with trading:
        live.panel(data, config.settings().tt_trading_max_tracking_error)


def research_page(data: Reports, url: str) -> None:
    """The models, their evaluations and episodes (the Research tab)."""
    catalog = data.model_catalog()
    if catalog.empty:
        empty_page(data, url)
        return
    model, episodes, metrics, choice, names = pick(data, catalog)
    dagster_links(model)
    if choice is None:  # neither an evaluation nor a logged episode
        st.info(nothing_to_show(model))
        return
    summary = data.model_summary(model["model_id"])
    split_ts = summary.get("split_ts") or summary.get("train_end")  # first held-out bar, else end of training
    timeframe = model["timeframe"]
    running = episodes[episodes["status"] == "running"]
    if not running.empty and choice not in set(running["episode_id"]):
        st.info(
            f"{len(running)} episode(s) of this model are being logged: pick one under Episode to watch it live."
        )
    if choice == OUT_OF_SAMPLE:
        evaluation_view(data, episodes, metrics, split_ts, timeframe, names)
        return
    row = episodes.set_index("episode_id").loc[choice].copy()
    row["episode_id"] = choice
    st.caption(f"Episode {names[choice]} · {row['status']} · id {choice}")
    if row["status"] == "running":
        live_view(data.engine, row, fold_boundary(metrics, episode_fold(row), split_ts), timeframe)
    else:
        episode_view(data, row, episodes, metrics, split_ts, timeframe, names)


def main() -> None:
    st.set_page_config(page_title="TensorTrade P&L", page_icon="📈", layout="wide")
    url = config.database_url()
    try:
        page(url)
    except DatabaseConnectionError as exc:
        st.error(f"{exc}. Check DATABASE_URL, or unset it to use the embedded SQLite database.")
    except Exception as exc:  # one line on the page, the traceback in the server log
        LOG.exception("dashboard failed")
        st.error(f"The dashboard could not render this page: {one_line(exc, url)}")


main()
