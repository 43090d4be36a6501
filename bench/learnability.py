"""Learnability: the default PPO on every planted market (tt_rl.planted) and on pure noise, out-of-sample.

Per kind: the oracle's, PPO's and the baselines' out-of-sample Sharpe after costs, PPO / oracle, the steps
PPO needed to reach half the oracle's Sharpe (learning curve every 10k steps), PPO's probabilistic Sharpe
ratio against cash (Bailey & Lopez de Prado), wall seconds. Targets (issue 15): on every planted kind PPO
reaches >= 50 % of the oracle's Sharpe within 100k steps and beats every baseline; on noise PSR < 0.95.
Writes bench/results/learnability.json. `--steps`, `--kinds`, `--seeds` shrink or widen the run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tt_resources.terms import AGENT, ORACLE, PLANTED_MARKETS  # noqa: E402
from tt_rl.learnability import run_case  # noqa: E402
from tt_rl.significance import probabilistic_sharpe  # noqa: E402

TARGET_RATIO = 0.5
TARGET_PSR_NOISE = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--kinds", nargs="+", choices=PLANTED_MARKETS, default=list(PLANTED_MARKETS))
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per kind (market seed 0)")
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--symbols", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    kinds = {}
    for kind in args.kinds:
        cases = []
        for seed in range(args.seeds):
            case = run_case(kind, n_bars=args.bars, n_symbols=args.symbols, timesteps=args.steps, seed=seed)
            psr = probabilistic_sharpe(case.ppo_returns)
            baselines = {k: v for k, v in case.sharpe.items() if k not in (AGENT, ORACLE)}
            if kind == "noise":
                met = math.isnan(psr) or psr < TARGET_PSR_NOISE
            else:
                met = (
                    case.ratio >= TARGET_RATIO
                    and case.steps_to_half is not None
                    and case.sharpe[AGENT] > max(baselines.values())
                )
            row = {**case.to_dict(), "psr_vs_cash": psr, "target_met": met}
            cases.append(row)
            print(
                f"{kind:17s} seed {seed}: ppo {case.sharpe[AGENT]:+.2f} oracle {case.sharpe[ORACLE]:+.2f} "
                f"best baseline {case.best_baseline} {case.sharpe[case.best_baseline]:+.2f} "
                f"ratio {case.ratio:.2f} half@{case.steps_to_half} psr {psr:.3f} {case.seconds:.0f}s "
                f"{'met' if met else 'MISSED'}",
                flush=True,
            )
        kinds[kind] = cases
    write_results(
        "learnability",
        {
            "steps": args.steps,
            "bars": args.bars,
            "symbols": args.symbols,
            "seeds": args.seeds,
            "targets": {"ppo_over_oracle": TARGET_RATIO, "noise_psr_below": TARGET_PSR_NOISE},
            "kinds": kinds,
            "all_targets_met": all(c["target_met"] for cases in kinds.values() for c in cases),
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
