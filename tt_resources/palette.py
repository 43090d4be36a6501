"""One colour per policy, shared by every chart of a policy: the dashboard's plotly figures
(tt_dashboard/charts.py) and the evaluation's charts in Dagster's metadata (tt_assets/reporting.py).

Plain data (no plotting import), so the Dagster code location can read it without loading the dashboard.
"""

from tt_resources.terms import AGENT, CASH, EQUAL_WEIGHT, EQUAL_WEIGHT_VOL, ORACLE

POLICY_COLORS: dict[str, str] = {
    AGENT: "#2563eb",
    ORACLE: "#7c3aed",
    EQUAL_WEIGHT: "#f59e0b",
    EQUAL_WEIGHT_VOL: "#10b981",
    CASH: "#9ca3af",
}
# the word for each colour, where a legend is plain text (Dagster's inline chart)
COLOR_NAMES: dict[str, str] = {
    "#2563eb": "blue",
    "#7c3aed": "purple",
    "#f59e0b": "amber",
    "#10b981": "green",
    "#9ca3af": "grey",
}
