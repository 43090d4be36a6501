"""What every asset definition shares: its owner, and when the bars are refreshed (the schedules' cron times)
with the freshness policy that follows from it.

Dagster evaluates a freshness policy per asset, not per partition (its freshness daemon, on by default,
records PASS/FAIL from the asset's latest materialisation of any partition). The intraday schedule is the
most frequent refresh of raw_bars and features, so their policy expects a materialisation between its tick
(hh:05 New York, 10:05 to 16:05 on weekdays) and FRESHNESS_GRACE later; the daily schedule's 16:15 tick falls
inside the last window of the day. Outside market hours and over the weekend the last window stays the
reference, so the assets stay fresh until the next session's first deadline (10:35).
"""

from datetime import timedelta

import dagster as dg

# Dagster owners are e-mail addresses or `team:<name>`; one team owns the platform's assets.
OWNERS = ["team:tt-platform"]

US_EASTERN = "America/New_York"
DAILY_BARS_CRON = "15 16 * * 1-5"  # 15 minutes after the US close
INTRADAY_BARS_CRON = "5 10-16 * * 1-5"  # every hour in market hours
FRESHNESS_GRACE = timedelta(minutes=30)  # a tick's runs materialise their first partition within this
# INTRADAY_BARS_CRON shifted by FRESHNESS_GRACE (tests/test_dagster_definitions.py checks the shift)
BARS_DEADLINE_CRON = "35 10-16 * * 1-5"

bars_freshness = dg.FreshnessPolicy.cron(
    deadline_cron=BARS_DEADLINE_CRON, lower_bound_delta=FRESHNESS_GRACE, timezone=US_EASTERN
)
