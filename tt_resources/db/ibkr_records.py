"""What the IBKR source records: qualified contracts with their head timestamps (tt_contracts) and every
request it sent (tt_fetch_log)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import sqlalchemy as sa

from tt_resources.db.bulk import insert_frame, upsert_frame
from tt_resources.db.schema import contracts, fetch_log


class IbkrRecorder:
    """tt_contracts and tt_fetch_log on `engine` (thread-safe: each call is its own transaction)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def contract(self, symbol: str) -> Mapping | None:
        """The stored tt_contracts row of `symbol` (columns as in the table), or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(contracts).where(contracts.c.symbol == symbol)).mappings().first()

    def save_contract(self, record: Mapping) -> None:
        """Insert or replace `symbol`'s contract (a tt_contracts row without head_ts)."""
        upsert_frame(self.engine, contracts, pd.DataFrame([record]), ["symbol"])

    def save_head(self, symbol: str, head: pd.Timestamp) -> None:
        """Store the earliest bar IBKR has for the (already saved) contract of `symbol`."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(contracts).where(contracts.c.symbol == symbol).values(head_ts=head))

    def log_requests(self, rows: list[Mapping]) -> None:
        """Append tt_fetch_log rows (one transaction); nothing for no rows."""
        if rows:
            frame = pd.DataFrame(rows)
            frame["error_code"] = frame["error_code"].astype("Int64")
            insert_frame(self.engine, fetch_log, frame)
