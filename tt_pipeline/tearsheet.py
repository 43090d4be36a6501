"""The tear sheet of one policy's out-of-sample run: returns and holdings in, typed tables out.

Every return statistic is QuantStats' (`quantstats.stats`, imported lazily: it loads seaborn and yfinance, a
few seconds) on the policy's per-bar net returns stitched over its episodes; tests/test_tearsheet.py checks
each against QuantStats on the same series. Our own code only where no library has the figure: monthly and
yearly tables masked to the months that have bars (QuantStats fills them with 0), drawdown recoveries, the
choice of the benchmark, gross/net and sector exposure from the logged holdings, and round trips.

Conventions: returns are fractions of net worth per bar after costs; times are naive UTC (QuantStats drops
zones); `bars_per_year` annualises (tt_resources.timeframes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tt_resources.terms import CASH, EQUAL_WEIGHT, EQUAL_WEIGHT_VOL, Metric

BASELINE_NAMES: tuple[str, ...] = (EQUAL_WEIGHT, EQUAL_WEIGHT_VOL, CASH)
"""Policies a tear sheet may take as its benchmark (the oracle is not a strategy: it knows the future)."""
CONFIDENCE = 0.95  # of VaR and CVaR
WORST_DRAWDOWNS = 5
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
UNKNOWN_SECTOR = "Unknown"
FLAT = 1e-9  # |shares| at or below this is no position
HOLDING_COLUMNS = ("episode_id", "step", "ts", "symbol", "quantity", "price", "value", "trade_value", "cost")
"""Columns of the holdings frame a tear sheet reads (tt_resources.db.reports.holding_rows)."""


class TearSheetError(ValueError):
    """The inputs cannot make a tear sheet (no returns); the message says which policy and why."""


STATS: tuple[Metric, ...] = (
    Metric("total_return", "Total return", "percent"),
    Metric("volatility", "Volatility (ann.)", "percent"),
    Metric("sharpe", "Sharpe (ann.)", "ratio"),
    Metric("max_drawdown", "Max drawdown", "percent"),
    Metric("var", "Daily VaR 95 % (normal)", "percent"),
    Metric("cvar", "Daily CVaR 95 % (normal)", "percent"),
    Metric("cvar_historical", "Daily CVaR 95 % (historical)", "percent"),
    Metric("skew", "Skew (daily)", "ratio"),
    Metric("kurtosis", "Excess kurtosis (daily)", "ratio"),
    Metric("best_bar", "Best bar", "percent"),
    Metric("worst_bar", "Worst bar", "percent"),
    Metric("best_day", "Best day", "percent"),
    Metric("worst_day", "Worst day", "percent"),
    Metric("best_month", "Best month", "percent"),
    Metric("worst_month", "Worst month", "percent"),
    Metric("excess_return", "Excess total return vs benchmark", "percent"),
    Metric("tracking_error", "Tracking error (ann.)", "percent"),
    Metric("information_ratio", "Information ratio (ann.)", "ratio"),
)
"""The summary's figures, in display order."""


@dataclass(frozen=True)
class TearSheet:
    """The tables of a tear sheet.

    returns: per-bar net returns (ts -> fraction); daily: the same compounded per date (`daily`); stats: STATS' names -> value (NaN where undefined);
    monthly: year x MONTHS compounded returns, NaN for months without bars, plus "Year"; yearly: year ->
    compounded return; drawdowns: the WORST_DRAWDOWNS deepest (start, valley, recovery: NaT while not
    recovered, days: calendar days start to end as QuantStats counts them, max_drawdown: fraction > 0);
    drawdown: ts -> fraction below the running peak (<= 0); rolling_volatility: ts -> annualised volatility
    over `rolling_bars` bars; exposure: ts x (gross, net) fractions of net worth; sectors: ts x sector net
    weights; benchmark: the chosen baseline (None when there is none) and `benchmark_note` why;
    excess: ts -> cumulative active return (1 + R_policy) / (1 + R_benchmark) - 1; trades: the blotter
    (`blotter`); round_trips (`round_trips`)."""

    policy: str
    bars_per_year: int
    returns: pd.Series
    daily: pd.Series
    stats: dict[str, float]
    monthly: pd.DataFrame
    yearly: pd.Series
    drawdowns: pd.DataFrame
    drawdown: pd.Series
    rolling_volatility: pd.Series
    rolling_bars: int
    exposure: pd.DataFrame
    sectors: pd.DataFrame
    benchmark: str | None
    benchmark_note: str
    excess: pd.Series
    trades: pd.DataFrame
    round_trips: pd.DataFrame


def naive_utc(index) -> pd.DatetimeIndex:
    """`index` as naive UTC times (QuantStats compares and groups naive times)."""
    index = pd.DatetimeIndex(index)
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


def returns_of(steps: pd.DataFrame, episode_ids: list[str]) -> pd.Series:
    """Per-bar net returns of `episode_ids` chained in that order, from tt_portfolio rows (episode_id, step,
    ts, period_return), indexed by naive UTC bar time."""
    parts = [steps[steps["episode_id"] == e].sort_values("step") for e in episode_ids]
    rows = pd.concat(parts, ignore_index=True) if parts else steps.iloc[0:0]
    return pd.Series(
        rows["period_return"].astype(float).to_numpy(), index=naive_utc(rows["ts"]), name="returns"
    )


def daily(returns: pd.Series) -> pd.Series:
    """Returns compounded per UTC calendar date (a US session's bars share one), the series itself when it
    has one bar per date."""
    if returns.index.normalize().is_unique:
        return returns
    import quantstats as qs

    by_day = qs.utils.group_returns(returns, returns.index.normalize(), compounded=True)
    by_day.index = pd.DatetimeIndex(by_day.index)
    return by_day


def return_stats(returns: pd.Series, bars_per_year: int) -> dict[str, float]:
    """STATS' return figures of `returns` (QuantStats): totals and ratios over the bars, tail and shape
    figures over daily returns (compounded per date for intraday bars), best/worst bar, day and month."""
    import quantstats as qs

    per_day = daily(returns)
    with np.errstate(invalid="ignore", divide="ignore"):  # flat returns (cash): NaN, without warnings
        return {
            "total_return": float(qs.stats.comp(returns)),
            "volatility": float(qs.stats.volatility(returns, periods=bars_per_year)),
            "sharpe": float(qs.stats.sharpe(returns, periods=bars_per_year)),
            "max_drawdown": -float(qs.stats.max_drawdown(returns)),
            "var": float(qs.stats.value_at_risk(per_day, confidence=CONFIDENCE)),
            "cvar": float(qs.stats.conditional_value_at_risk(per_day, confidence=CONFIDENCE)),
            "cvar_historical": float(
                qs.stats.conditional_value_at_risk(per_day, confidence=CONFIDENCE, method="historical")
            ),
            "skew": float(qs.stats.skew(per_day)),
            "kurtosis": float(qs.stats.kurtosis(per_day)),
            "best_bar": float(qs.stats.best(returns)),
            "worst_bar": float(qs.stats.worst(returns)),
            "best_day": float(per_day.max()),
            "worst_day": float(per_day.min()),
            "best_month": float(qs.stats.best(returns, aggregate="ME")),
            "worst_month": float(qs.stats.worst(returns, aggregate="ME")),
        }


def monthly_table(returns: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """(year x MONTHS + "Year" compounded returns, NaN for months without bars; year -> compounded return),
    from QuantStats' monthly and yearly aggregation."""
    import quantstats as qs

    months = qs.utils.aggregate_returns(returns, "ME")  # index (year, month)
    table = months.unstack().reindex(columns=range(1, 13))
    table.columns = list(MONTHS)
    yearly = qs.utils.aggregate_returns(returns, "YE")
    table["Year"] = yearly
    table.index.name = yearly.index.name = "year"
    return table, yearly


def drawdown_table(returns: pd.Series, top: int = WORST_DRAWDOWNS) -> tuple[pd.DataFrame, pd.Series]:
    """(the `top` deepest drawdowns, deepest first; the drawdown series), by QuantStats' drawdown_details.
    recovery: the date of the first bar back at the peak after the drawdown's last bar under it (NaT while
    under it); dates are UTC calendar dates, as QuantStats gives them."""
    import quantstats as qs

    drawdown = qs.stats.to_drawdown_series(returns)
    details = qs.stats.drawdown_details(drawdown)
    columns = ["start", "valley", "recovery", "days", "max_drawdown"]
    if details.empty:
        return pd.DataFrame(columns=columns), drawdown
    details = details.sort_values("max drawdown").head(top)
    under = drawdown[drawdown < 0]
    last_under = pd.Series(under.index, index=under.index.normalize()).groupby(level=0).last()
    at_peak = drawdown.index[drawdown == 0]  # QuantStats' test for "no drawdown"
    recoveries = []
    for end in pd.to_datetime(details["end"]):
        later = at_peak[at_peak > last_under[end]]
        recoveries.append(later[0].normalize() if len(later) else pd.NaT)
    table = pd.DataFrame(
        {
            "start": pd.to_datetime(details["start"]),
            "valley": pd.to_datetime(details["valley"]),
            "recovery": pd.to_datetime(pd.Series(recoveries, dtype="datetime64[ns]")).to_numpy(),
            "days": details["days"].astype(int),
            "max_drawdown": -details["max drawdown"].astype(float) / 100,
        }
    )
    return table.reset_index(drop=True), drawdown


def rolling_window(bars_per_year: int, n: int) -> int:
    """Bars of the rolling volatility: about a month (bars_per_year / 12), at most a quarter of the series,
    at least 5."""
    return max(5, min(bars_per_year // 12, n // 4))


def choose_benchmark(
    policy: str, candidates: Mapping[str, pd.Series], bars_per_year: int
) -> tuple[str | None, str]:
    """(the baseline with the highest Sharpe ratio among `candidates` other than `policy`, cash counting 0;
    a sentence saying how it was chosen). The baselines are only played on the test windows, so the choice
    is made on the same returns it is compared with: the hurdle is the best of them after the fact, which
    favours the baseline, never the policy."""
    import quantstats as qs

    pool = {p: r for p, r in candidates.items() if p != policy and p in BASELINE_NAMES and len(r)}
    if not pool:
        return None, "no baseline was played on these windows"
    sharpes = {
        p: (0.0 if p == CASH else float(qs.stats.sharpe(r, periods=bars_per_year))) for p, r in pool.items()
    }
    best = max(sharpes, key=lambda p: (np.nan_to_num(sharpes[p], nan=-np.inf), -BASELINE_NAMES.index(p)))
    return best, (
        f"the baseline with the highest Sharpe ratio on these same test windows ({sharpes[best]:.2f}; cash "
        "counts 0): chosen after the fact, so the hurdle favours the baseline"
    )


def excess_figures(returns: pd.Series, benchmark: pd.Series, bars_per_year: int) -> tuple[dict, pd.Series]:
    """(excess_return, tracking_error, information_ratio; cumulative active return) of `returns` over
    `benchmark` on their common bars. The information ratio is QuantStats' (mean / std of the per-bar active
    return) annualised by sqrt(bars_per_year)."""
    import quantstats as qs

    both = pd.concat([returns, benchmark], axis=1, join="inner").dropna()
    r, b = both.iloc[:, 0], both.iloc[:, 1]
    active = r - b
    figures = {
        "excess_return": float(qs.stats.comp(r) - qs.stats.comp(b)),
        "tracking_error": float(active.std() * np.sqrt(bars_per_year)),
        "information_ratio": float(qs.stats.information_ratio(r, b) * np.sqrt(bars_per_year))
        if active.std() > 0
        else float("nan"),
    }
    return figures, (1 + r).cumprod() / (1 + b).cumprod() - 1


def exposures(
    holdings: pd.DataFrame, net_worth: pd.Series, sectors: Mapping[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ts x (gross, net); ts x sector net weight) per logged step, as fractions of net worth.

    `holdings`: rows (episode_id, step, ts, symbol, value) of the steps with a position; `net_worth`: net
    worth per step, indexed by naive UTC bar time (every step of the episodes: steps without a position are
    0); `sectors`: symbol -> sector (symbols without one count as UNKNOWN_SECTOR)."""
    weights = holdings.assign(
        ts=naive_utc(holdings["ts"]),
        sector=holdings["symbol"].map(lambda s: sectors.get(s) or UNKNOWN_SECTOR),
    )
    weights["weight"] = weights["value"].astype(float) / weights["ts"].map(net_worth).to_numpy()
    by_ts = weights.groupby("ts")["weight"]
    exposure = pd.DataFrame({"gross": by_ts.apply(lambda w: w.abs().sum()), "net": by_ts.sum()})
    exposure = exposure.reindex(net_worth.index, fill_value=0.0)
    by_sector = weights.pivot_table(index="ts", columns="sector", values="weight", aggfunc="sum")
    by_sector = by_sector.reindex(net_worth.index).fillna(0.0)
    return exposure, by_sector[sorted(by_sector.columns, key=lambda c: (c == UNKNOWN_SECTOR, c))]


def blotter(holdings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trades, round trips) from tt_holdings rows (HOLDING_COLUMNS) of one or more episodes.

    A round trip is a position in a symbol from flat to flat within an episode (a trade that crosses zero
    closes one and opens the next, split in proportion to shares); its P&L is the cash it returned: sale
    proceeds - purchases - costs, plus the position's value at the episode's last logged step while it is
    still open (status "open").
    trades: episode_id, step, ts, symbol, side (buy/sell), shares (signed), price, trade_value (signed, + =
    buy), cost, position (shares after), trip (round trip number, per blotter).
    round_trips: trip, episode_id, symbol, direction (long/short), opened, closed (NaT while open), status,
    bars, trades, entry_value (|value| traded opening the position), pnl, return (pnl / entry_value)."""
    rows = holdings.sort_values(["episode_id", "symbol", "step"]).reset_index(drop=True)
    last_step = holdings.groupby("episode_id")["step"].max()
    trades, trips = [], []
    for (episode, symbol), group in rows.groupby(["episode_id", "symbol"], sort=False):
        position, trip = 0.0, None
        for row in group.itertuples(index=False):
            if row.trade_value == 0:
                continue
            shares = row.trade_value / row.price
            after = position + shares
            pieces = [(shares, row.trade_value, row.cost)]
            if abs(position) > FLAT and abs(after) > FLAT and np.sign(after) != np.sign(position):
                closing = -position / shares  # the share of this trade that flattens the position
                pieces = [
                    (shares * closing, row.trade_value * closing, row.cost * closing),
                    (shares * (1 - closing), row.trade_value * (1 - closing), row.cost * (1 - closing)),
                ]
            for piece_shares, value, cost in pieces:
                if trip is None:
                    trip = {
                        "trip": len(trips) + 1,
                        "episode_id": episode,
                        "symbol": symbol,
                        "direction": "long" if piece_shares > 0 else "short",
                        "opened": row.ts,
                        "open_step": row.step,
                        "trades": 0,
                        "entry_value": 0.0,
                        "cash": 0.0,
                    }
                    trips.append(trip)
                position += piece_shares
                trip["trades"] += 1
                trip["cash"] -= value + cost
                if (value > 0) == (trip["direction"] == "long"):
                    trip["entry_value"] += abs(value)
                trades.append(
                    {
                        "episode_id": episode,
                        "step": row.step,
                        "ts": row.ts,
                        "symbol": symbol,
                        "side": "buy" if value > 0 else "sell",
                        "shares": piece_shares,
                        "price": row.price,
                        "trade_value": value,
                        "cost": cost,
                        "position": 0.0 if abs(position) <= FLAT else position,
                        "trip": trip["trip"],
                    }
                )
                if abs(position) <= FLAT:
                    trip |= {
                        "closed": row.ts,
                        "close_step": row.step,
                        "status": "closed",
                        "pnl": trip["cash"],
                    }
                    position, trip = 0.0, None
        if trip is not None:  # still open: marked at the episode's last logged step
            end = group[group["step"] == last_step[episode]]
            value = float(end["value"].sum())
            trip |= {
                "closed": pd.NaT,
                "close_step": last_step[episode],
                "status": "open",
                "pnl": trip["cash"] + value,
            }
    trade_columns = [
        "episode_id", "step", "ts", "symbol", "side", "shares", "price", "trade_value", "cost", "position", "trip",
    ]  # fmt: skip
    trade_frame = pd.DataFrame(trades, columns=trade_columns).sort_values(
        ["ts", "symbol", "trip"], kind="stable"
    )
    trip_frame = pd.DataFrame(
        trips,
        columns=[
            "trip", "episode_id", "symbol", "direction", "opened", "closed", "status", "open_step", "close_step",
            "trades", "entry_value", "pnl",
        ],
    )  # fmt: skip
    trip_frame["bars"] = trip_frame["close_step"] - trip_frame["open_step"] + 1
    trip_frame["return"] = trip_frame["pnl"] / trip_frame["entry_value"].where(trip_frame["entry_value"] > 0)
    trip_frame = trip_frame.drop(columns=["open_step", "close_step"])
    order = ["trip", "episode_id", "symbol", "direction", "opened", "closed", "status", "bars", "trades"]
    return trade_frame.reset_index(drop=True), trip_frame[[*order, "entry_value", "pnl", "return"]]


def tear_sheet(
    policy: str,
    steps: pd.DataFrame,
    episodes: Mapping[str, list[str]],
    holdings: pd.DataFrame,
    sectors: Mapping[str, str],
    bars_per_year: int,
) -> TearSheet:
    """The tear sheet of `policy`.

    steps: tt_portfolio rows (episode_id, step, ts, net_worth, period_return) of every policy's episodes;
    episodes: policy -> its episode ids in window order (`policy` and the candidate benchmarks);
    holdings: tt_holdings rows (HOLDING_COLUMNS) of `policy`'s episodes; sectors: symbol -> sector.
    TearSheetError when `policy` has no logged steps."""
    returns = returns_of(steps, list(episodes.get(policy, [])))
    if returns.empty:
        raise TearSheetError(
            f"policy {policy!r}: no logged steps in its episodes {list(episodes.get(policy, []))}"
        )
    stats = return_stats(returns, bars_per_year)
    monthly, yearly = monthly_table(returns)
    drawdowns, drawdown = drawdown_table(returns)
    window = rolling_window(bars_per_year, len(returns))
    import quantstats as qs

    rolling = qs.stats.rolling_volatility(returns, rolling_period=window, periods_per_year=bars_per_year)
    own = steps[steps["episode_id"].isin(episodes[policy])]
    net_worth = pd.Series(own["net_worth"].astype(float).to_numpy(), index=naive_utc(own["ts"])).sort_index()
    exposure, by_sector = exposures(holdings[holdings["value"] != 0], net_worth, sectors)
    candidates = {p: returns_of(steps, list(ids)) for p, ids in episodes.items()}
    benchmark, note = choose_benchmark(policy, candidates, bars_per_year)
    excess = pd.Series(dtype=float)
    stats |= dict.fromkeys(("excess_return", "tracking_error", "information_ratio"), float("nan"))
    if benchmark is not None:
        figures, excess = excess_figures(returns, candidates[benchmark], bars_per_year)
        stats |= figures
    trades, trips = blotter(holdings)
    return TearSheet(
        policy=policy,
        bars_per_year=bars_per_year,
        returns=returns,
        daily=daily(returns),
        stats=stats,
        monthly=monthly,
        yearly=yearly,
        drawdowns=drawdowns,
        drawdown=drawdown,
        rolling_volatility=rolling,
        rolling_bars=window,
        exposure=exposure,
        sectors=by_sector,
        benchmark=benchmark,
        benchmark_note=note,
        excess=excess,
        trades=trades,
        round_trips=trips,
    )
