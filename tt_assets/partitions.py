"""Partitions: symbol (dynamic, fed from the watchlist) x timeframe (static 1d/1h/15m).

Multi-partition keys read `AAPL|1d` (dimensions are ordered by name: symbol, then timeframe). A key range
over them is a rectangle, so `AAPL|1d`..`MSFT|1d` means every symbol from AAPL to MSFT (in the order the
symbols were registered) for 1d.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

SYMBOL_DIM = "symbol"
TIMEFRAME_DIM = "timeframe"

# Partitions handled by one run of a backfill or a schedule tick (one IBKR pacing window is 60 requests).
MAX_PARTITIONS_PER_RUN = 25

symbol_partitions = dg.DynamicPartitionsDefinition(name=SYMBOL_DIM)
# tt_resources.timeframes.TIMEFRAME_NAMES, spelled out because importing that module imports pandas, which
# would double the code location's load time; tests/test_dagster_definitions.py asserts they agree.
TIMEFRAMES: tuple[str, ...] = ("1d", "1h", "15m")

timeframe_partitions = dg.StaticPartitionsDefinition(list(TIMEFRAMES))
bar_partitions = dg.MultiPartitionsDefinition(
    {SYMBOL_DIM: symbol_partitions, TIMEFRAME_DIM: timeframe_partitions}
)
backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)

# training_dataset (timeframe) reads every symbol's partition of its timeframe.
timeframe_of_bars = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=TIMEFRAME_DIM)


def bar_key(symbol: str, timeframe: str) -> str:
    """The multi-partition key string for one symbol and timeframe, e.g. `AAPL|1d`."""
    return f"{symbol}|{timeframe}"


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(symbol, timeframe) of a multi-partition key."""
    if isinstance(key, dg.MultiPartitionKey):
        return key.keys_by_dimension[SYMBOL_DIM], key.keys_by_dimension[TIMEFRAME_DIM]
    symbol, timeframe = key.split("|")
    return symbol, timeframe


def symbol_ranges(
    symbols: Sequence[str], timeframe: str, size: int = MAX_PARTITIONS_PER_RUN
) -> list[dg.PartitionKeyRange]:
    """Chunks of at most `size` consecutive registered symbols for one timeframe, as key ranges.

    `symbols` must be in registration order (as `instance.get_dynamic_partitions` returns them)."""
    return [
        dg.PartitionKeyRange(bar_key(chunk[0], timeframe), bar_key(chunk[-1], timeframe))
        for chunk in (symbols[i : i + size] for i in range(0, len(symbols), size))
    ]


def range_tags(key_range: dg.PartitionKeyRange) -> dict[str, str]:
    """Run tags that make one run materialise a whole key range (how backfills launch multi-partition runs)."""
    return {
        "dagster/asset_partition_range_start": key_range.start,
        "dagster/asset_partition_range_end": key_range.end,
    }
