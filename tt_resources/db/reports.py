"""Read-only queries for the P&L dashboard and `tt show` (SQLAlchemy Core, bound parameters only).

Every function returns a pandas DataFrame (or a plain dict) with tz-aware UTC timestamps. Step-level readers take
`after_step` so a live view can fetch only the rows logged since its last read.

A report's first parameter after the engine says what it reads, and so which token changes when its answer
could (tt_dashboard.cache keys its caches on them): `model_id` -> model_token (that model's rows only),
`episode_ids` / `episode_id` -> episodes_token (those episodes' rows only), anything else -> change_token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tt_resources.db.bulk import read_frame
from tt_resources.db.schema import (
    datasets,
    episodes,
    evals,
    fetch_log,
    holdings,
    models,
    portfolio,
    prices,
)
from tt_resources.db.schema import fills as trading_fills
from tt_resources.db.schema import live_performance as live_performance_table
from tt_resources.db.schema import orders as trading_orders_table
from tt_resources.db.schema import positions as trading_positions
from tt_resources.db.schema import promotions as trading_promotions
from tt_resources.db.schema import targets as trading_targets
from tt_resources.db.trading import NET_LIQUIDATION as NET_LIQUIDATION_ROW
from tt_resources.terms import METRIC_NAMES, SIGNIFICANCE_NAMES
from tt_resources.timeframes import TIMEFRAME_NAMES

BUCKET_COLUMNS: tuple[str, ...] = (
    "episode_id",
    "step",
    "last_step",
    "ts",
    "end_ts",
    "low",
    "high",
    "close",
    "r_sum",
    "r_sq",
    "n",
    "turnover",
    "costs",
)
"""Columns of portfolio_buckets, in order."""

OK_OUTCOMES: tuple[str, ...] = ("ok", "no_data")
"""tt_fetch_log outcomes that leave a partition healthy (no_data ends a backward walk at the head)."""


class ChangeToken(NamedTuple):
    """Cheap values that change whenever a database-wide report could (see change_token)."""

    models: tuple
    """Newest evaluation row, models registered (count, newest), episodes (count, running): model_catalog."""
    market: tuple
    """Newest tt_fetch_log row (every fetch, with or without bars, writes one): partition_freshness."""


def change_token(engine: sa.Engine) -> ChangeToken:
    """The database-wide change token (one query over primary keys and indexed columns)."""
    stmt = sa.select(
        sa.select(sa.func.max(evals.c.eval_id)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(models).scalar_subquery(),
        sa.select(sa.func.max(models.c.created_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(episodes).scalar_subquery(),
        sa.select(sa.func.count())
        .select_from(episodes)
        .where(episodes.c.status == "running")
        .scalar_subquery(),
        sa.select(sa.func.max(fetch_log.c.id)).scalar_subquery(),
    )
    with engine.connect() as conn:
        *model_part, newest_fetch = conn.execute(stmt).one()
    return ChangeToken(models=tuple(model_part), market=(newest_fetch,))


def _episode_state(where: sa.ColumnElement[bool]) -> sa.Select:
    """Count, steps logged and running count of the episodes matching `where`."""
    return sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(episodes.c.steps), 0),
        sa.func.coalesce(sa.func.sum(sa.case((episodes.c.status == "running", 1), else_=0)), 0),
    ).where(where)


def _own_episodes(model_id: str) -> sa.ColumnElement[bool]:
    """Episodes played by the model or by its walk-forward folds' models."""
    folds = sa.select(models.c.model_id).where(models.c.group_id == model_id)
    return sa.or_(episodes.c.model_id == model_id, episodes.c.model_id.in_(folds))


def model_token(engine: sa.Engine, model_id: str) -> tuple:
    """A value that changes whenever a report on model `model_id` could (model_summary, eval_metrics,
    model_episodes): its registration, its newest tt_eval row, the count, steps and running count of its own
    and its folds' models' episodes. Rows of other models leave it unchanged (one indexed query)."""
    state = _episode_state(_own_episodes(model_id)).subquery("state")
    stmt = sa.select(
        sa.select(models.c.created_at).where(models.c.model_id == model_id).scalar_subquery(),
        sa.select(sa.func.max(evals.c.eval_id)).where(evals.c.model_id == model_id).scalar_subquery(),
        *state.c,
    )
    with engine.connect() as conn:
        return tuple(conn.execute(stmt).one())


def episodes_token(engine: sa.Engine, episode_ids: Sequence[str]) -> tuple:
    """A value that changes whenever a report on these episodes could (their steps, holdings and trades):
    their count, steps logged and running count. A finished episode never changes (one primary-key query)."""
    with engine.connect() as conn:
        return tuple(conn.execute(_episode_state(episodes.c.episode_id.in_(list(episode_ids)))).one())


def model_catalog(engine: sa.Engine) -> pd.DataFrame:
    """Walk-forward models (not their folds' models) and unregistered models that have episodes or
    evaluations, newest activity first.

    Columns: model_id, timeframe, created_at (NaT when the model is not registered yet), dataset_version and
    run_id (None when unregistered), production_of (the walk-forward model a production model was trained
    after, else None), evaluated_at (latest tt_eval row, NaT when none), last_episode_at (latest episode
    start), running (episodes with status running).
    """
    ids = sa.union(
        sa.select(models.c.model_id, models.c.timeframe).where(models.c.group_id.is_(None)),
        sa.select(evals.c.model_id, evals.c.timeframe),
        sa.select(episodes.c.model_id, episodes.c.timeframe).where(
            episodes.c.model_id.is_not(None),
            episodes.c.model_id.not_in(sa.select(models.c.model_id).where(models.c.group_id.is_not(None))),
        ),
    ).subquery("ids")
    evaluated = (
        sa.select(evals.c.model_id, sa.func.max(evals.c.created_at).label("evaluated_at"))
        .group_by(evals.c.model_id)
        .subquery("evaluated")
    )
    logged = (
        sa.select(
            episodes.c.model_id,
            sa.func.max(episodes.c.started_at).label("last_episode_at"),
            sa.func.sum(sa.case((episodes.c.status == "running", 1), else_=0)).label("running"),
        )
        .group_by(episodes.c.model_id)
        .subquery("logged")
    )
    stmt = sa.select(
        ids.c.model_id,
        ids.c.timeframe,
        models.c.created_at,
        models.c.dataset_version,
        models.c.run_id,
        models.c.production_of,
        evaluated.c.evaluated_at,
        logged.c.last_episode_at,
        sa.func.coalesce(logged.c.running, 0).label("running"),
    ).select_from(
        ids.outerjoin(models, models.c.model_id == ids.c.model_id)
        .outerjoin(evaluated, evaluated.c.model_id == ids.c.model_id)
        .outerjoin(logged, logged.c.model_id == ids.c.model_id)
    )
    frame = read_frame(engine, stmt)
    frame["running"] = frame["running"].astype(int)
    frame["_evaluated"] = frame["evaluated_at"].notna()
    frame["_activity"] = frame[["evaluated_at", "last_episode_at", "created_at"]].max(axis=1)
    frame = frame.sort_values(["_evaluated", "_activity", "model_id"], ascending=[False, False, True])
    return frame.drop(columns=["_evaluated", "_activity"]).reset_index(drop=True)


def model_summary(engine: sa.Engine, model_id: str) -> dict:
    """The tt_model row joined with its dataset's span and train/test boundary (`split_ts`); {} if unregistered."""
    stmt = (
        sa.select(
            models.c.model_id,
            models.c.timeframe,
            models.c.algo,
            models.c.dataset_version,
            models.c.total_timesteps,
            models.c.train_start,
            models.c.train_end,
            models.c.created_at,
            datasets.c.start_ts,
            datasets.c.end_ts,
            datasets.c.split_ts,
            datasets.c.symbols,
        )
        .select_from(models.outerjoin(datasets, datasets.c.dataset_version == models.c.dataset_version))
        .where(models.c.model_id == model_id)
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return dict(row) if row else {}


def eval_metrics(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    """tt_eval rows of a walk-forward model (latest evaluation run only), ordered by fold (-1 = stitched),
    seed (-1 = none, or the seed ensemble) then policy.

    Columns: policy, fold, seed, test_start, test_end, episode_id, created_at, terms.METRIC_NAMES,
    terms.SIGNIFICANCE_NAMES, n_trials, best_baseline and verdict.
    """
    latest_run = (
        sa.select(evals.c.created_at)
        .where(evals.c.model_id == model_id)
        .order_by(evals.c.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        sa.select(
            evals.c.policy,
            evals.c.fold,
            evals.c.seed,
            evals.c.test_start,
            evals.c.test_end,
            evals.c.episode_id,
            evals.c.created_at,
            *(evals.c[name] for name in (*METRIC_NAMES, *SIGNIFICANCE_NAMES)),
            evals.c.n_trials,
            evals.c.best_baseline,
            evals.c.verdict,
        )
        .where(evals.c.model_id == model_id, evals.c.created_at == latest_run)
        .order_by(evals.c.fold, evals.c.seed, evals.c.policy)
    )
    return read_frame(engine, stmt)


def model_episodes(engine: sa.Engine, model_id: str) -> pd.DataFrame:
    """Episodes of a model: its own and its folds' models' (train and test) and the baseline episodes its
    evaluation refers to.

    Columns: episode_id, policy, split, window, status, started_at, finished_at, start_ts, end_ts, steps,
    initial_net_worth, final_net_worth, fold and seed (of the fold's model that played it; NA for baselines
    and models outside a walk-forward); newest first.
    """
    member = models.alias("member")
    referenced = sa.select(evals.c.episode_id).where(
        evals.c.model_id == model_id, evals.c.episode_id.is_not(None)
    )
    stmt = (
        sa.select(
            episodes.c.episode_id,
            episodes.c.policy,
            episodes.c.split,
            episodes.c.window,
            episodes.c.status,
            episodes.c.started_at,
            episodes.c.finished_at,
            episodes.c.start_ts,
            episodes.c.end_ts,
            episodes.c.steps,
            episodes.c.initial_net_worth,
            episodes.c.final_net_worth,
            member.c.fold,
            member.c.seed,
        )
        .select_from(episodes.outerjoin(member, member.c.model_id == episodes.c.model_id))
        .where(sa.or_(_own_episodes(model_id), episodes.c.episode_id.in_(referenced)))
        .order_by(episodes.c.started_at.desc(), episodes.c.episode_id)
    )
    return read_frame(engine, stmt)


def episode_status(engine: sa.Engine, episode_id: str) -> str | None:
    """The episode's status (running | finished | incomplete), None when it does not exist."""
    stmt = sa.select(episodes.c.status).where(episodes.c.episode_id == episode_id)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def portfolio_series(engine: sa.Engine, episode_ids: Sequence[str], after_step: int = -1) -> pd.DataFrame:
    """Per-step portfolio rows of the episodes with step > `after_step`, ordered by episode and step.

    Columns: episode_id, step, ts, net_worth, cash, period_return, drawdown, turnover, costs (account currency,
    fractions of net worth for return/drawdown/turnover).
    """
    stmt = (
        sa.select(
            portfolio.c.episode_id,
            portfolio.c.step,
            portfolio.c.ts,
            portfolio.c.net_worth,
            portfolio.c.cash,
            portfolio.c.period_return,
            portfolio.c.drawdown,
            portfolio.c.turnover,
            portfolio.c.costs,
        )
        .where(
            portfolio.c.episode_id.in_(list(episode_ids)),
            portfolio.c.step > after_step,
        )
        .order_by(portfolio.c.episode_id, portfolio.c.step)
    )
    return read_frame(engine, stmt)


def portfolio_buckets(engine: sa.Engine, episode_ids: Sequence[str], stride: int) -> pd.DataFrame:
    """The episodes' tt_portfolio rows aggregated in the database over buckets of `stride` consecutive steps.

    One row per (episode, bucket), in order: episode_id, step / last_step (first and last step of the bucket),
    ts / end_ts (their bar times), low / high / close (net worth: minimum, maximum, at the last step),
    r_sum / r_sq / n (sum of period returns, of their squares, step count: exact Sharpe ratios over whole
    buckets), turnover (sum), costs (sum). With stride 1 every row is one step; a 100,000-step episode read with
    stride 100 is 1,000 rows.
    """
    stride = max(int(stride), 1)
    ids = list(episode_ids)
    sums = read_frame(
        engine,
        sa.select(
            portfolio.c.episode_id,
            sa.func.min(portfolio.c.step).label("step"),
            sa.func.max(portfolio.c.step).label("last_step"),
            sa.func.min(portfolio.c.net_worth).label("low"),
            sa.func.max(portfolio.c.net_worth).label("high"),
            sa.func.sum(portfolio.c.period_return).label("r_sum"),
            sa.func.sum(portfolio.c.period_return * portfolio.c.period_return).label("r_sq"),
            sa.func.count(portfolio.c.period_return).label("n"),
            sa.func.sum(portfolio.c.turnover).label("turnover"),
            sa.func.sum(portfolio.c.costs).label("costs"),
        )
        .where(portfolio.c.episode_id.in_(ids))
        .group_by(portfolio.c.episode_id, portfolio.c.step // stride),
    )
    last_steps = (
        sa.select(portfolio.c.episode_id, sa.func.max(portfolio.c.step))
        .where(portfolio.c.episode_id.in_(ids))
        .group_by(portfolio.c.episode_id)
    )
    edges = read_frame(  # the first and the last row of every bucket
        engine,
        sa.select(portfolio.c.episode_id, portfolio.c.step, portfolio.c.ts, portfolio.c.net_worth).where(
            portfolio.c.episode_id.in_(ids),
            sa.or_(
                portfolio.c.step % stride == 0,
                (portfolio.c.step + 1) % stride == 0,
                sa.tuple_(portfolio.c.episode_id, portfolio.c.step).in_(last_steps),
            ),
        ),
    )
    firsts = edges[["episode_id", "step", "ts"]]
    lasts = edges.rename(columns={"step": "last_step", "ts": "end_ts", "net_worth": "close"})
    return (
        sums.merge(firsts, on=["episode_id", "step"])
        .merge(lasts, on=["episode_id", "last_step"])
        .sort_values(["episode_id", "step"])
        .reset_index(drop=True)[list(BUCKET_COLUMNS)]
    )


def _steps_logged(episode_ids: list[str]) -> sa.ScalarSelect:
    """Number of tt_portfolio steps of the episodes (tt_holdings only has rows for positions and trades)."""
    return (
        sa.select(sa.func.count()).select_from(portfolio).where(portfolio.c.episode_id.in_(episode_ids))
    ).scalar_subquery()


def symbol_attribution(engine: sa.Engine, episode_ids: Sequence[str]) -> pd.DataFrame:
    """Per-symbol totals over the episodes, largest P&L first.

    Columns: symbol, pnl (mark-to-market, account currency), costs, traded (sum of |trade value|), trades (steps
    with a non-zero trade), mean_weight (average fraction of net worth over all steps, flat steps counting 0).
    """
    ids = list(episode_ids)
    stmt = (
        sa.select(
            holdings.c.symbol,
            sa.func.sum(holdings.c.pnl).label("pnl"),
            sa.func.sum(holdings.c.cost).label("costs"),
            sa.func.sum(sa.func.abs(holdings.c.trade_value)).label("traded"),
            sa.func.sum(sa.case((holdings.c.trade_value != 0, 1), else_=0)).label("trades"),
            (sa.func.sum(holdings.c.weight) / _steps_logged(ids)).label("mean_weight"),
        )
        .where(holdings.c.episode_id.in_(ids))
        .group_by(holdings.c.symbol)
        .order_by(sa.desc("pnl"), holdings.c.symbol)
    )
    return read_frame(engine, stmt)


def weight_buckets(
    engine: sa.Engine, episode_ids: Sequence[str], symbols: Sequence[str], stride: int
) -> pd.DataFrame:
    """Average weights per bucket of `stride` steps: one row per (episode, bucket, symbol) for `symbols`, the
    rest summed as symbol 'other'; steps without a tt_holdings row count as weight 0.

    Columns: episode_id, step (first step of the bucket, a multiple of `stride`), symbol, weight (mean fraction
    of net worth over the bucket's steps).
    """
    stride = max(int(stride), 1)
    ids = list(episode_ids)
    bucket = holdings.c.step // stride
    label = sa.case((holdings.c.symbol.in_(list(symbols)), holdings.c.symbol), else_=sa.literal("other"))
    sums = read_frame(
        engine,
        sa.select(
            holdings.c.episode_id,
            (bucket * stride).label("step"),
            label.label("symbol"),
            sa.func.sum(holdings.c.weight).label("weight"),
        )
        .where(holdings.c.episode_id.in_(ids))
        .group_by(holdings.c.episode_id, bucket, label)
        .order_by(holdings.c.episode_id, sa.text("step")),
    )
    ends = read_frame(
        engine,
        sa.select(portfolio.c.episode_id, sa.func.max(portfolio.c.step).label("end"))
        .where(portfolio.c.episode_id.in_(ids))
        .group_by(portfolio.c.episode_id),
    )
    sums = sums.merge(ends, on="episode_id")
    steps_in_bucket = np.minimum(stride, sums["end"] - sums["step"] + 1).clip(lower=1)
    return sums.assign(weight=sums["weight"] / steps_in_bucket).drop(columns="end")


def largest_trades(engine: sa.Engine, episode_ids: Sequence[str], limit: int = 20) -> pd.DataFrame:
    """The `limit` largest trades by absolute traded value.

    Columns: episode_id, step, ts, symbol, trade_value (signed, + = buy), price, quantity (after the trade),
    weight, cost.
    """
    stmt = (
        sa.select(
            holdings.c.episode_id,
            holdings.c.step,
            portfolio.c.ts,
            holdings.c.symbol,
            holdings.c.trade_value,
            holdings.c.price,
            holdings.c.quantity,
            holdings.c.weight,
            holdings.c.cost,
        )
        .select_from(
            holdings.outerjoin(
                portfolio,
                sa.and_(portfolio.c.episode_id == holdings.c.episode_id, portfolio.c.step == holdings.c.step),
            )
        )
        .where(holdings.c.episode_id.in_(list(episode_ids)), holdings.c.trade_value != 0)
        .order_by(sa.func.abs(holdings.c.trade_value).desc(), holdings.c.step, holdings.c.symbol)
        .limit(limit)
    )
    return read_frame(engine, stmt)


def holding_periods(engine: sa.Engine, episode_ids: Sequence[str]) -> pd.DataFrame:
    """Contiguous runs of steps with a long position (quantity > 0), one row per run.

    A position only opens or closes on a trade, so the window functions run over trade rows alone: the trades
    that flip the held state are the runs' edges; a run still open at the end lasts to the episode's last step.
    Columns: episode_id, symbol, first_step, last_step, steps (length of the run in steps).
    """
    ids = list(episode_ids)
    part = (holdings.c.episode_id, holdings.c.symbol)
    held = sa.case((holdings.c.quantity > 0, 1), else_=0)
    trades = (
        sa.select(
            holdings.c.episode_id,
            holdings.c.symbol,
            holdings.c.step,
            held.label("held"),
            sa.func.lag(held, 1, 0).over(partition_by=part, order_by=holdings.c.step).label("before"),
        )
        .where(holdings.c.episode_id.in_(ids), holdings.c.trade_value != 0)
        .subquery("trades")
    )
    edges = (
        sa.select(
            trades.c.episode_id,
            trades.c.symbol,
            trades.c.step,
            trades.c.held,
            sa.func.lead(trades.c.step)
            .over(partition_by=(trades.c.episode_id, trades.c.symbol), order_by=trades.c.step)
            .label("next_edge"),
        )
        .where(trades.c.held != trades.c.before)
        .subquery("edges")
    )
    last = read_frame(
        engine,
        sa.select(holdings.c.episode_id, sa.func.max(holdings.c.step).label("episode_end"))
        .where(holdings.c.episode_id.in_(ids))
        .group_by(holdings.c.episode_id),
    )
    runs = read_frame(
        engine,
        sa.select(edges.c.episode_id, edges.c.symbol, edges.c.step.label("first_step"), edges.c.next_edge)
        .where(edges.c.held == 1)
        .order_by(edges.c.episode_id, edges.c.symbol, edges.c.step),
    ).merge(last, on="episode_id")
    next_edge = pd.to_numeric(runs["next_edge"])  # float with NaN: a column of NULLs reads as objects
    runs["last_step"] = (next_edge - 1).fillna(runs["episode_end"]).astype(int)
    runs["steps"] = runs["last_step"] - runs["first_step"] + 1
    return runs[["episode_id", "symbol", "first_step", "last_step", "steps"]]


def partition_freshness(
    engine: sa.Engine, registered: Sequence[str] = (), now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Freshness of every partition at `now` (default: the clock): the `registered` symbols (in their order) x
    TIMEFRAME_NAMES, then any other stored or fetched (symbol, timeframe), alphabetically.

    status: `failed` when the partition's latest tt_fetch_log outcome is not in OK_OUTCOMES, else `no data` when
    no bar is stored, else `stale` when its last bar is older than the timeframe's latest closed bar, else
    `fresh`. coverage: stored bars / calendar bars between the first and the last stored bar (as the raw_bars
    asset check counts them), 0..1.
    Columns: symbol, timeframe, first_ts, last_ts, n_bars, coverage, outcome, message, fetched_at, status;
    ordered by timeframe (TIMEFRAME_NAMES order), then symbol as above.
    """
    from tt_resources.calendar import expected_bar_starts, last_closed_bar  # exchange_calendars: slow import

    now = now or pd.Timestamp.now(tz="UTC")
    key = [prices.c.symbol, prices.c.timeframe]
    bars = read_frame(
        engine,
        sa.select(
            *key,
            sa.func.min(prices.c.ts).label("first_ts"),
            sa.func.max(prices.c.ts).label("last_ts"),
            sa.func.count().label("n_bars"),
        ).group_by(*key),
    )
    latest = (
        sa.select(sa.func.max(fetch_log.c.id).label("id"))
        .group_by(fetch_log.c.symbol, fetch_log.c.timeframe)
        .subquery("latest")
    )
    fetches = read_frame(
        engine,
        sa.select(
            fetch_log.c.symbol,
            fetch_log.c.timeframe,
            fetch_log.c.outcome,
            fetch_log.c.message,
            fetch_log.c.requested_at.label("fetched_at"),
        ).select_from(fetch_log.join(latest, latest.c.id == fetch_log.c.id)),
    )
    wanted = pd.DataFrame(
        [(symbol, timeframe) for symbol in dict.fromkeys(registered) for timeframe in TIMEFRAME_NAMES],
        columns=["symbol", "timeframe"],
    )
    frame = wanted.merge(bars.merge(fetches, on=["symbol", "timeframe"], how="outer"), how="outer")
    frame["n_bars"] = frame["n_bars"].fillna(0).astype(int)
    frame["coverage"] = 0.0
    frame["status"] = "fresh"
    for timeframe, rows in frame.groupby("timeframe").groups.items():
        part = frame.loc[rows]
        stored = part["last_ts"].notna()
        closed = last_closed_bar(timeframe, now)
        if stored.any():
            grid = expected_bar_starts(
                timeframe, part["first_ts"].min(), part["last_ts"].max() + pd.Timedelta(1)
            )
            first = grid.searchsorted(pd.DatetimeIndex(part.loc[stored, "first_ts"]), side="left")
            last = grid.searchsorted(pd.DatetimeIndex(part.loc[stored, "last_ts"]), side="right")
            expected = np.maximum(last - first, 1)
            frame.loc[part.index[stored], "coverage"] = np.minimum(part.loc[stored, "n_bars"] / expected, 1.0)
        if closed is not None:
            frame.loc[part.index[stored & (part["last_ts"] < closed)], "status"] = "stale"
        frame.loc[part.index[~stored], "status"] = "no data"
    failed = frame["outcome"].notna() & ~frame["outcome"].isin(OK_OUTCOMES)
    frame.loc[failed, "status"] = "failed"
    order = {s: i for i, s in enumerate(dict.fromkeys([*registered, *sorted(set(frame["symbol"]))]))}
    frame["_tf"] = frame["timeframe"].map({t: i for i, t in enumerate(TIMEFRAME_NAMES)})
    frame["_symbol"] = frame["symbol"].map(order)
    columns = ["symbol", "timeframe", "first_ts", "last_ts", "n_bars", "coverage", "outcome", "message"]
    return frame.sort_values(["_tf", "_symbol"])[[*columns, "fetched_at", "status"]].reset_index(drop=True)


FRESHNESS_STATUSES: tuple[str, ...] = ("fresh", "stale", "no data", "failed")
"""partition_freshness statuses, healthiest first."""


def freshness_summary(partitions: pd.DataFrame) -> pd.DataFrame:
    """Per timeframe (in TIMEFRAME_NAMES order): partitions, fresh, stale, no data, failed, last_bar, min/mean
    coverage (over the partitions with bars)."""
    counts = pd.crosstab(partitions["timeframe"], partitions["status"]).reindex(
        columns=list(FRESHNESS_STATUSES), fill_value=0
    )
    stored = partitions[partitions["n_bars"] > 0]
    stats = partitions.groupby("timeframe").agg(partitions=("symbol", "size"), last_bar=("last_ts", "max"))
    stats = stats.join(
        stored.groupby("timeframe").agg(min_coverage=("coverage", "min"), mean_coverage=("coverage", "mean"))
    )
    order = [t for t in TIMEFRAME_NAMES if t in stats.index]
    return (
        stats.join(counts)
        .loc[order, ["partitions", *FRESHNESS_STATUSES, "last_bar", "min_coverage", "mean_coverage"]]
        .reset_index()
    )


def holding_rows(engine: sa.Engine, episode_ids: Sequence[str]) -> pd.DataFrame:
    """Every tt_holdings row of the episodes (a step and symbol with a position or a trade) with its bar time,
    ordered by episode, step and symbol.

    Columns: episode_id, step, ts, symbol, quantity (shares after the step's trade), price, value (marked at the
    step's close), trade_value (signed, + = buy), cost, weight.
    """
    stmt = (
        sa.select(
            holdings.c.episode_id,
            holdings.c.step,
            portfolio.c.ts,
            holdings.c.symbol,
            holdings.c.quantity,
            holdings.c.price,
            holdings.c.value,
            holdings.c.trade_value,
            holdings.c.cost,
            holdings.c.weight,
        )
        .select_from(
            holdings.join(
                portfolio,
                sa.and_(portfolio.c.episode_id == holdings.c.episode_id, portfolio.c.step == holdings.c.step),
            )
        )
        .where(holdings.c.episode_id.in_(list(episode_ids)))
        .order_by(holdings.c.episode_id, holdings.c.step, holdings.c.symbol)
    )
    return read_frame(engine, stmt)


# --- trading (the Live tab; tt_dashboard.cache keys these on trading_token) ------------------------------


def trading_token(engine: sa.Engine) -> tuple:
    """A value that changes whenever a trading report could: the count and newest time of each trading
    table's rows (tt_promotion, tt_target, tt_order, tt_fill, tt_position, tt_live_performance)."""
    parts = [
        (trading_promotions, trading_promotions.c.at),
        (trading_targets, trading_targets.c.created_at),
        (trading_orders_table, trading_orders_table.c.updated_at),
        (trading_fills, trading_fills.c.recorded_at),
        (trading_positions, trading_positions.c.as_of),
        (live_performance_table, live_performance_table.c.created_at),
    ]
    query = sa.select(
        *(
            sa.select(aggregate).select_from(table).scalar_subquery()
            for table, column in parts
            for aggregate in (sa.func.count(), sa.func.max(column))
        )
    )
    with engine.connect() as conn:
        return tuple(conn.execute(query).one())


def live_performance(engine: sa.Engine, model: str | None = None) -> pd.DataFrame:
    """tt_live_performance rows (of `model`), by session then model: model_id, session, live_return,
    shadow_return, slippage_bps, costs, shadow_costs, missed_fills, tracking_error, live_equity,
    shadow_equity, details, created_at."""
    t = live_performance_table
    query = sa.select(t).order_by(t.c.session, t.c.model_id)
    if model is not None:
        query = query.where(t.c.model_id == model)
    return read_frame(engine, query)


def promotion_history(engine: sa.Engine, timeframe: str = "1d") -> pd.DataFrame:
    """tt_promotion rows of `timeframe`, newest first: at, action, model_id, previous_model_id, forced,
    verdict, reason, who."""
    t = trading_promotions
    query = (
        sa.select(
            t.c.at,
            t.c.action,
            t.c.model_id,
            t.c.previous_model_id,
            t.c.forced,
            t.c.verdict,
            t.c.reason,
            t.c.who,
        )
        .where(t.c.timeframe == timeframe)
        .order_by(t.c.at.desc(), t.c.id.desc())
    )
    return read_frame(engine, query)


def trading_orders(engine: sa.Engine, sessions: int = 20) -> pd.DataFrame:
    """Orders executing in the newest `sessions` sessions with their fills, newest session first: order_ref,
    session, decided_session, model_id, symbol, quantity, state, reference_price, notional, filled,
    avg_fill_price, open (the session's stored 1d open), slippage_bps (fill price vs the open, adverse > 0),
    commission (summed over the fills; NaN while none is reported), messages, limit_checks."""
    o, f = trading_orders_table, trading_fills
    newest = sa.select(o.c.session).distinct().order_by(o.c.session.desc()).limit(sessions).subquery("newest")
    paid = (
        sa.select(f.c.order_ref, sa.func.sum(f.c.commission).label("commission"))
        .group_by(f.c.order_ref)
        .subquery("paid")
    )
    query = (
        sa.select(
            o.c.order_ref,
            o.c.session,
            o.c.decided_session,
            o.c.model_id,
            o.c.symbol,
            o.c.quantity,
            o.c.state,
            o.c.reference_price,
            o.c.notional,
            o.c.filled,
            o.c.avg_fill_price,
            paid.c.commission,
            o.c.messages,
            o.c.limit_checks,
        )
        .select_from(o.outerjoin(paid, paid.c.order_ref == o.c.order_ref))
        .where(o.c.session.in_(sa.select(newest.c.session)))
        .order_by(o.c.session.desc(), o.c.symbol)
    )
    frame = read_frame(engine, query)
    frame["open"] = _session_opens(engine, frame[["symbol", "session"]])
    sign = np.sign(frame["quantity"].astype(float))
    frame["slippage_bps"] = sign * (frame["avg_fill_price"] / frame["open"] - 1.0) * 1e4
    return frame


def _session_opens(engine: sa.Engine, keys: pd.DataFrame) -> pd.Series:
    """The stored 1d open of each (symbol, session) row of `keys` (NaN when none is stored)."""
    from tt_resources.calendar import session_open

    if keys.empty:
        return pd.Series(dtype=float, index=keys.index)
    starts = {day: session_open(day) for day in keys["session"].unique()}
    query = sa.select(prices.c.symbol, prices.c.ts, prices.c.open).where(
        prices.c.timeframe == "1d",
        prices.c.symbol.in_(sorted(keys["symbol"].unique())),
        prices.c.ts.in_([ts.to_pydatetime() for ts in starts.values()]),
    )
    bars = read_frame(engine, query)
    opens = {(row.symbol, pd.Timestamp(row.ts)): row.open for row in bars.itertuples()}
    return pd.Series(
        [opens.get((s, starts[d]), np.nan) for s, d in zip(keys["symbol"], keys["session"], strict=True)],
        index=keys.index,
        dtype=float,
    )


def positions_and_targets(engine: sa.Engine, session=None) -> pd.DataFrame:
    """The reconciled book of `session` (default: the newest) beside the target it traded to (the newest
    target decided before that session, of the model whose target it is): account, session, symbol, shares,
    price, value, weight (value / net liquidation), target (weight; NaN when not the model's), model_id.
    Cash and net liquidation are rows with tt_resources.db.trading's reserved symbols."""
    p, t = trading_positions, trading_targets
    if session is None:
        with engine.connect() as conn:
            session = conn.execute(sa.select(sa.func.max(p.c.session))).scalar()
        if session is None:
            return pd.DataFrame(
                columns=[
                    "account",
                    "session",
                    "symbol",
                    "shares",
                    "price",
                    "value",
                    "weight",
                    "target",
                    "model_id",
                ]
            )
    book = read_frame(engine, sa.select(p).where(p.c.session == session).order_by(p.c.account, p.c.symbol))
    with engine.connect() as conn:
        decided = conn.execute(sa.select(sa.func.max(t.c.session)).where(t.c.session < session)).scalar()
    targets = read_frame(
        engine, sa.select(t.c.symbol, t.c.weight.label("target"), t.c.model_id).where(t.c.session == decided)
    )
    nlv = book.loc[book["symbol"] == NET_LIQUIDATION_ROW].set_index("account")["value"]
    book["weight"] = book["value"] / book["account"].map(nlv)
    merged = book.merge(targets, on="symbol", how="outer")
    merged["session"] = session
    return merged[
        ["account", "session", "symbol", "shares", "price", "value", "weight", "target", "model_id"]
    ]


def limits_hit(engine: sa.Engine, sessions: int = 20) -> pd.DataFrame:
    """Orders a pre-trade limit blocked in the newest `sessions` sessions, newest first: session, symbol,
    quantity, notional, breach (one line per breach)."""
    o = trading_orders_table
    query = (
        sa.select(o.c.session, o.c.symbol, o.c.quantity, o.c.notional, o.c.limit_checks)
        .where(o.c.state == "blocked")
        .order_by(o.c.session.desc(), o.c.symbol)
    )
    frame = read_frame(engine, query)
    frame = frame.loc[frame["session"].isin(sorted(frame["session"].unique())[-sessions:])]
    frame["breach"] = frame["limit_checks"].map(lambda checks: "; ".join((checks or {}).get("breaches", [])))
    return frame.drop(columns="limit_checks").reset_index(drop=True)


def session_closes(engine: sa.Engine, symbols: Sequence[str], start, end) -> pd.DataFrame:
    """Stored 1d closes of `symbols` with bar start in [start, end): index ts (UTC), one column per symbol."""
    query = sa.select(prices.c.ts, prices.c.symbol, prices.c.close).where(
        prices.c.timeframe == "1d",
        prices.c.symbol.in_(list(symbols)),
        prices.c.ts >= pd.Timestamp(start).to_pydatetime(),
        prices.c.ts < pd.Timestamp(end).to_pydatetime(),
    )
    frame = read_frame(engine, query)
    return frame.pivot(index="ts", columns="symbol", values="close").sort_index()


def traded_symbols(engine: sa.Engine, model: str) -> list[str]:
    """The symbols `model` has targets for (tt_target), sorted."""
    t = trading_targets
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(t.c.symbol).where(t.c.model_id == model).distinct().order_by(t.c.symbol)
            ).scalars()
        )
