"""The evaluation's Dagster metadata in people's units: formatted metric cells, one policy vocabulary, an
equity chart short enough for the UI to render inline, the dashboard link."""

from __future__ import annotations

import re
from urllib.parse import unquote

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tt_assets.reporting import (
    INLINE_MARKDOWN_LIMIT,
    dashboard_link,
    dashboard_view,
    equity_figure,
    equity_sketch_md,
    metric_text,
    metrics_table,
    policy_label,
    summary_table,
    typed,
)
from tt_dashboard import charts
from tt_resources.palette import COLOR_NAMES, POLICY_COLORS
from tt_resources.terms import POLICY_LABELS

NAN = float("nan")


def stitched_row(policy: str, **values: float) -> dict:
    base = dict(policy=policy, fold=-1, seed=-1, total_return=0.3018100545268789, cagr=0.1, sharpe=1.2345)
    base.update(sortino=2.0, max_drawdown=0.125, turnover=0.01, costs=0.0021, psr=0.8712, dsr=NAN)
    base.update(sharpe_ci_low=0.4, sharpe_ci_high=2.04)
    return base | values


def equity_curves(columns: list[str], bars: int = 500, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2025-01-01", periods=bars, freq="D", tz="UTC")
    return pd.DataFrame(
        {c: 100_000 * np.cumprod(1 + rng.normal(4e-4, 0.01, bars)) for c in columns}, index=index
    ).assign(cash=100_000.0)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("total_return", 0.3018100545268789, "30.2 %"),
        ("max_drawdown", 0.125, "12.5 %"),
        ("costs", 0.0021, "0.2 %"),
        ("sharpe", 1.2345, "1.23"),
        ("psr", 0.8712, "87.1 %"),
        ("dsr", NAN, "n/a"),
        ("sortino", None, "n/a"),
        ("calmar", float("inf"), "n/a"),
    ],
)
def test_metric_cells_read_as_percent_ratio_probability_or_na(name, value, text):
    assert metric_text(name, value) == text


def test_metrics_table_rows_are_labelled_policies_agent_first_with_the_sharpe_interval():
    summary = summary_table(
        pd.DataFrame(
            [
                stitched_row("cash", sharpe=NAN, sharpe_ci_low=NAN),
                stitched_row("ppo"),
                stitched_row("ppo", fold=0),  # a single fold's row is not in the summary
                stitched_row("equal_weight"),
            ]
        )
    )
    table = metrics_table(summary)
    rows = [r.data for r in table.records]
    assert [r["Policy"] for r in rows] == ["PPO agent", "Equal weight (buy & hold)", "Cash"]
    assert rows[0] == {
        "Policy": "PPO agent",
        "Total return": "30.2 %",
        "CAGR": "10.0 %",
        "Sharpe": "1.23",
        "Sortino": "2.00",
        "Max drawdown": "12.5 %",
        "Turnover / bar": "1.0 %",
        "Costs / capital": "0.2 %",
        "PSR vs cash": "87.1 %",
        "DSR vs cash": "n/a",
        "Sharpe 95 % interval (time)": "[0.40, 2.04]",
    }
    assert (rows[2]["Sharpe"], rows[2]["Sharpe 95 % interval (time)"]) == ("n/a", "n/a")
    assert [c.name for c in table.schema.columns] == list(rows[0])


def test_seed_curves_are_named_in_the_tables_vocabulary():
    assert policy_label("ppo s1") == "PPO agent, seed 1"
    assert policy_label("equal_weight_vol") == POLICY_LABELS["equal_weight_vol"]


@pytest.mark.parametrize(
    ("policies", "bars", "seed"),
    [
        (["ppo s0", "ppo s1", "equal_weight"], 500, 7),
        ([*POLICY_LABELS][:-1], 500, 7),
        # the demo's: 3 seeds, every baseline and the oracle over 376 sessions (raised "does not fit" at 8 points)
        (["ppo s0", "ppo s1", "ppo s2", "oracle", "equal_weight", "equal_weight_vol"], 376, 3),
    ],
)
def test_equity_sketch_fits_the_inline_limit_and_its_legend_names_every_policy(policies, bars, seed):
    equity = equity_curves(policies, bars, seed)
    markdown = equity_sketch_md(equity)
    assert len(markdown) < INLINE_MARKDOWN_LIMIT
    image, legend = markdown.split("\n\n")
    svg = unquote(re.fullmatch(r"!\[[^]]*\]\(data:image/svg\+xml,([^)\s]+)\)", image).group(1))
    drawn = {p for p in POLICY_LABELS if p in policies or f"{p} s0" in policies} | {"cash"}
    strokes = re.findall(r"<path stroke='(#\w+)' d='M", svg)
    # the axes, then one curve per policy in the dashboard's colour, named by that colour in the legend
    assert strokes[1:] == [
        POLICY_COLORS[p] for p in [*dict.fromkeys(c.partition(" s")[0] for c in policies), "cash"]
    ]
    assert all(f"{COLOR_NAMES[POLICY_COLORS[p]]}: {POLICY_LABELS[p]} " in legend for p in drawn)
    assert "seed" not in legend  # the agent's seeds are averaged, as in the table
    # the bottom axis carries the first and the last date, the left one the net-worth range
    texts = re.findall(r"<text [^>]*>([^<]+)</text>", svg)
    assert (
        texts[2:] == [f"{equity.index[0]:%Y-%m-%d}", f"{equity.index[-1]:%Y-%m-%d}"]
        and texts[0].endswith("k")
        and texts[1].endswith("k")
    )


def test_the_detailed_chart_has_dates_and_the_dashboards_colours():
    import matplotlib.pyplot as plt

    fig = equity_figure(equity_curves(["ppo s0", "ppo s1", "equal_weight"]), "1d")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    plt.close(fig)
    assert {label: line.get_color() for label, line in lines.items()} == {
        "PPO agent, seed 0": charts.POLICY_COLORS["ppo"],
        "PPO agent, seed 1": charts.POLICY_COLORS["ppo"],
        "Equal weight (buy & hold)": charts.POLICY_COLORS["equal_weight"],
        "Cash": charts.POLICY_COLORS["cash"],
    }
    assert lines["PPO agent, seed 0"].get_linestyle() != lines["PPO agent, seed 1"].get_linestyle()
    assert isinstance(lines["Cash"].get_xdata()[0], pd.Timestamp)  # drawn against dates


def test_the_dashboard_link_follows_the_settings_and_a_model_view_is_relative_to_it(monkeypatch):
    monkeypatch.setenv("TT_DASHBOARD_URL", "http://dash.example:8501/")
    assert (
        dashboard_link().url + dashboard_view("1d-wf-abc123")
        == "http://dash.example:8501/?model=1d-wf-abc123"
    )
    monkeypatch.setenv("TT_DASHBOARD_URL", "http://other.example:9000")
    assert dashboard_link().url == "http://other.example:9000/"
    assert dashboard_view("a b/c") == "?model=a%20b%2Fc"


def test_typed_metadata_has_timestamps_and_leaves_absent_values_out():
    last = pd.Timestamp("2026-11-20 21:00", tz="UTC")
    metadata = typed(
        {"last_ts": last, "first_ts": pd.NaT, "reason": None, "coverage_pct": NAN, "requests": 3}
    )
    assert metadata == {"last_ts": dg.MetadataValue.timestamp(last), "requests": 3}
    assert metadata["last_ts"].value == last.timestamp()
