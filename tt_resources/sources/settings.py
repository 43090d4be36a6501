"""The values a market-data source is built from, filled at the edge (`tt` from the settings and its flags, the
Dagster market_data resource from its fields); below it the sources take them as arguments. Standard library
only at import: the Dagster code location imports it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tt_resources.terms import DateFormat, PacingMode, SourceName

# the synthetic market's clock (TT_SYNTHETIC_END): a fixed day, so the embedded demo sees the same market on any
# day and machine; "now" follows the wall clock
SYNTHETIC_END = "2026-12-01"

# The market_data resource's configuration (tt_assets.resources.MarketDataResource): field -> the
# tt_resources.config.Settings field it is filled from at the edge.
MARKET_DATA_FIELDS = {
    "source": "tt_source",
    "synthetic_signal": "tt_synthetic_signal",
    "synthetic_end": "tt_synthetic_end",
    "csv_dir": "tt_csv_dir",
    "csv_tz": "tt_csv_tz",
    "csv_date_format": "tt_csv_date_format",
    "hole_attempts": "tt_ib_hole_attempts",
    "ib_host": "ib_host",
    "ib_port": "ib_port",
    "ib_client_id": "ib_client_id",
    "ib_client_ids": "ib_client_ids",
    "ib_timeout_s": "ib_timeout_s",
    "ib_reconnect_s": "tt_ib_reconnect_s",
    "ib_pacing": "tt_ib_pacing",
    "ib_max_requests": "tt_ib_max_requests",
    "ib_window_s": "tt_ib_window_s",
    "ib_concurrency": "tt_ib_concurrency",
}


@dataclass(frozen=True)
class IbkrSettings:
    """Connection and retry settings of the IBKR source (seconds)."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_attempts: int = 5  # per request, over timeouts
    pacing_attempts: int = 8  # pacing violations of one request before it fails
    backoff_s: float = (
        2.0  # first backoff after a timeout or a refused connection; doubles up to backoff_max_s
    )
    backoff_max_s: float = 30.0
    reconnect_s: float = 300.0  # keep reconnecting this long to a gateway that went away
    client_id_attempts: int = 8  # client ids tried on (re)connect: client_id, client_id + 1, ...
    what_to_show: str = "TRADES"
    use_rth: bool = True


@dataclass(frozen=True)
class PacingRules:
    """IBKR's historical-data pacing limits (seconds) and the adaptive mode's parameters
    (tt_resources.sources.pacing)."""

    mode: PacingMode = "adaptive"
    max_requests: int = 60  # strict mode: requests in any rolling `window_s`
    window_s: float = 600.0
    identical_s: float = 15.0
    per_contract: int = 5  # requests allowed per contract within per_contract_window_s (the 6th violates)
    per_contract_window_s: float = 2.0
    concurrency: int = 16  # most requests in flight at once (IBKR allows 50)
    backoff_s: float = 2.0  # adaptive: pause after a violation, doubling per violation in a row
    backoff_max_s: float = 60.0
    lease_s: float = 120.0  # a request not reported done frees its in-flight slot after this
    margin_s: float = 0.25  # absorbs network and gateway jitter; negligible against the windows

    @property
    def horizon_s(self) -> float:
        """How far back any rule looks."""
        window = self.window_s if self.mode == "strict" else 0.0
        return max(window, self.identical_s, self.per_contract_window_s) + self.margin_s


@dataclass(frozen=True)
class SourceSettings:
    """Which source and how it is built: the synthetic market's planted `signal`, the CSV directory (required
    for csv), zone of naive times and date order, IBKR's connection and pacing; and how often ingest asks
    again for a span the source did not deliver (`hole_attempts`)."""

    name: SourceName = "synthetic"
    hole_attempts: int = 3
    signal: str = "sign_persistence"
    synthetic_end: str = SYNTHETIC_END
    csv_dir: Path | None = None
    csv_tz: str | None = None
    csv_date_format: DateFormat | None = None
    ibkr: IbkrSettings = field(default_factory=IbkrSettings)
    pacing: PacingRules = field(default_factory=PacingRules)


def ibkr_settings(config: Mapping[str, Any]) -> IbkrSettings:
    """The IB Gateway connection of a MARKET_DATA_FIELDS mapping (host, port, client ids, timeouts): the
    market-data source's and the trading broker's."""
    return IbkrSettings(
        host=config["ib_host"],
        port=config["ib_port"],
        client_id=config["ib_client_id"],
        client_id_attempts=config["ib_client_ids"],
        request_timeout_s=config["ib_timeout_s"],
        reconnect_s=config["ib_reconnect_s"],
    )


def from_config(config: Mapping[str, Any]) -> SourceSettings:
    """SourceSettings from the market_data resource's configuration (a value for each of MARKET_DATA_FIELDS);
    the same mapping whether `tt` runs the pipeline itself or Dagster does."""
    return SourceSettings(
        name=config["source"],
        hole_attempts=config["hole_attempts"],
        signal=config["synthetic_signal"],
        synthetic_end=config["synthetic_end"],
        csv_dir=Path(config["csv_dir"]) if config["csv_dir"] else None,
        csv_tz=config["csv_tz"],
        csv_date_format=config["csv_date_format"],
        ibkr=ibkr_settings(config),
        pacing=PacingRules(
            mode=config["ib_pacing"],
            max_requests=config["ib_max_requests"],
            window_s=config["ib_window_s"],
            concurrency=config["ib_concurrency"],
            lease_s=config["ib_timeout_s"] + 60.0,  # an answer arrives within the timeout or is cancelled
        ),
    )
