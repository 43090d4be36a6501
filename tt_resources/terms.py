"""Shared terms of the platform, defined once and imported everywhere (no dependencies beyond pandas).

- `utc`: the one conversion of an instant to a UTC timestamp (naive input means UTC).
"""

from __future__ import annotations

import pandas as pd


def utc(value) -> pd.Timestamp | None:
    """`value` (str, datetime, Timestamp, None) as a tz-aware UTC Timestamp; naive input is taken as UTC,
    None and NaT give None."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
