"""False-positive rate of the verdict: how often "skill" is printed on markets where there is none.

On `--markets` null markets of each null kind (tt_rl.planted.NULL_KINDS: noise, and beta, a market drifting
with a Sharpe of about 1 that nothing predicts), each with its own market seed, PPO trains briefly
(`--steps`) on the first 70 % of the bars and is scored on the rest like tt_rl.learnability.run_case: the verdict
of tt_rl.significance.assess against the baseline best on the training bars (DSR of the excess returns
>= 0.95: "skill"). Prints one line per market and the rate with its Wilson 95 % interval (Wilson 1927: with 20
markets and none positive, the interval still reaches 16 %). Target (issue 26): at most 5 % "skill".
Writes bench/results/significance.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import NormalDist

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tt_resources.terms import AGENT  # noqa: E402
from tt_rl.learnability import run_case  # noqa: E402
from tt_rl.planted import NULL_KINDS  # noqa: E402

TARGET_RATE = 0.05


def wilson_interval(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion hits / n (Wilson 1927)."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run(kind: str, seed: int, args: argparse.Namespace) -> dict:
    """One null market's verdict as its results.json row, printed when done."""
    case = run_case(kind, n_bars=args.bars, timesteps=args.steps, seed=seed, eval_every=None)
    print(
        f"{kind:5s} market {seed}: ppo {case.sharpe[AGENT]:+.2f} best on training {case.best_on_training} "
        f"{case.sharpe[case.best_on_training]:+.2f} dsr vs best {case.dsr_vs_best:.3f} "
        f"{'SKILL' if case.skill else 'no skill'} {case.seconds:.0f}s | {case.verdict}",
        flush=True,
    )
    return {
        "kind": kind,
        "market_seed": seed,
        "sharpe": case.sharpe,
        "best_on_training": case.best_on_training,
        "psr_vs_cash": case.psr,
        "dsr_vs_best": case.dsr_vs_best,
        "skill": case.skill,
        "verdict": case.verdict,
        "seconds": case.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 20 markets of each null kind: with none positive, the Wilson interval reaches 8.8 % (16 % with 10)
    parser.add_argument("--markets", type=int, default=20, help="market seeds per null kind")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--bars", type=int, default=2000, help="bars per market (the first 70 %% train)")
    parser.add_argument(
        "--first-seed", type=int, default=100, help="market seeds first-seed, first-seed + 1, ..."
    )
    parser.add_argument("--jobs", type=int, default=1, help="markets run at once, each in its own process")
    args = parser.parse_args()
    started = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.markets)
    kinds = [kind for kind in NULL_KINDS for _ in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        cases = list(pool.map(run, kinds, [*seeds] * len(NULL_KINDS), [args] * len(kinds)))
    hits = sum(c["skill"] for c in cases)
    low, high = wilson_interval(hits, len(cases))
    rate = hits / len(cases)
    print(
        f"false positives: {hits} of {len(cases)} null markets = {rate:.1%} (Wilson 95 % {low:.1%}..{high:.1%})"
    )
    write_results(
        "significance",
        {
            "steps": args.steps,
            "bars": args.bars,
            "markets_per_kind": args.markets,
            "jobs": args.jobs,
            "kinds": list(NULL_KINDS),
            "target_rate": TARGET_RATE,
            "skill_verdicts": hits,
            "markets": len(cases),
            "false_positive_rate": rate,
            "rate_interval_95": [low, high],
            "target_met": rate <= TARGET_RATE,
            "cases": cases,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
