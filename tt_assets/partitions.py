"""Partitions: symbol (dynamic, fed from the watchlist) x timeframe (static 1d/1h/15m) for the bars, and
training_timeframe (dynamic: the timeframes a model is trained on) for the training assets.

Multi-partition keys read `AAPL|1d` (dimensions are ordered by name: symbol, then timeframe). A key range
over them is a rectangle, so `AAPL|1d`..`MSFT|1d` means every symbol from AAPL to MSFT (in the order the
symbols were registered) for 1d.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

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

# The training assets are partitioned by the timeframes that are trained (registered by whatever launches a
# training: `tt train --via-dagster`, `tt demo`, or "Add partition" in the Launchpad), so a timeframe nobody
# trains is not a missing partition. Dagster maps a multi-partition dimension onto a single-dimension asset
# only when both use the same partitions definition (MultiToSingleDimensionPartitionMapping), which this one
# is not: training_dataset depends on all features partitions, and what it read is its content_version.
TRAINING_DIM = "training_timeframe"
training_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_DIM)


def register_training_timeframe(instance: dg.DagsterInstance, timeframe: str) -> None:
    """Add `timeframe` to the training partitions when it is missing. ValueError (one line) for a string that
    is not a bar timeframe."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"training timeframe {timeframe!r}: not one of {', '.join(TIMEFRAMES)}")
    if not instance.has_dynamic_partition(TRAINING_DIM, timeframe):
        instance.add_dynamic_partitions(TRAINING_DIM, [timeframe])


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
    registered: Sequence[str],
    timeframe: str,
    size: int = MAX_PARTITIONS_PER_RUN,
    wanted: Collection[str] | None = None,
) -> list[dg.PartitionKeyRange]:
    """Key ranges for one timeframe covering exactly `wanted` (default: all) of the `registered` symbols.

    `registered` is every registered symbol in registration order (as `instance.get_dynamic_partitions`
    returns them); a range is a run of consecutive wanted symbols in that order, at most `size` long, so it
    never spans a symbol that was not asked for."""
    runs: list[list[str]] = [[]]
    for symbol in registered:
        if wanted is not None and symbol not in wanted:
            runs.append([])
        elif len(runs[-1]) == size:
            runs.append([symbol])
        else:
            runs[-1].append(symbol)
    return [dg.PartitionKeyRange(bar_key(r[0], timeframe), bar_key(r[-1], timeframe)) for r in runs if r]


def range_tags(key_range: dg.PartitionKeyRange) -> dict[str, str]:
    """Run tags that make one run materialise a whole key range (how backfills launch multi-partition runs)."""
    return {
        "dagster/asset_partition_range_start": key_range.start,
        "dagster/asset_partition_range_end": key_range.end,
    }
