"""The Live tab: the 1d champion trading against its own backtest (docs/trading.md).

Live equity beside the shadow backtest (tt_pipeline.trading.live: each session's backtest step from the live
book, compounded) and two baselines over the same sessions from the stored closes: equal weight (buy 1/N of
the champion's symbols at the close before the first live session, then hold; no costs) and cash. Then the
per-session record, the orders with their fills and slippage against the session's open, the book against
the target it traded to, the orders a pre-trade limit blocked, and the champion's promotion record.
Every figure is read from the trading tables through tt_dashboard.cache (keyed on reports.trading_token).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from tt_dashboard.formats import NA, percent_column, usd
from tt_resources.calendar import nyse, session_open
from tt_resources.palette import POLICY_COLORS
from tt_resources.terms import CASH, EQUAL_WEIGHT, POLICY_LABELS

LIVE, SHADOW = "Live", "Shadow backtest"
LIVE_COLOR, SHADOW_COLOR = "#dc2626", "#2563eb"
SESSIONS_SHOWN = 20  # sessions of orders and blocked orders listed


def _table(frame: pd.DataFrame, columns: dict[str, tuple[str, object]]) -> None:
    """`frame`'s `columns` (name -> (label, column config or None)) as a table under their labels."""
    shown = frame[list(columns)].rename(columns={k: label for k, (label, _) in columns.items()})
    config = {label: cfg for label, cfg in columns.values() if cfg is not None}
    st.dataframe(shown, hide_index=True, placeholder=NA, column_config=config)


def baselines(closes: pd.DataFrame, start: float) -> pd.DataFrame:
    """Equity per session of the baselines from `start` at the first row's close: equal weight (1/N of each
    column bought at the first close, held; no costs) and cash. `closes`: index session, one column per
    symbol. Columns: session, equal_weight, cash."""
    growth = closes.div(closes.iloc[0]).mean(axis=1)
    return pd.DataFrame({"session": closes.index, EQUAL_WEIGHT: start * growth.to_numpy(), CASH: start})


def equity_figure(perf: pd.DataFrame, base: pd.DataFrame) -> go.Figure:
    """Live and shadow equity per session (`perf`: session, live_equity, shadow_equity; the first point is
    the net liquidation before the first session), with the baselines `base`."""
    fig = go.Figure()
    for column, name, color in (("live_equity", LIVE, LIVE_COLOR), ("shadow_equity", SHADOW, SHADOW_COLOR)):
        fig.add_trace(
            go.Scatter(
                x=perf["session"],
                y=perf[column],
                name=name,
                mode="lines+markers",
                line={"color": color, "width": 2.5},
            )
        )
    for policy in (EQUAL_WEIGHT, CASH):
        if policy in base:
            fig.add_trace(
                go.Scatter(
                    x=base["session"],
                    y=base[policy],
                    name=POLICY_LABELS[policy],
                    mode="lines",
                    line={"color": POLICY_COLORS[policy], "width": 1.5, "dash": "dot"},
                )
            )
    fig.update_layout(
        title="Live equity against the shadow backtest",
        height=340,
        hovermode="x unified",
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.15},
        yaxis={"tickprefix": "$", "tickformat": ",.0f", "hoverformat": ",.2f"},
    )
    return fig


def tracking_figure(perf: pd.DataFrame, limit: float) -> go.Figure:
    """Tracking error |live - shadow return| per session, with the sensor's limit."""
    fig = go.Figure(
        go.Bar(
            x=perf["session"], y=perf["tracking_error"], name="Tracking error", marker={"color": SHADOW_COLOR}
        )
    )
    fig.add_hline(
        y=limit, line={"color": LIVE_COLOR, "dash": "dash"}, annotation_text="TT_TRADING_MAX_TRACKING_ERROR"
    )
    fig.update_layout(
        title="Tracking error per session",
        height=260,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        yaxis={"tickformat": ".2%", "hoverformat": ".3%"},
    )
    return fig


def _with_start(perf: pd.DataFrame) -> pd.DataFrame:
    """`perf` with a first point: both curves at the net liquidation before the first session."""
    first = perf.iloc[0]
    before = first["live_equity"] / (1.0 + first["live_return"])
    previous = nyse().previous_session(pd.Timestamp(first["session"])).date()
    start = pd.DataFrame({"session": [previous], "live_equity": [before], "shadow_equity": [before]})
    return pd.concat([start, perf[["session", "live_equity", "shadow_equity"]]], ignore_index=True)


def panel(data, max_tracking_error: float) -> None:
    """The Live tab of the page (`data`: tt_dashboard.cache.Reports)."""
    record = data.promotion_history()
    champion = record.iloc[0] if len(record) and record.iloc[0]["action"] == "promote" else None
    st.subheader("Champion")
    if champion is None:
        st.info("No 1d champion: `tt promote MODEL_ID` promotes a production model whose verdict allows it.")
    else:
        forced = " (forced)" if champion["forced"] else ""
        st.markdown(
            f"**{champion['model_id']}**{forced} since {pd.Timestamp(champion['at']):%Y-%m-%d %H:%M} UTC, "
            f"by {champion['who']}: {champion['reason'] or 'no reason given'}"
        )
        if champion["verdict"]:
            st.caption(champion["verdict"])
    perf = data.live_performance()
    if champion is not None and (perf["model_id"] == champion["model_id"]).any():
        model = champion["model_id"]
    else:
        model = perf["model_id"].iloc[-1] if len(perf) else None
    if model is None:
        st.info(
            "No live session recorded yet: the trading schedules (or `tt trade`) record each session "
            "against its shadow backtest."
        )
    else:
        perf = perf[perf["model_id"] == model].reset_index(drop=True)
        curve = _with_start(perf)
        symbols = data.traded_symbols(model)
        first, last = curve["session"].iloc[0], curve["session"].iloc[-1]
        closes = data.session_closes(symbols, session_open(first), session_open(last) + pd.Timedelta(hours=1))
        closes.index = [pd.Timestamp(ts).tz_convert("America/New_York").date() for ts in closes.index]
        base = (
            baselines(closes.dropna(), float(curve["live_equity"].iloc[0])) if len(closes) else pd.DataFrame()
        )
        st.plotly_chart(equity_figure(curve, base), key="live_equity")
        st.plotly_chart(tracking_figure(perf, max_tracking_error), key="live_tracking")
        st.subheader(f"Sessions of {model}")
        _table(
            perf.sort_values("session", ascending=False),
            {
                "session": ("Session", None),
                "live_return": ("Live return", percent_column("Live return")),
                "shadow_return": ("Shadow return", percent_column("Shadow return")),
                "tracking_error": ("Tracking error", percent_column("Tracking error")),
                "slippage_bps": (
                    "Slippage (bps)",
                    st.column_config.NumberColumn("Slippage (bps)", format="%.1f"),
                ),
                "costs": ("Commissions", st.column_config.NumberColumn("Commissions", format="dollar")),
                "shadow_costs": (
                    "Shadow costs",
                    st.column_config.NumberColumn("Shadow costs", format="dollar"),
                ),
                "missed_fills": ("Missed fills", None),
                "live_equity": ("Live equity", st.column_config.NumberColumn("Live equity", format="dollar")),
            },
        )
    st.subheader("Orders and fills")
    orders = data.trading_orders(SESSIONS_SHOWN)
    if orders.empty:
        st.caption("No orders yet.")
    else:
        _table(
            orders.assign(messages=orders["messages"].map(lambda m: "; ".join(m or []))),
            {
                "session": ("Session", None),
                "symbol": ("Symbol", None),
                "quantity": ("Shares", None),
                "state": ("State", None),
                "filled": ("Filled", None),
                "reference_price": ("Sized at", st.column_config.NumberColumn("Sized at", format="%.2f")),
                "open": ("Open", st.column_config.NumberColumn("Open", format="%.2f")),
                "avg_fill_price": ("Fill price", st.column_config.NumberColumn("Fill price", format="%.2f")),
                "slippage_bps": (
                    "Slippage (bps)",
                    st.column_config.NumberColumn("Slippage (bps)", format="%.1f"),
                ),
                "commission": ("Commission", st.column_config.NumberColumn("Commission", format="dollar")),
                "messages": ("Broker messages", None),
            },
        )
    st.subheader("Positions against targets")
    book = data.positions_and_targets()
    if book.empty:
        st.caption("No reconciled positions yet.")
    else:
        session = book["session"].iloc[0]
        nlv = book.loc[book["symbol"] == "$NETLIQ", "value"]
        st.caption(
            f"Book of {session}" + (f": net liquidation {usd(float(nlv.iloc[0]))}" if len(nlv) else "")
        )
        shown = book[~book["symbol"].isin(["$NETLIQ"])].assign(
            difference=lambda f: f["weight"].fillna(0.0) - f["target"].fillna(0.0)
        )
        _table(
            shown,
            {
                "symbol": ("Symbol", None),
                "shares": ("Held", None),
                "price": ("Close", st.column_config.NumberColumn("Close", format="%.2f")),
                "value": ("Value", st.column_config.NumberColumn("Value", format="dollar")),
                "weight": ("Weight", percent_column("Weight")),
                "target": ("Target", percent_column("Target")),
                "difference": ("Weight - target", percent_column("Weight - target")),
            },
        )
    st.subheader("Limits hit")
    blocked = data.limits_hit(SESSIONS_SHOWN)
    if blocked.empty:
        st.caption("No order was blocked by a pre-trade limit.")
    else:
        _table(
            blocked,
            {
                "session": ("Blocked session", None),
                "symbol": ("Symbol", None),
                "quantity": ("Shares", None),
                "notional": ("Notional", st.column_config.NumberColumn("Notional", format="dollar")),
                "breach": ("Breach", None),
            },
        )
    st.subheader("Promotion record")
    if record.empty:
        st.caption("No promotion yet.")
    else:
        _table(
            record,
            {
                "at": ("At (UTC)", None),
                "action": ("Action", None),
                "model_id": ("Champion", None),
                "previous_model_id": ("Previous", None),
                "forced": ("Forced", None),
                "who": ("Who", None),
                "reason": ("Reason", None),
            },
        )
