"""The platform's tables (SQLAlchemy 2 Core). One schema for SQLite and PostgreSQL.

Units: prices in the instrument's currency, volume in shares, `ts` is the bar's start instant (UTC),
weights are fractions of net worth, costs and values in account currency.
"""

from __future__ import annotations

import sqlalchemy as sa

from tt_resources.db.types import JSONType, Price, UTCDateTime
from tt_resources.terms import FEATURE_COLUMNS, METRIC_NAMES, SIGNIFICANCE_NAMES

metadata = sa.MetaData()

Symbol = sa.String(16)
TimeframeCol = sa.String(4)
Id = sa.String(64)

prices = sa.Table(
    "tt_prices",
    metadata,
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("timeframe", TimeframeCol, primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    sa.Column("open", Price, nullable=False),
    sa.Column("high", Price, nullable=False),
    sa.Column("low", Price, nullable=False),
    sa.Column("close", Price, nullable=False),
    sa.Column("volume", Price),  # NULL: the source does not know it (IBKR sends -1)
    sa.Column("wap", Price),
    sa.Column("bar_count", sa.Integer),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("ingested_at", UTCDateTime, nullable=False),
)

quarantine = sa.Table(  # bars a source sent that break a bar rule: kept out of tt_prices, with the reason
    "tt_bar_quarantine",
    metadata,
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("timeframe", TimeframeCol, primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    sa.Column("open", Price),
    sa.Column("high", Price),
    sa.Column("low", Price),
    sa.Column("close", Price),
    sa.Column("volume", Price),
    sa.Column("wap", Price),
    sa.Column("bar_count", sa.Integer),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("quarantined_at", UTCDateTime, nullable=False),
)

features = sa.Table(
    "tt_features",
    metadata,
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("timeframe", TimeframeCol, primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    *(sa.Column(name, Price) for name in FEATURE_COLUMNS),
    sa.Column("computed_at", UTCDateTime, nullable=False),
)

contracts = sa.Table(
    "tt_contracts",
    metadata,
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("con_id", sa.BigInteger, nullable=False),
    sa.Column("sec_type", sa.String(8), nullable=False),
    sa.Column("exchange", sa.String(32), nullable=False),
    sa.Column("primary_exchange", sa.String(32)),
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("local_symbol", sa.String(32)),
    sa.Column("trading_class", sa.String(32)),
    sa.Column("long_name", sa.String(128)),
    sa.Column("time_zone", sa.String(64)),
    sa.Column("head_ts", UTCDateTime),  # earliest TRADES bar IBKR has (reqHeadTimeStamp)
    sa.Column("qualified_at", UTCDateTime, nullable=False),
)

fetch_log = sa.Table(
    "tt_fetch_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", Symbol, nullable=False),
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("request", sa.String(32), nullable=False),  # historical | head_timestamp | contract
    sa.Column("end_ts", UTCDateTime),
    sa.Column("duration", sa.String(16)),
    sa.Column("bar_size", sa.String(16)),
    sa.Column(
        "outcome", sa.String(32), nullable=False
    ),  # ok | no_data | pacing | not_found | timeout | error
    sa.Column("error_code", sa.Integer),
    sa.Column("message", sa.Text),
    sa.Column("bars", sa.Integer, nullable=False, default=0),
    sa.Column("latency_s", sa.Float),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_fetch_log_partition", "symbol", "timeframe", "requested_at"),
)

fetch_holes = sa.Table(  # spans [start_ts, end_ts) of a partition the source did not deliver
    "tt_fetch_hole",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", Symbol, nullable=False),
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("start_ts", UTCDateTime, nullable=False),
    sa.Column("end_ts", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # e.g. "IBKR error 162: HMDS query returned no data"
    sa.Column("attempts", sa.Integer, nullable=False),  # fetches of this span that did not deliver it
    sa.Column("found_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),  # NULL while open; set when a later fetch delivered the span
    sa.Column("accepted_at", UTCDateTime),  # set when a user accepted the span as empty (never retried)
    sa.Column("note", sa.Text),  # the user's word for an accepted hole, e.g. "suspended"
    sa.Index("ix_tt_fetch_hole_partition", "symbol", "timeframe", "resolved_at"),
)

corporate_actions = sa.Table(  # splits and revisions of stored bars found by comparing them with the source
    "tt_corporate_action",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", Symbol, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # split | revision
    sa.Column("ratio", sa.Float),  # split: new shares per old share (2.0 = 2:1, 0.1 = 1:10); revision: NULL
    sa.Column("timeframe", TimeframeCol, nullable=False),  # the partition it was seen in
    # split: the first session it can have taken effect (after the newest bar stored before it);
    # revision: the first changed bar
    sa.Column("first_session", UTCDateTime, nullable=False),
    sa.Column("detected_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),  # the stored and the served values that differ
    sa.Index("ix_tt_corporate_action_symbol", "symbol", "first_session"),
)

ib_requests = sa.Table(  # the shared IBKR pacing ledger: one row per paced request, every process
    "tt_ib_request",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("identity", sa.String(64), nullable=False),  # hash of contract, end, duration, bar size, type
    sa.Column("contract", sa.String(32), nullable=False),
    sa.Column("sent_at", sa.Float, nullable=False),  # epoch seconds on the database's clock
    sa.Column("lease_until", sa.Float, nullable=False),  # in flight until done_at or this instant
    sa.Column("done_at", sa.Float),
    sa.Column("outcome", sa.String(16)),  # ok | pacing | error
    sa.Index("ix_tt_ib_request_sent", "sent_at"),
)

ib_pacing = sa.Table(  # adaptive pacing state shared by every process (one row per pacing mode)
    "tt_ib_pacing",
    metadata,
    sa.Column("mode", sa.String(16), primary_key=True),
    sa.Column("concurrency", sa.Float, nullable=False),  # AIMD limit on requests in flight
    sa.Column("paused_until", sa.Float, nullable=False),  # no request before this epoch second
    sa.Column("decreased_at", sa.Float, nullable=False),  # the last halving: violations of requests sent
    # before it were sent under the old limit and do not halve it again
    sa.Column("streak", sa.Integer, nullable=False),  # pacing violations since the last success
    sa.Column("violations", sa.Integer, nullable=False),  # total seen
)

datasets = sa.Table(
    "tt_dataset",
    metadata,
    sa.Column("dataset_version", Id, primary_key=True),  # hash of content_version, test_fraction, split_ts
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("symbols", JSONType, nullable=False),
    sa.Column("start_ts", UTCDateTime, nullable=False),
    sa.Column("end_ts", UTCDateTime, nullable=False),
    sa.Column("split_ts", UTCDateTime),  # first bar of the held-out test period
    sa.Column("n_bars", sa.Integer, nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("content_version", Id),  # Panel.version: timeframe, symbols, feature set, bars and values
    sa.Column("test_fraction", sa.Float),  # share of the bars held out from split_ts on
)

models = sa.Table(
    "tt_model",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("algo", sa.String(16), nullable=False, default="PPO"),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("dataset_version", Id),
    sa.Column("code_version", Id),
    sa.Column("symbols", JSONType),
    sa.Column("config", JSONType, nullable=False),
    sa.Column("train_metrics", JSONType),
    sa.Column("total_timesteps", sa.BigInteger),
    sa.Column("train_start", UTCDateTime),
    sa.Column("train_end", UTCDateTime),
    sa.Column("run_id", Id),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # a walk-forward fold's model (migration 0005): NULL group_id = a walk-forward model (the group: config x
    # dataset, what tt_eval scores); its folds' models name it and carry fold, seed and their test window
    sa.Column("group_id", Id),
    sa.Column("fold", sa.Integer),
    sa.Column("seed", sa.BigInteger),
    sa.Column("test_start", UTCDateTime),  # first bar of the fold's test window (the decision bar)
    sa.Column("test_end", UTCDateTime),
    # a production model (migration 0008): trained on the dataset's whole history with the configuration of
    # the walk-forward model named here, whose evaluation (tt_eval) justifies it; NULL for every other model
    sa.Column("production_of", Id),
    sa.Index("ix_tt_model_timeframe_created", "timeframe", "created_at"),
    sa.Index("ix_tt_model_group", "group_id", "fold", "seed"),
)

episodes = sa.Table(
    "tt_episode",
    metadata,
    sa.Column("episode_id", Id, primary_key=True),
    sa.Column("model_id", Id),  # NULL for baselines not tied to a model
    sa.Column("run_id", Id),  # Dagster run id or CLI invocation id
    sa.Column("timeframe", TimeframeCol),
    sa.Column("split", sa.String(16), nullable=False),  # train | test
    sa.Column(
        "policy", sa.String(32), nullable=False
    ),  # ppo | equal_weight | equal_weight_vol | cash | random
    sa.Column("window", sa.Integer),  # walk-forward fold of a test episode
    sa.Column("status", sa.String(16), nullable=False),  # running | finished | incomplete
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("start_ts", UTCDateTime),  # first bar of the episode
    sa.Column("end_ts", UTCDateTime),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("initial_net_worth", Price),
    sa.Column("final_net_worth", Price),
    sa.Column("total_reward", Price),
    sa.Column("max_drawdown", Price),
    sa.Column("terminated", sa.Boolean),
    sa.Column("truncated", sa.Boolean),
    sa.Column("symbols", JSONType),
    sa.Column("config", JSONType),
    sa.Index("ix_tt_episode_model", "model_id", "split", "window"),
)


def _step_table(name: str, *columns: sa.Column, per_symbol: bool = False) -> sa.Table:
    """A per-step log table keyed by (episode_id, step[, symbol]). No foreign key to tt_episode: the logger
    writes the episode row first, in the same transaction, and a per-row check cost as much as the row
    (migration 0002)."""
    keys = [
        sa.Column("episode_id", Id, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
    ]
    if per_symbol:
        keys.append(sa.Column("symbol", Symbol, primary_key=True))
    return sa.Table(name, metadata, *keys, *columns)


actions = _step_table(
    "tt_action",
    sa.Column("ts", UTCDateTime),
    sa.Column("action", JSONType, nullable=False),  # raw policy output, length N (scores)
    sa.Column("rebalanced", sa.Boolean, nullable=False),  # False when the no-trade band skipped it
)

rewards = _step_table(
    "tt_reward",
    sa.Column("reward", Price, nullable=False),
    sa.Column("sharpe_term", Price),
    sa.Column("drawdown_penalty", Price),
    sa.Column("turnover_penalty", Price),
)

portfolio = _step_table(
    "tt_portfolio",
    sa.Column("ts", UTCDateTime),
    sa.Column("net_worth", Price, nullable=False),
    sa.Column("cash", Price, nullable=False),
    sa.Column("gross_exposure", Price),  # sum |weights|
    sa.Column("period_return", Price),  # net return over the step (after costs)
    sa.Column("drawdown", Price),  # 1 - net_worth / running peak, >= 0
    sa.Column("turnover", Price),  # sum |traded value| / net worth
    sa.Column("costs", Price),  # commission + slippage paid this step
)

holdings = _step_table(
    "tt_holdings",
    sa.Column("weight", Price, nullable=False),
    sa.Column("quantity", Price, nullable=False),  # shares after the step's trades
    sa.Column("price", Price, nullable=False),
    sa.Column("value", Price, nullable=False),
    sa.Column("trade_value", Price, nullable=False, default=0.0),  # signed value traded this step
    sa.Column("cost", Price, nullable=False, default=0.0),
    sa.Column("pnl", Price, nullable=False, default=0.0),  # mark-to-market P&L of the position over the step
    per_symbol=True,
)

evals = sa.Table(
    "tt_eval",
    metadata,
    sa.Column("eval_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", Id, nullable=False),  # the walk-forward model (tt_model row without group_id)
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("policy", sa.String(32), nullable=False),  # ppo, oracle or a baseline name
    sa.Column("fold", sa.Integer, nullable=False),  # walk-forward fold; -1 = all folds stitched together
    sa.Column("seed", sa.BigInteger, nullable=False, default=-1),  # PPO seed; -1 = none / the seed ensemble
    sa.Column("fold_model_id", Id),  # the fold's PPO model scored in the row
    sa.Column("train_start", UTCDateTime),
    sa.Column("train_end", UTCDateTime),
    sa.Column("test_start", UTCDateTime, nullable=False),
    sa.Column("test_end", UTCDateTime, nullable=False),
    sa.Column("episode_id", Id),  # the logged test episode with the equity curve
    *(sa.Column(name, Price) for name in METRIC_NAMES),  # tt_resources.terms.METRICS, in display order
    *(sa.Column(name, Price) for name in SIGNIFICANCE_NAMES),  # tt_resources.terms.SIGNIFICANCE
    sa.Column(
        "n_trials", sa.Integer
    ),  # configurations tried on overlapping data, the DSR's N (agent summary)
    sa.Column(
        "best_baseline", sa.String(64)
    ),  # the fold's best baseline(s) on its training span (agent rows)
    sa.Column("verdict", sa.Text),  # the "Verdict: ..." line (agent summary row)
    sa.Column("run_id", Id),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_eval_model", "model_id", "policy", "fold", "seed"),
)

# --- trading (migration 0008): the champion, its targets, orders, fills, positions; docs/trading.md ---------

Session = sa.Date  # an exchange session (its local trading date, tt_resources.calendar)
OrderRef = sa.String(64)  # tt_resources.broker.order_ref: "tt:<session>:<model>:<symbol>"

promotions = sa.Table(  # every promotion and demotion of a timeframe's champion; the newest row decides
    "tt_promotion",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("timeframe", TimeframeCol, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # promote | demote
    sa.Column("model_id", Id),  # the champion from this row on; NULL after a demotion: no champion
    sa.Column("previous_model_id", Id),  # the champion before this row (NULL: none)
    sa.Column("verdict", sa.Text),  # the evaluation's verdict line that allowed it (tt_eval.verdict)
    sa.Column(
        "forced", sa.Boolean, nullable=False
    ),  # promoted without the verdict ("--force", reason required)
    sa.Column("reason", sa.Text),
    sa.Column("who", sa.String(64), nullable=False),  # OS user, or "sensor:<name>" for an automatic demotion
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_promotion_timeframe", "timeframe", "at"),
)

targets = sa.Table(  # a model's target weights decided after a session's close, for the next session's open
    "tt_target",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("decision_ts", UTCDateTime, primary_key=True),  # start of the bar the decision was made on
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("session", Session, nullable=False),  # the session of the decision bar
    sa.Column("weight", Price, nullable=False),  # fraction of net liquidation, >= 0 (cash = 1 - sum)
    sa.Column("close", Price, nullable=False),  # the decision bar's close the orders are sized with
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_target_session", "session", "model_id"),
)

orders = sa.Table(  # every order the loop decided, and its life at the broker
    "tt_order",
    metadata,
    sa.Column("order_ref", OrderRef, primary_key=True),
    sa.Column("session", Session, nullable=False),  # the session it executes at (market on open)
    sa.Column("decided_session", Session, nullable=False),  # the session whose close decided it
    sa.Column("model_id", Id, nullable=False),
    sa.Column("account", sa.String(32), nullable=False),
    sa.Column("symbol", Symbol, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),  # signed shares: buy > 0, sell < 0
    sa.Column("reference_price", Price, nullable=False),  # the decision bar's close
    sa.Column("notional", Price, nullable=False),  # |quantity| * reference_price
    # blocked (a pre-trade limit) | pending_submit | submitted | partially_filled | filled | cancelled | rejected
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("broker_order_id", sa.BigInteger),
    sa.Column("perm_id", sa.BigInteger),
    sa.Column("filled", Price, nullable=False, default=0.0),  # shares filled, unsigned
    sa.Column("avg_fill_price", Price),
    sa.Column("messages", JSONType, nullable=False),  # broker lines: 399 warnings, "201: ..." rejections
    sa.Column("limit_checks", JSONType, nullable=False),  # {limit name: "ok" | the breach line}
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_order_session", "session", "model_id"),
)

fills = sa.Table(  # executions of our orders with their commissions (one row per broker execution)
    "tt_fill",
    metadata,
    sa.Column("exec_id", sa.String(64), primary_key=True),
    sa.Column("order_ref", OrderRef, nullable=False),
    sa.Column("session", Session, nullable=False),  # the order's session
    sa.Column("symbol", Symbol, nullable=False),
    sa.Column("shares", Price, nullable=False),  # signed: bought > 0, sold < 0
    sa.Column("price", Price, nullable=False),
    sa.Column("commission", Price),  # NULL until the broker reports it
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Index("ix_tt_fill_order", "order_ref"),
)

positions = sa.Table(  # the account as reconciled on a session (after its open's fills); cash and net
    "tt_position",  # liquidation are rows with the reserved symbols tt_resources.db.trading.CASH / NET_LIQUIDATION
    metadata,
    sa.Column("account", sa.String(32), primary_key=True),
    sa.Column("session", Session, primary_key=True),
    sa.Column("symbol", Symbol, primary_key=True),
    sa.Column("shares", Price, nullable=False),  # cash and net liquidation rows: 0
    sa.Column("price", Price),  # the price the value is marked at (the session's close); NULL for cash rows
    sa.Column("value", Price, nullable=False),  # account currency
    sa.Column("as_of", UTCDateTime, nullable=False),  # when the broker reported it
)

trading_halts = sa.Table(  # the kill switch (`tt halt` / `tt halt --off`): the newest row decides
    "tt_trading_halt",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("halted", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

live_performance = sa.Table(  # a model's live session against its shadow backtest of the same session
    "tt_live_performance",
    metadata,
    sa.Column("model_id", Id, primary_key=True),
    sa.Column("session", Session, primary_key=True),
    sa.Column("live_return", Price),  # the account's net return over the session, after costs
    sa.Column("shadow_return", Price),  # the backtest's net return over the same session (next-open fills)
    sa.Column("slippage_bps", Price),  # notional-weighted fill price vs the bar's open, bps, adverse > 0
    sa.Column("costs", Price),  # commissions paid live, account currency
    sa.Column("shadow_costs", Price),  # the backtest's cost model on the same trades
    sa.Column("missed_fills", sa.Integer),  # orders not (fully) filled at the open
    sa.Column("tracking_error", Price),  # |live_return - shadow_return| (or its rolling std: docs/trading.md)
    sa.Column("live_equity", Price),  # net liquidation after the session
    sa.Column("shadow_equity", Price),
    sa.Column("details", JSONType),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

TABLES: dict[str, sa.Table] = {t.name: t for t in metadata.sorted_tables}
