"""tt demo's walk-forward budget (tt_cli.demo.DemoBudget) on the pinned synthetic market with the planted
signal: PPO's stitched out-of-sample Sharpe ratio, its DSR vs the best baseline and the verdict per budget,
with the wall time of everything after the ingest; then the whole demo's wall time (`tt demo` on a fresh data
directory, as a user runs it) on the planted and on the plain market (TT_SYNTHETIC_SIGNAL=none).

Every budget runs the demo in a child process on its own copy of one ingest, so no budget's trials deflate
another's DSR. Writes bench/results/demo_budget.json (with --budgets or --skip-*, the figures not measured are
kept from the previous file). Wall times depend on the machine's load: run it on a quiet machine.

    .venv/bin/python bench/demo_budget.py                        # every budget, then both demos
    .venv/bin/python bench/demo_budget.py --budgets 2x3x32768x4  # folds x seeds x timesteps x envs
    .venv/bin/python bench/demo_budget.py --skip-budgets         # the throughput and the two demos
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import RESULTS_DIR, write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tt_cli.demo import DEFAULT_SYMBOLS, DEMO_BUDGET, DEMO_TEST_FRACTION, DemoBudget  # noqa: E402

NAME = "demo_budget"
POLL_S = 0.5  # how often run_measured reads the CPU times of a run's processes
TT = ROOT / ".venv" / "bin" / "tt"
# the budgets tried with max(a, 0) action scores, in the order they were measured (folds, seeds, timesteps
# per model, envs, learning rate); docs/rl.md has those measured before, with (a + 1) / 2
BUDGETS = [
    DemoBudget(folds=2, seeds=3, timesteps=65_536, n_envs=4, learning_rate=3e-4),
    DemoBudget(folds=2, seeds=3, timesteps=131_072, n_envs=4, learning_rate=3e-4),
    DemoBudget(folds=2, seeds=3, timesteps=65_536, n_envs=4, learning_rate=1e-3),
    DemoBudget(folds=2, seeds=3, timesteps=131_072, n_envs=4, learning_rate=1e-3),
]
THROUGHPUT_ENVS = (1, 4, 8)
THROUGHPUT_STEPS, THROUGHPUT_ROUNDS = 8_192, 3
DEMO_SECONDS = re.compile(r"took (\d+) s\.")
VERDICT = re.compile(r"^Verdict: .*?(?=\n\S+ Dagster runs)", re.M | re.S)


def label(budget: DemoBudget) -> str:
    return f"{budget.folds}x{budget.seeds}x{budget.timesteps}x{budget.n_envs}@{budget.learning_rate:g}"


def parse_budget(text: str) -> DemoBudget:
    """'FOLDSxSEEDSxSTEPSxENVS@RATE' (as `label` writes it) -> the DemoBudget."""
    sizes, rate = text.split("@")
    folds, seeds, timesteps, n_envs = (int(part) for part in sizes.split("x"))
    return DemoBudget(folds, seeds, timesteps, n_envs, float(rate))


def child(budget: DemoBudget) -> None:
    """Run the demo (refresh, dataset, training, evaluation, dry run) with `budget` in this process's
    TT_DATA_DIR and print its agent row as one JSON line."""
    from rich.console import Console

    from tt_assets.launch import ensure_dagster_home
    from tt_cli.common import universe
    from tt_cli.demo import next_session, run_demo
    from tt_resources.terms import AGENT

    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115  the figures are the JSON line
    started = time.perf_counter()
    ensure_dagster_home()
    summary = run_demo(universe(None, DEFAULT_SYMBOLS), None, console, budget)
    next_session(summary.model_id, console)
    metrics = summary.metrics.set_index("policy")
    agent = metrics.loc[AGENT]
    print(
        json.dumps(
            {
                "ppo_sharpe": round(float(agent["sharpe"]), 2),
                "ppo_seed_sharpe": [
                    round(float(agent[k]), 2) for k in ("sharpe_seed_min", "sharpe_seed_max")
                ],
                "oracle_sharpe": round(float(metrics.loc["oracle", "sharpe"]), 2)
                if "oracle" in metrics.index
                else None,
                "best_baseline": agent["best_baseline"],
                "dsr_vs_best": round(float(agent["dsr_vs_best"]), 3),
                "verdict": agent["verdict"],
                "seconds_after_ingest": round(time.perf_counter() - started),
            }
        )
    )


def run_measured(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run `command`; its output, wall seconds and CPU seconds (user + system) of its whole process tree, polled
    every POLL_S: the step processes of a training run are forked by a server that the demo never waits for,
    so the kernel's child-process accounting (getrusage) would miss them. A process living less than POLL_S
    may be missed."""
    import psutil

    started, seen = time.perf_counter(), {}
    with tempfile.TemporaryFile("w+") as out:
        process = psutil.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        while process.poll() is None:
            for member in [process, *process.children(recursive=True)]:
                try:
                    times = member.cpu_times()
                    seen[member.pid] = times.user + times.system
                except psutil.Error:  # it ended between listing and reading
                    pass
            time.sleep(POLL_S)
        seconds = time.perf_counter() - started
        out.seek(0)
        output = out.read()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, output)
    return output, seconds, sum(seen.values())


def tt_demo(data_dir: Path, signal: str | None) -> tuple[str, float, float]:
    """`tt demo` on `data_dir` (TT_SYNTHETIC_SIGNAL=`signal` when given): its output, wall seconds and CPU
    seconds (every process it started included)."""
    env = {**os.environ, "TT_DATA_DIR": str(data_dir), "COLUMNS": "80"}
    env.pop("DAGSTER_HOME", None)
    if signal is not None:
        env["TT_SYNTHETIC_SIGNAL"] = signal
    return run_measured([str(TT), "demo"], env)


def ingest() -> None:
    """The demo's ingest alone (its refresh of every partition, through Dagster) into TT_DATA_DIR."""
    from rich.console import Console

    from tt_assets.launch import ensure_dagster_home
    from tt_cli.common import market_config, open_database, refresh, universe
    from tt_cli.pipeline import ViaDagster
    from tt_resources.timeframes import TIMEFRAME_NAMES

    ensure_dagster_home()
    pipeline = ViaDagster(open_database(), market_config(), status=Console().status)
    symbols = universe(None, DEFAULT_SYMBOLS)
    refresh(pipeline, Console(file=open(os.devnull, "w")), symbols, list(TIMEFRAME_NAMES))  # noqa: SIM115


def ppo_steps_per_s(n_envs: int) -> float:
    """PPO's training steps per wall second on a 25-symbol synthetic 1d panel with `n_envs` envs collecting
    the demo's ROLLOUT steps per update (the best of THROUGHPUT_ROUNDS runs of THROUGHPUT_STEPS)."""
    import tt_rl.env  # noqa: F401  tensortrade below goes through tt_rl.tensortrade_shell
    from tt_cli.demo import ROLLOUT
    from tt_rl.config import RLConfig
    from tt_rl.panel import panel_from_frames
    from tt_rl.synthetic import synthetic_bars
    from tt_rl.train import train

    symbols = [f"S{i:03d}" for i in range(DEFAULT_SYMBOLS)]
    panel = panel_from_frames("1d", synthetic_bars(symbols, n_bars=560, seed=11))
    config = RLConfig()
    config.ppo.n_envs, config.ppo.n_steps = n_envs, ROLLOUT // n_envs
    config.ppo.total_timesteps, config.ppo.progress_bar = THROUGHPUT_STEPS, False
    best = 0.0
    for _ in range(THROUGHPUT_ROUNDS):
        with tempfile.TemporaryDirectory() as model_dir:
            started = time.perf_counter()
            train(panel, config, model_dir=model_dir)
            best = max(best, THROUGHPUT_STEPS / (time.perf_counter() - started))
    return round(best)


def in_child(data_dir: Path, *args: str) -> tuple[str, float, float]:
    """This script with `args` in a child process on TT_DATA_DIR=`data_dir` (run_measured)."""
    env = {**os.environ, "TT_DATA_DIR": str(data_dir)}
    env.pop("DAGSTER_HOME", None)
    return run_measured([sys.executable, __file__, *args], env)


def run_budget(template: Path, work: Path, budget: DemoBudget) -> dict:
    """The demo with `budget` on a copy of the ingest `template`."""
    data_dir = work / label(budget)
    shutil.copytree(template, data_dir)
    output, _, cpu = in_child(data_dir, "--child", label(budget))
    return {**json.loads(output.strip().splitlines()[-1]), "cpu_seconds_after_ingest": round(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", type=parse_budget, help="FOLDSxSEEDSxSTEPSxENVS@RATE")
    parser.add_argument("--skip-budgets", action="store_true")
    parser.add_argument("--skip-demos", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--child", type=parse_budget, help=argparse.SUPPRESS)
    parser.add_argument("--ingest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest:
        ingest()
        return
    if args.child is not None:
        child(args.child)
        return
    path = RESULTS_DIR / f"{NAME}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    budgets = dict(previous.get("budgets", {}))
    demos = dict(previous.get("demos", {}))
    throughput = dict(previous.get("ppo_steps_per_s_by_envs", {}))
    if not args.skip_throughput:
        for n_envs in THROUGHPUT_ENVS:
            throughput[str(n_envs)] = ppo_steps_per_s(n_envs)
            print(f"PPO steps/s with {n_envs} env(s): {throughput[str(n_envs)]:,}", flush=True)
    with tempfile.TemporaryDirectory(prefix="demo-budget-") as tmp:
        work = Path(tmp)
        if not args.skip_budgets:
            template = work / "ingest"
            in_child(template, "--ingest")
            for budget in args.budgets or BUDGETS:
                budgets[label(budget)] = run_budget(template, work, budget)
                print(label(budget), budgets[label(budget)], flush=True)
        if not args.skip_demos:
            for market, signal in (("planted", None), ("plain", "none")):
                load = os.getloadavg()[0]  # other processes' share of the cores shows in the wall time
                output, seconds, cpu = tt_demo(work / f"demo-{market}", signal)
                print(output, flush=True)  # what a user sees (the README quotes the planted market's)
                verdict = VERDICT.search(output)
                demos[market] = {
                    "wall_seconds": round(seconds),
                    "cpu_seconds": round(cpu),
                    "load_average_before": round(load, 1),
                    "demo_says_seconds": int(DEMO_SECONDS.search(output).group(1)),
                    "verdict": " ".join(verdict.group(0).split()) if verdict else None,
                }
                print(market, demos[market], flush=True)
    write_results(
        NAME,
        {
            "what": "tt demo's walk-forward budget (tt_cli.demo.DemoBudget, key folds x seeds x PPO timesteps "
            "per model x envs @ learning rate; keys without a rate were measured before issue 26's max(a, 0) "
            "action scores, with (a + 1) / 2 at 1e-3) on the pinned synthetic market with the planted sign-persistence signal: PPO's "
            "stitched out-of-sample Sharpe ratio (the seeds' ensemble) beside the oracle's, its DSR vs the best "
            "baseline and the verdict, and the wall seconds of the demo after its ingest (training, evaluation, "
            "the production model and the dry run); then the whole `tt demo` (fresh data directory) on the "
            "planted and the plain market (wall and CPU seconds, the CPU of every process of the run, polled "
            "every 0.5 s); and PPO's training steps per second by envs collecting one "
            f"rollout (25 symbols, best of {THROUGHPUT_ROUNDS} runs of {THROUGHPUT_STEPS:,} steps, one process)",
            "test_fraction": DEMO_TEST_FRACTION,
            "chosen": label(DEMO_BUDGET),
            "machine": f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f}",
            "ppo_steps_per_s_by_envs": throughput,
            "budgets": budgets,
            "demos": demos,
        },
    )


if __name__ == "__main__":
    main()
