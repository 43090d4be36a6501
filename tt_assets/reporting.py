"""Evaluation presentation for the Dagster UI: the metrics summary table and an equity-curve image."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from tt_resources.terms import AGENT, SIGNIFICANCE_NAMES, SUMMARY_METRICS

if TYPE_CHECKING:
    import pandas as pd


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample metrics stitched over the folds and averaged over the seeds (fold -1, seed -1) with the
    significance columns, one row per policy, PPO first."""
    wanted = (*SUMMARY_METRICS, *SIGNIFICANCE_NAMES)
    columns = ["policy", *(c for c in wanted if c in metrics.columns)]
    stitched = metrics.loc[(metrics["fold"] == -1) & (metrics["seed"] == -1), columns]
    rank = stitched["policy"].ne(AGENT)
    return (
        stitched.assign(_rank=rank)
        .sort_values(["_rank", "policy"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def equity_chart_md(equity: pd.DataFrame, title: str) -> str:
    """Markdown image (PNG, base64 data URI) of equity curves: index ts, one column per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    equity.plot(ax=ax, linewidth=1)
    ax.set_title(title)
    ax.set_ylabel("net worth")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
