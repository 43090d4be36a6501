"""What importing the RL env costs a fresh process, and that TensorFlow stays out of it.

Prints and writes bench/results/env_import.json: median CPU seconds (user + sys, `time.process_time`) of
`import tt_rl.env` in a fresh interpreter (`env_import_cpu_seconds`), whether tensorflow was loaded, the
same with TensorFlow imported as tensortrade's agents would (`with_tensorflow_cpu_seconds`), and
`import dagster, tt_rl.env` with the installed bytecode and with none (an empty `-X pycache_prefix`, as every
process paid before `make setup` compiled the environment: PYTHONDONTWRITEBYTECODE is set here).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

RUNS = 3


def probe(imports: str, *flags: str) -> dict:
    """CPU seconds of `imports` in a fresh interpreter, and whether tensorflow got loaded."""
    code = (
        "import json, sys, time, warnings\nwarnings.simplefilter('ignore')\n"
        f"t0 = time.process_time()\n{imports}\n"
        "print(json.dumps({'cpu': time.process_time() - t0, 'tensorflow': 'tensorflow' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, *flags, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_cpu(imports: str, *flags: str) -> tuple[float, bool]:
    samples = [probe(imports, *flags) for _ in range(RUNS)]
    return round(statistics.median(s["cpu"] for s in samples), 2), any(s["tensorflow"] for s in samples)


def main() -> None:
    env_cpu, tensorflow = median_cpu("import tt_rl.env")
    with_tf_cpu, _ = median_cpu("import tensorflow\nimport tt_rl.env")
    compiled_cpu, _ = median_cpu("import dagster, tt_rl.env")
    with tempfile.TemporaryDirectory() as empty:
        source_cpu, _ = median_cpu("import dagster, tt_rl.env", "-X", f"pycache_prefix={empty}")
    write_results(
        "env_import",
        {
            "env_import_cpu_seconds": env_cpu,
            "tensorflow_loaded": tensorflow,
            "with_tensorflow_cpu_seconds": with_tf_cpu,
            "dagster_and_env_cpu_seconds_compiled": compiled_cpu,
            "dagster_and_env_cpu_seconds_from_source": source_cpu,
            "runs": RUNS,
        },
    )


if __name__ == "__main__":
    main()
