"""The dashboard's tear sheet tab: tt_pipeline.tearsheet's tables and tt_pipeline.tearsheet_figures' figures
for the selected policy and episodes, with a filterable trade blotter and its CSV export.

QuantStats takes a few seconds to import the first time in a server, so the tab builds the sheet when asked
(a toggle that stays on for the session); the sheet is then cached until the database changes.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tt_dashboard.formats import NA, bar_time_format, hover_time_format, percent, ratio
from tt_pipeline.tearsheet import STATS
from tt_pipeline.tearsheet_figures import figures
from tt_pipeline.tearsheet_figures import label as policy_label
from tt_resources.terms import POLICY_LABELS
from tt_resources.timeframes import get_timeframe

TOGGLE = "tearsheet"  # session key of the toggle
DOLLARS = "dollar"
ROW_PIXELS = 35  # st.dataframe's row height
TRIP_COLUMNS = [
    *("trip", "symbol", "direction", "opened", "closed", "status", "bars", "trades"),
    *("entry_value", "pnl", "return", "episode"),
]


@st.cache_data(show_spinner=False, max_entries=32)
def _sheet(_data, url: str, token: tuple, policy: str, episodes: tuple, timeframe: str):
    """The tear sheet of `policy` over `episodes` ((policy, episode ids) pairs), cached per database `url`
    and the episodes' own `token` (tt_dashboard.cache: other models' rows leave it cached); `_data` reads them
    (cache.Reports, not hashed)."""
    from tt_pipeline.tearsheet import tear_sheet
    from tt_pipeline.tearsheet_report import watchlist_sectors

    by_policy = {p: list(ids) for p, ids in episodes}
    steps = _data.portfolio_series([e for _, ids in episodes for e in ids])
    holdings = _data.holding_rows(by_policy[policy])
    return tear_sheet(
        policy, steps, by_policy, holdings, watchlist_sectors(), get_timeframe(timeframe).bars_per_year
    )


def panel(data, chosen: pd.DataFrame, focus: str, timeframe: str, names: dict[str, str]) -> None:
    """Tear sheet of `focus` on the `chosen` episodes (policy, episode_id, in window order); the other
    policies of `chosen` are the candidate benchmarks. `data`: the page's cached reports (cache.Reports)."""
    label = POLICY_LABELS.get(focus, focus)
    if not st.toggle(
        f"Build the tear sheet of {label}",
        key=TOGGLE,
        help="Monthly and yearly returns, drawdowns, volatility, VaR/CVaR, exposure by sector, excess return "
        "over the best baseline, round trips and the trade blotter (QuantStats; the first build in a server "
        "loads it, a few seconds).",
    ):
        return
    episodes = tuple((p, tuple(rows["episode_id"])) for p, rows in chosen.groupby("policy", sort=False))
    with st.spinner("Computing the tear sheet…"):
        token = data.version("portfolio_series", [e for _, ids in episodes for e in ids])
        sheet = _sheet(data, data.url, token, focus, episodes, timeframe)
    benchmark = (
        f"benchmark {policy_label(sheet.benchmark)}: {sheet.benchmark_note}"
        if sheet.benchmark
        else f"no benchmark: {sheet.benchmark_note}"
    )
    st.caption(
        f"{label} on {len(chosen[chosen['policy'] == focus])} episode(s), {len(sheet.returns)} bars of net "
        f"returns after costs; figures by QuantStats (daily VaR/CVaR, skew and kurtosis on returns compounded "
        f"per date); {benchmark}."
    )
    left, right = st.columns(2)
    left.subheader("Summary")
    left.dataframe(
        pd.DataFrame(
            {
                "Figure": [s.label for s in STATS],
                "Value": [
                    percent(sheet.stats[s.name]) if s.kind == "percent" else ratio(sheet.stats[s.name])
                    for s in STATS
                ],
            }
        ),
        hide_index=True,
        height=ROW_PIXELS * (len(STATS) + 1) + 3,  # every figure in view
    )
    right.subheader("Worst drawdowns")
    right.dataframe(
        sheet.drawdowns,
        hide_index=True,
        placeholder="not recovered",
        column_config={
            "start": st.column_config.DateColumn("Start"),
            "valley": st.column_config.DateColumn("Valley"),
            "recovery": st.column_config.DateColumn("Recovery"),
            "days": st.column_config.NumberColumn("Length (days)"),
            "max_drawdown": st.column_config.NumberColumn("Max drawdown", format="percent"),
        },
    )
    drawn = figures(sheet)
    hover = hover_time_format(timeframe)
    for key, fig in drawn.items():
        if key not in ("monthly", "yearly"):
            fig.update_xaxes(hoverformat=hover)
    st.plotly_chart(drawn.pop("monthly"), key="ts_monthly")
    keys = list(drawn)
    for pair in range(0, len(keys) - 1, 2):
        cols = st.columns(2)
        for col, key in zip(cols, keys[pair : pair + 2], strict=False):
            col.plotly_chart(drawn[key], key=f"ts_{key}")
    if len(keys) % 2:
        st.plotly_chart(drawn[keys[-1]], key=f"ts_{keys[-1]}")
    blotter(sheet, timeframe, names)


def blotter(sheet, timeframe: str, names: dict[str, str]) -> None:
    """Round trips and every trade, filtered by symbol, side and round-trip status, with a CSV download of
    the trades shown."""
    trips, trades = sheet.round_trips, sheet.trades
    st.subheader(f"Round trips and trade blotter ({len(trades)} trades)")
    if trades.empty:
        st.info("No trades were logged for this selection.")
        return
    left, middle, right = st.columns([3, 1, 1])
    symbols = left.multiselect("Symbols", sorted(trades["symbol"].unique()), key="blotter_symbols")
    sides = middle.multiselect("Side", ["buy", "sell"], key="blotter_sides")
    statuses = right.multiselect("Round trip", ["closed", "open"], key="blotter_status")
    status = trades["trip"].map(trips.set_index("trip")["status"])
    keep = pd.Series(True, index=trades.index)
    for chosen, values in ((symbols, trades["symbol"]), (sides, trades["side"]), (statuses, status)):
        if chosen:
            keep &= values.isin(chosen)
    shown = trades[keep].assign(episode=trades["episode_id"].map(names).fillna(trades["episode_id"]))
    shown_trips = trips[trips["trip"].isin(shown["trip"])]
    closed = shown_trips[shown_trips["status"] == "closed"]
    st.caption(
        f"{len(shown_trips)} round trip(s) shown, {len(closed)} closed: P&L {closed['pnl'].sum():,.2f} USD, "
        f"{(closed['pnl'] > 0).mean():.0%} won; open ones marked at their episode's last bar."
        if len(closed)
        else f"{len(shown_trips)} round trip(s) shown, none closed; open ones marked at their episode's last bar."
    )
    bar_label, bar_format = bar_time_format(timeframe)
    st.dataframe(
        shown_trips.assign(episode=shown_trips["episode_id"].map(names).fillna(shown_trips["episode_id"]))[
            TRIP_COLUMNS
        ],
        hide_index=True,
        placeholder=NA,
        column_config={
            "trip": st.column_config.NumberColumn("#"),
            "symbol": "Symbol",
            "direction": "Side",
            "opened": st.column_config.DatetimeColumn(f"Opened ({bar_label})", format=bar_format),
            "closed": st.column_config.DatetimeColumn(f"Closed ({bar_label})", format=bar_format),
            "status": "Status",
            "bars": st.column_config.NumberColumn("Bars"),
            "trades": st.column_config.NumberColumn("Trades"),
            "entry_value": st.column_config.NumberColumn("Entry value", format=DOLLARS),
            "pnl": st.column_config.NumberColumn("P&L", format=DOLLARS),
            "return": st.column_config.NumberColumn("Return", format="percent"),
            "episode": "Episode",
        },
    )
    columns = [
        "ts",
        "symbol",
        "side",
        "shares",
        "price",
        "trade_value",
        "cost",
        "position",
        "trip",
        "episode",
    ]
    st.dataframe(
        shown[columns],
        hide_index=True,
        placeholder=NA,
        column_config={
            "ts": st.column_config.DatetimeColumn(bar_label, format=bar_format),
            "symbol": "Symbol",
            "side": "Side",
            "shares": st.column_config.NumberColumn("Shares", format="%.2f"),
            "price": st.column_config.NumberColumn("Price", format=DOLLARS),
            "trade_value": st.column_config.NumberColumn("Traded value", format=DOLLARS),
            "cost": st.column_config.NumberColumn("Cost", format=DOLLARS),
            "position": st.column_config.NumberColumn("Shares after", format="%.2f"),
            "trip": st.column_config.NumberColumn("Round trip"),
            "episode": "Episode",
        },
    )
    st.download_button(
        "Download these trades (CSV)",
        shown[columns].to_csv(index=False),
        file_name=f"trades_{sheet.policy}.csv",
        mime="text/csv",
        key="blotter_csv",
    )
