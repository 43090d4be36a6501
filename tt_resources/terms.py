"""Shared terms of the platform, defined once and imported everywhere (the Dagster code location too: only the
standard library at import, pandas inside the functions).

- Instants: `utc` (naive input means UTC: user input, configuration) and `aware_utc` (naive input is
  refused: instants that reach the database, the calendar or a market-data source);
  `tt_resources.db.bulk.utc_timestamps` is the vectorised `aware_utc`.
- Bars: `PRICE_COLUMNS`, `OHLCV_COLUMNS` and `SOURCE_BAR_COLUMNS` (a bars frame, as every source returns it);
  `tt_resources.db.prices.STORED_BAR_COLUMNS` adds the symbol.
- Metrics: `METRICS` (tt_eval's metric columns, in display order, with label and format kind), `METRIC_NAMES`
  and the named subsets shown by the short tables.
- Features: `FEATURE_COLUMNS` (tt_features' columns, what `tt_rl.features.compute_features` produces).
- Sources: `SourceName`, the market-data sources (`tt_resources.sources`), and `SOURCE_NAMES`; `DateFormat`,
  the field orders of CSV dates; `PacingMode`, IBKR's pacing modes.
- Policies: `AGENT` (the trained PPO agent) and the baselines' names, `POLICY_LABELS` and `POLICY_NAMES`
  (agent first).
- Closed sets of names, each a `Literal` (for pydantic and Dagster config) with its tuple of values (for click
  and messages): `SpanPolicy`, `PlantedKind` (tt_rl.planted's markets, each with its oracle) and
  `SyntheticSignal` (the signal planted in the synthetic source, TT_SYNTHETIC_SIGNAL).
Timeframes are `tt_resources.timeframes.TIMEFRAME_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- instants


def utc(value) -> pd.Timestamp | None:
    """`value` (str, datetime, Timestamp, None) as a tz-aware UTC Timestamp; naive input is taken as UTC,
    None and NaT give None."""
    import pandas as pd

    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def aware_utc(value, name: str) -> pd.Timestamp:
    """`value` (str, datetime, Timestamp) as a UTC Timestamp; ValueError naming `name` when it is naive or
    missing (a zone-less instant there is more likely local time than UTC)."""
    import pandas as pd

    stamp = pd.Timestamp(value)
    if stamp is pd.NaT or stamp.tzinfo is None:
        raise ValueError(f"{name}={value!r} is naive or missing; pass a tz-aware (UTC) instant")
    return stamp.tz_convert("UTC")


# ---------------------------------------------------------------- bars

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")  # instrument currency, > 0
# the columns every bar has: ts (bar start, UTC), the prices and volume (shares)
OHLCV_COLUMNS: tuple[str, ...] = ("ts", *PRICE_COLUMNS, "volume")
# a bars frame: OHLCV, wap (volume-weighted average price) and bar_count (trades); both may be NaN
SOURCE_BAR_COLUMNS: tuple[str, ...] = (*OHLCV_COLUMNS, "wap", "bar_count")

# ---------------------------------------------------------------- sources

# where bars come from: the deterministic synthetic market, a directory of CSV/Parquet files, IB Gateway/TWS
SourceName = Literal["synthetic", "csv", "ibkr"]
SOURCE_NAMES: tuple[str, ...] = get_args(SourceName)
# field order of CSV dates like 03/06/2024
DateFormat = Literal["day-first", "month-first"]
# IBKR pacing: adaptive (bounded requests in flight, AIMD) or strict (also a request count per window)
PacingMode = Literal["adaptive", "strict"]

# ---------------------------------------------------------------- metrics

MetricKind = Literal["percent", "ratio"]  # percent: a fraction shown as %; ratio: a plain number (2 decimals)


@dataclass(frozen=True)
class Metric:
    """A performance figure: its key (METRICS: a tt_eval column and tt_rl.metrics.performance key;
    tt_pipeline.tearsheet.STATS: a tear-sheet figure), display label, format kind."""

    name: str
    label: str
    kind: MetricKind


# tt_eval's metric columns, in display order (tt_rl.metrics.performance computes exactly these)
METRICS: tuple[Metric, ...] = (
    Metric("total_return", "Total return", "percent"),  # net worth at the end / at the start - 1
    Metric("cagr", "CAGR", "percent"),  # compound annual growth rate
    Metric("ann_volatility", "Volatility (ann.)", "percent"),  # annualised std of per-bar returns
    Metric("sharpe", "Sharpe", "ratio"),  # annualised, risk-free rate 0
    Metric("sortino", "Sortino", "ratio"),  # annualised, target return 0
    Metric("max_drawdown", "Max drawdown", "percent"),  # largest fall from a running peak, >= 0
    Metric("calmar", "Calmar", "ratio"),  # cagr / max_drawdown
    Metric("turnover", "Turnover / bar", "percent"),  # average per-step turnover
    Metric("costs", "Costs / capital", "percent"),  # total costs paid / initial net worth
    Metric("hit_rate", "Hit rate", "percent"),  # share of invested steps with a positive return
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
# tt_eval's significance columns (tt_rl.significance; tt_rl.evaluate fills them)
SIGNIFICANCE: tuple[Metric, ...] = (
    Metric("psr", "PSR vs cash", "percent"),  # P(true Sharpe > 0), probabilistic Sharpe ratio
    Metric(
        "dsr", "DSR vs cash", "percent"
    ),  # PSR against the best of n_trials configurations' expected Sharpe
    # 95 % sampling interval of the Sharpe ratio over time (Lo 2002 / Mertens 2002 standard error)
    Metric("sharpe_ci_low", "Sharpe 95% interval (time) low", "ratio"),
    Metric("sharpe_ci_high", "Sharpe 95% interval (time) high", "ratio"),
    Metric("sharpe_vs_best", "Excess Sharpe vs best baseline", "ratio"),  # annualised, of the excess returns
    Metric("psr_vs_best", "PSR vs best baseline", "percent"),  # P(true Sharpe of the excess returns > 0)
    Metric("dsr_vs_best", "DSR vs best baseline", "percent"),  # the same, deflated for n_trials
    Metric("sharpe_seed_min", "Sharpe, lowest seed", "ratio"),  # range of the seeds' stitched Sharpe ratios
    Metric("sharpe_seed_max", "Sharpe, highest seed", "ratio"),
)
SIGNIFICANCE_NAMES: tuple[str, ...] = tuple(m.name for m in SIGNIFICANCE)
# named subsets, in METRICS order, for the short tables
# `tt train`'s results table: all but the two derived ones (calmar, hit_rate)
TRAIN_TABLE_METRICS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "ann_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "turnover",
    "costs",
)
# the Dagster UI's evaluation summary (tt_assets.reporting)
SUMMARY_METRICS: tuple[str, ...] = tuple(m for m in TRAIN_TABLE_METRICS if m != "ann_volatility")
# `tt demo`'s table
HEADLINE_METRICS: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "turnover")

# ---------------------------------------------------------------- features

# Columns of tt_features besides (symbol, timeframe, ts); tt_rl.features.compute_features produces exactly these.
FEATURE_COLUMNS: tuple[str, ...] = (
    "ret_1",  # simple return close/prev_close - 1
    "log_ret_1",  # log return
    "vol_10",  # rolling std of log returns over 10 bars (per bar, not annualised)
    "vol_20",  # rolling std of log returns over 20 bars
    "mom_20",  # close / close 20 bars ago - 1
    "rsi_14",  # Wilder RSI over 14 bars, 0..100
    "volume_z_20",  # z-score of volume against its 20-bar mean/std
    "hl_range",  # (high - low) / close
)

# ---------------------------------------------------------------- policies

AGENT = "ppo"  # the trained PPO agent
EQUAL_WEIGHT = "equal_weight"  # buy 1/N at the first bar, then hold
EQUAL_WEIGHT_VOL = "equal_weight_vol"  # equal weights scaled to the target volatility every bar
CASH = "cash"  # stay in cash
ORACLE = "oracle"  # a planted market's oracle (tt_rl.planted.ORACLES, named by eval.oracle)
POLICY_LABELS: dict[str, str] = {
    AGENT: "PPO agent",
    ORACLE: "Oracle (planted signal)",
    EQUAL_WEIGHT: "Equal weight (buy & hold)",
    EQUAL_WEIGHT_VOL: "Equal weight, vol-targeted",
    CASH: "Cash",
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICY_LABELS)  # display order: the agent, then the baselines

# ---------------------------------------------------------------- closed sets of names

# what a training panel does with symbols whose history starts later or ends earlier than most
# (tt_pipeline.datasets.uneven_spans): "drop_short" leaves them out, "common_span" cuts every symbol to the span
# they all have
SpanPolicy = Literal["drop_short", "common_span"]
SPAN_POLICIES: tuple[SpanPolicy, ...] = get_args(SpanPolicy)
DEFAULT_SPAN_POLICY: SpanPolicy = "drop_short"

# tt_rl.planted's markets generated in code, each with its oracle (tt_rl.planted.ORACLES; eval.oracle names one)
PlantedKind = Literal[
    "sign_persistence",
    "reversal",
    "drift",
    "vol_regime",
    "lead_lag",
    "volume",
    "momentum_rank",
    "beta",
    "noise",
]
PLANTED_MARKETS: tuple[PlantedKind, ...] = get_args(PlantedKind)

# the signal planted in the synthetic source (tt_resources.sources.synthetic): "none" or a planted kind, whose oracle
# the demo scores beside the agent
SyntheticSignal = Literal["none", "sign_persistence"]
SYNTHETIC_SIGNALS: tuple[SyntheticSignal, ...] = get_args(SyntheticSignal)
