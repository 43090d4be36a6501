"""Learnability: the default PPO on every planted market (tt_rl.planted) and on pure noise, out-of-sample.

Per kind: the oracle's, PPO's and the baselines' out-of-sample Sharpe after costs, PPO / oracle, the steps
PPO needed to reach half the oracle's Sharpe (learning curve every 10k steps), PPO's probabilistic Sharpe
ratio against cash, the DSR of its excess returns over the baseline best on the training bars and the
verdict line (tt_rl.significance), wall seconds. Targets (issues 15, 26): on every planted kind PPO
reaches >= 50 % of the oracle's Sharpe within the default PPO budget (ppo.total_timesteps), beats every
baseline and gets the skill verdict; on the null kinds (noise, beta) no skill verdict. Writes
bench/results/learnability.json. `--steps`, `--kinds`, `--seeds` shrink or widen the run; `--jobs` runs
cases in parallel processes (their wall seconds then share the cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tt_resources.terms import AGENT, ORACLE, PLANTED_MARKETS  # noqa: E402
from tt_rl.config import RLConfig  # noqa: E402
from tt_rl.learnability import run_case  # noqa: E402
from tt_rl.planted import NULL_KINDS  # noqa: E402

TARGET_RATIO = 0.5


def run(kind: str, seed: int, args: argparse.Namespace) -> dict:
    """One case of the suite as its results.json row (target_met included), printed when done."""
    case = run_case(
        kind, n_bars=args.bars, n_symbols=args.symbols, timesteps=args.steps, seed=seed, market_seed=0
    )
    baselines = {k: v for k, v in case.sharpe.items() if k not in (AGENT, ORACLE)}
    if kind in NULL_KINDS:
        met = not case.skill
    else:
        met = (
            case.ratio >= TARGET_RATIO
            and case.steps_to_half is not None
            and case.sharpe[AGENT] > max(baselines.values())
            and case.skill
        )
    print(
        f"{kind:16s} seed {seed}: ppo {case.sharpe[AGENT]:+.2f} oracle {case.sharpe[ORACLE]:+.2f} "
        f"best baseline {case.best_baseline} {case.sharpe[case.best_baseline]:+.2f} "
        f"ratio {case.ratio:.2f} half@{case.steps_to_half} psr {case.psr:.3f} "
        f"dsr vs {case.best_on_training} {case.dsr_vs_best:.3f} {case.seconds:.0f}s "
        f"{'met' if met else 'MISSED'}\n    {case.verdict}",
        flush=True,
    )
    return {**case.to_dict(), "target_met": met}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=RLConfig().ppo.total_timesteps, help="PPO steps per case"
    )
    parser.add_argument("--kinds", nargs="+", choices=PLANTED_MARKETS, default=list(PLANTED_MARKETS))
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per kind (market seed 0)")
    # 6,000 bars: about a year of the product's 15m bars (~6,500; 2 years of 1h ~3,500), and a test span (1,800
    # bars) on which every oracle's skill verdict is clear (docs/rl.md, "Learnability suite")
    parser.add_argument("--bars", type=int, default=6000, help="bars per market (the first 70 %% train)")
    parser.add_argument("--symbols", type=int, default=None, help="assets per market (default: the kind's)")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once, each in its own process")
    args = parser.parse_args()
    started = time.perf_counter()
    kinds = [kind for kind in args.kinds for _ in range(args.seeds)]
    seeds = [seed for _ in args.kinds for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run, kinds, seeds, [args] * len(kinds)))
    write_results(
        "learnability",
        {
            "steps": args.steps,
            "bars": args.bars,
            "seeds": args.seeds,
            "jobs": args.jobs,
            "targets": {
                "ppo_over_oracle": TARGET_RATIO,
                "planted": "ratio >= ppo_over_oracle, half the oracle reached, above every baseline, skill verdict",
                "null": "no skill verdict (" + ", ".join(NULL_KINDS) + ")",
            },
            "kinds": {kind: [row for row in rows if row["kind"] == kind] for kind in args.kinds},
            "all_targets_met": all(row["target_met"] for row in rows),
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
