"""How long loading the Dagster code location takes (target: <= 2 s), in fresh interpreters.

Prints and writes bench/results/dagster_load.json: `load_seconds` (median, fresh process: import dagster,
import tt_assets.definitions, validate it), split into `dagster_import_seconds` (the framework alone) and
`definitions_seconds` (our modules + validation), plus the heavy modules found loaded (must be none).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

RUNS = 5
HEAVY = ("tensortrade", "tensorflow", "torch", "stable_baselines3", "numba", "ib_async")

PROBE = f"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import dagster as dg
t1 = time.perf_counter()
import tt_assets.definitions as d
dg.Definitions.validate_loadable(d.defs)
t2 = time.perf_counter()
print(json.dumps({{"dagster": t1 - t0, "definitions": t2 - t1,
                   "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    samples = [probe() for _ in range(RUNS)]
    dagster_s = statistics.median(s["dagster"] for s in samples)
    definitions_s = statistics.median(s["definitions"] for s in samples)
    result = {
        "load_seconds": round(statistics.median(s["dagster"] + s["definitions"] for s in samples), 3),
        "dagster_import_seconds": round(dagster_s, 3),
        "definitions_seconds": round(definitions_s, 3),
        "runs": RUNS,
        "heavy_modules_loaded": sorted({m for s in samples for m in s["heavy"]}),
        "target_seconds": 2.0,
    }
    write_results("dagster_load", result)


if __name__ == "__main__":
    main()
