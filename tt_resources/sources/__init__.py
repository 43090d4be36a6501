"""Market-data sources: the protocol (base), the synthetic, CSV/Parquet and IBKR implementations, and the
one place a source is built from its SourceSettings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tt_resources.sources.settings import SourceSettings

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from tt_resources.sources.base import MarketDataSource


def make_source(settings: SourceSettings, engine: sa.Engine | None = None) -> MarketDataSource:
    """A fresh source as `settings` say (the caller closes it). The IBKR source records contracts and requests
    in `engine` and shares its pacing budget there (None: a private budget, no records); ValueError for a csv
    source without a directory."""
    if settings.name == "synthetic":
        from tt_resources.sources.synthetic import SyntheticSource, pinned_clock

        return SyntheticSource(signal=settings.signal, clock=pinned_clock(settings.synthetic_end))
    if settings.name == "csv":
        from tt_resources.sources.csv import CsvSource

        if settings.csv_dir is None:
            raise ValueError("the csv source needs a directory (csv_dir)")
        return CsvSource(settings.csv_dir, tz=settings.csv_tz, date_format=settings.csv_date_format)
    from tt_resources.db.ibkr_records import IbkrRecorder
    from tt_resources.sources.ibkr import IbkrSource
    from tt_resources.sources.pacing import PacingBudget

    return IbkrSource(
        settings.ibkr,
        budget=PacingBudget(engine, settings.pacing),
        recorder=IbkrRecorder(engine) if engine is not None else None,
    )


def market_now(source: str, synthetic_end: str) -> pd.Timestamp:
    """The present (UTC) of the market that source `source` serves, as ingest and the partition checks take it
    (base.source_now): the synthetic market's clock (`synthetic_end`, TT_SYNTHETIC_END: pinned, or the wall
    clock for `now`), else the wall clock."""
    import pandas as pd

    if source == "synthetic":
        from tt_resources.sources.synthetic import pinned_clock

        return pinned_clock(synthetic_end)()
    return pd.Timestamp.now(tz="UTC")
