"""Where every benchmark puts its figures: bench/results/<name>.json, also printed."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, result: dict) -> Path:
    """Write `result` as bench/results/<name>.json (indented) and print it; returns the path."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(path.read_text(), end="")
    return path
