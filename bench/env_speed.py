"""Environment speed: TensorTrade's stock env vs the project's env, step-time growth, memory, PPO throughput.

Random actions, same synthetic data for both. Writes bench/results/env_speed.json. Steps/s are wall-clock,
best of several repetitions (the machine is shared; best-of filters out other processes' bursts).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import sqlalchemy as sa
from report import write_results  # bench/report.py (scripts run with bench/ on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tt_rl.env  # noqa: E402, F401  tensortrade below goes through tt_rl.tensortrade_shell
from tt_rl.config import RLConfig  # noqa: E402
from tt_rl.panel import Panel, panel_from_frames  # noqa: E402
from tt_rl.synthetic import synthetic_bars  # noqa: E402

PG_ADMIN_URL = os.environ.get("TT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LOG_FLUSH_EVERY = 1024  # the logging config's default
# steps per logged run: long enough that the end-of-run drain (up to the 4 jobs in flight the writer may lag,
# ~15 ms each) is not mistaken for per-step cost (it was ~25 points of a 8,192-step run at 16 us/step)
LOGGED_STEPS = 32_768


def make_panel(n_symbols: int, n_bars: int) -> Panel:
    return panel_from_frames(
        "1d", synthetic_bars([f"S{i:03d}" for i in range(n_symbols)], n_bars=n_bars, seed=11)
    )


def bench_config() -> RLConfig:
    cfg = RLConfig()
    cfg.env.max_episode_steps = None
    cfg.env.random_start = False
    cfg.env.max_drawdown = float("inf")
    return cfg


def run_seconds(env, actions: np.ndarray) -> float:
    """Wall seconds to step through `actions` from a reset (resetting whenever an episode ends), plus the
    final flush for a logging env."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        terminated, truncated = env.step(action)[2:4]
        if terminated or truncated:
            env.reset()
    if hasattr(env, "flush"):
        env.flush()
    return time.perf_counter() - start


def steps_per_second(env, actions: np.ndarray, repeats: int = 5) -> float:
    """Best-of-`repeats` wall-clock steps/s over `actions` (see run_seconds)."""
    return len(actions) / min(run_seconds(env, actions) for _ in range(repeats))


def project_speed(panel: Panel, n_steps: int) -> float:
    from tt_rl.env import build_env

    env = build_env(panel, bench_config())
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, len(panel.symbols))).astype(np.float32)
    return steps_per_second(env, actions)


def tensortrade_default_env(panel: Panel):
    """TensorTrade's stock env: default.create with managed-risk actions, risk-adjusted reward, window 10."""
    from tensortrade.env import default
    from tensortrade.feed.core import DataFeed, Stream
    from tensortrade.oms.exchanges import Exchange
    from tensortrade.oms.instruments import Instrument
    from tensortrade.oms.services.execution.simulated import execute_order
    from tensortrade.oms.wallets import Portfolio, Wallet

    usd = Instrument("USD", 2, "U.S. Dollar")
    prices = [
        Stream.source(list(panel.prices[:, j]), dtype="float").rename(f"USD-{s}")
        for j, s in enumerate(panel.symbols)
    ]
    exchange = Exchange("sim", service=execute_order)(*prices)
    wallets = [Wallet(exchange, 100_000 * usd)] + [
        Wallet(exchange, 0 * Instrument(s, 6, s)) for s in panel.symbols
    ]
    features = [
        Stream.source(list(panel.features[:, j, k].astype(float)), dtype="float").rename(f"{s}:{name}")
        for j, s in enumerate(panel.symbols)
        for k, name in enumerate(panel.feature_names)
    ]
    return default.create(
        portfolio=Portfolio(usd, wallets),
        action_scheme="managed-risk",
        reward_scheme="risk-adjusted",
        feed=DataFeed(features),
        window_size=10,
    )


def tensortrade_speed(panel: Panel, n_steps: int) -> float:
    env = tensortrade_default_env(panel)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.action_space.n, n_steps)
    return steps_per_second(env, actions, repeats=1)


def long_episode(panel: Panel, n_steps: int, episodes: int = 3) -> tuple[float, float]:
    """(median step time over the last 2,000 steps / over steps 50..2,050, RSS growth MB from step 1,000 to
    n_steps); the median over `episodes` episodes, since single episodes on this shared VM read anywhere from
    0.57 to 1.74 while most read 1.00 (no growth in t)."""
    from tt_rl.env import build_env

    env = build_env(panel, bench_config())
    actions = np.random.default_rng(1).uniform(-1, 1, (2000, len(panel.symbols))).astype(np.float32)
    process = psutil.Process()
    block = 2000
    times = np.zeros(n_steps)
    ratios, growth = [], []
    for _ in range(episodes):
        env.reset(options={"start": 9, "end": 9 + n_steps})
        rss_start = 0.0
        for i in range(n_steps):
            start = time.perf_counter()
            env.step(actions[i % len(actions)])
            times[i] = time.perf_counter() - start
            if i == 1000:
                rss_start = process.memory_info().rss
        growth.append((process.memory_info().rss - rss_start) / 2**20)
        ratios.append(np.median(times[n_steps - block :]) / np.median(times[50 : 50 + block]))
    return float(np.median(ratios)), float(max(growth))


@contextmanager
def scratch_database(backend: str) -> Iterator[sa.Engine]:
    """A migrated, throw-away database: a SQLite file, or a new database on the local PostgreSQL server."""
    from tests.scratch import scratch_postgres
    from tt_resources.db.engine import create_engine
    from tt_resources.db.migrate import upgrade

    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/bench.sqlite")
            upgrade(engine)
            yield engine
            engine.dispose()
        return
    with scratch_postgres(PG_ADMIN_URL, "tt_bench") as url:
        engine = create_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


def logged_env(panel: Panel, config: RLConfig, engine: sa.Engine, holdings: bool):
    """The project env under the EpisodeLogger, flushing every LOG_FLUSH_EVERY steps to `engine`."""
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    env = build_env(panel, config)
    return EpisodeLogger(
        env, engine, split="train", policy="bench", flush_every=LOG_FLUSH_EVERY, holdings=holdings
    )


def logging_overhead(
    panel: Panel, n_steps: int, backend: str, holdings: bool, rounds: int = 9
) -> tuple[float, float]:
    """Extra wall time per step of the EpisodeLogger over the bare env, random actions, as (percent, us):
    medians over `rounds` rounds of the per-round logged / bare ratio and logged - bare difference (each
    round runs both, alternating which goes first: on this VM the same bare run reads anywhere from 200 to 350 ms from one round to the next, so
    only ratios taken under the same load mean anything). A logged run ends when every step is stored
    (flush), so writes still in flight are paid for."""
    from tt_rl.env import build_env

    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, len(panel.symbols))).astype(np.float32)
    bare = build_env(panel, bench_config())
    with scratch_database(backend) as engine:
        logged = logged_env(panel, bench_config(), engine, holdings)
        run_seconds(logged, actions)  # starts the writer process
        ratios, extra = [], []
        for i in range(rounds):
            if i % 2:
                logged_seconds, bare_seconds = run_seconds(logged, actions), run_seconds(bare, actions)
            else:
                bare_seconds, logged_seconds = run_seconds(bare, actions), run_seconds(logged, actions)
            ratios.append(logged_seconds / bare_seconds)
            extra.append((logged_seconds - bare_seconds) / n_steps)
        logged.close()
    return 100.0 * (float(np.median(ratios)) - 1.0), 1e6 * float(np.median(extra))


class ZeroCostEnv:
    """Same spaces and episode length as the project env; steps cost nothing: observations and rewards are
    read from a fixed bank of random values (copied, like a real env's), so PPO learns from the same kind of
    numbers (all-zero rewards made every advantage zero, and PPO's updates slower than on real data)."""

    BANK = 509  # distinct (observation, reward) pairs, a prime so they never line up with episode ends

    def __new__(cls, observation_space, action_space, episode_length: int):
        import gymnasium

        rng = np.random.default_rng(1)
        observations = rng.normal(size=(cls.BANK, *observation_space.shape)).astype(np.float32)
        rewards = rng.normal(0.0, 0.1, cls.BANK).tolist()

        class _Zero(gymnasium.Env):
            def __init__(self) -> None:
                self.observation_space = observation_space
                self.action_space = action_space
                self._t = 0
                self._i = 0

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self._t = 0
                return observations[self._i].copy(), {}

            def step(self, action):
                self._t += 1
                self._i = i = (self._i + 1) % cls.BANK
                return observations[i].copy(), rewards[i], self._t >= episode_length, False, {}

        return _Zero()


def ppo_model(env):
    """The bench's PPO (MlpPolicy, single torch thread) on `env`, warmed up by one short learn()."""
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", env, n_steps=1024, batch_size=128, n_epochs=5, seed=0, device="cpu")
    model.learn(256)  # warm-up
    return model


def timed_learn(model, timesteps: int) -> float:
    """Timesteps/s of one further learn() of `timesteps` on a built model."""
    start = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    return timesteps / (time.perf_counter() - start)


def ppo_config() -> RLConfig:
    cfg = bench_config()
    cfg.env.max_episode_steps = 252
    cfg.env.random_start = True
    return cfg


def ppo_fps(panel: Panel, timesteps: int, rounds: int = 8) -> tuple[float, float, float]:
    """PPO learn() timesteps/s on the project env and on a zero-cost env of identical shapes, and project /
    zero-cost: medians over `rounds` rounds of `timesteps` each (single runs on this shared VM vary +-20 %).

    Both models are built and warmed up once; each round runs both, alternating which goes first, so a
    round's ratio compares the two under the same machine load."""
    from tt_rl.env import build_env

    env = build_env(panel, ppo_config())
    project = ppo_model(env)
    zero = ppo_model(ZeroCostEnv(env.observation_space, env.action_space, 252))
    fps = np.zeros((rounds, 2))  # columns: project, zero-cost
    for i in range(rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for j in order:
            fps[i, j] = timed_learn((project, zero)[j], timesteps)
    project_fps, zero_fps = np.median(fps, axis=0)
    return float(project_fps), float(zero_fps), float(np.median(fps[:, 0] / fps[:, 1]))


def ppo_logging_overhead(
    panel: Panel, timesteps: int, backend: str, holdings: bool, rounds: int = 8
) -> float:
    """Extra PPO learn() wall time (percent) when every training step is logged by the EpisodeLogger (as
    `tt train --log-training` does; its default logs no per-symbol holdings rows) over PPO on the bare env:
    median over `rounds` rounds of the per-round logged / bare ratio, alternating which runs first (single
    rounds on this VM vary +-15 %); a logged round ends when all is stored."""
    from tt_rl.env import build_env

    with scratch_database(backend) as engine:
        bare = ppo_model(build_env(panel, ppo_config()))
        logger = logged_env(panel, ppo_config(), engine, holdings)
        logged = ppo_model(logger)

        def logged_seconds() -> float:
            start = time.perf_counter()
            logged.learn(timesteps, reset_num_timesteps=False)
            logger.flush()
            return time.perf_counter() - start

        ratios = []
        for i in range(rounds):
            if i % 2:
                seconds = logged_seconds()
                ratios.append(seconds / (timesteps / timed_learn(bare, timesteps)))
            else:
                bare_seconds = timesteps / timed_learn(bare, timesteps)
                ratios.append(logged_seconds() / bare_seconds)
        logger.close()
    return 100.0 * (float(np.median(ratios)) - 1.0)


class InProcessWriter:
    """The synchronous variant of tt_rl.log_writer.LogWriter: stores each job at once, in this process."""

    @classmethod
    def attach(cls, key: str, url: str) -> InProcessWriter:
        return cls(url)

    def __init__(self, url: str) -> None:
        from tt_resources.db.engine import create_engine

        self._engine = create_engine(url)

    def submit(self, key: str, job: tuple) -> None:
        from tt_rl.log_writer import store

        store(self._engine, *job)

    def wait(self, key: str) -> None:
        pass

    def detach(self, key: str) -> None:
        self._engine.dispose()


EVAL_EPISODES = 12  # an evaluation's logged episodes: 4 policies x 3 folds (the demo's default)
EVAL_EPISODE_STEPS = 250  # about a year of 1d bars


def evaluation_logging(panel: Panel, backend: str, rounds: int = 3) -> dict[str, float]:
    """Wall seconds per logged evaluation episode (a logger per episode, holdings rows, EVAL_EPISODE_STEPS
    steps, closed before the next) by where its rows are written: `new_writer_per_episode` (a writer
    process started for every logger, as before one writer served the whole process), `shared_writer`
    (the process's one writer) and `in_process` (InProcessWriter: synchronous writes, no child).
    Median over `rounds` rounds of EVAL_EPISODES episodes."""
    from tt_rl import episode_log
    from tt_rl.env import build_env
    from tt_rl.log_writer import LogWriter

    config = bench_config()
    config.env.max_episode_steps = EVAL_EPISODE_STEPS
    actions = np.random.default_rng(0).uniform(-1, 1, (EVAL_EPISODE_STEPS, len(panel.symbols)))
    actions = actions.astype(np.float32)

    def episode(engine: sa.Engine, restart_writer: bool) -> None:
        logger = episode_log.EpisodeLogger(
            build_env(panel, config), engine, split="test", policy="bench", holdings=True
        )
        logger.reset(seed=0)
        for action in actions:
            if any(logger.step(action)[2:4]):
                break
        logger.close()
        if restart_writer:  # the next logger starts its own process, as each did before
            LogWriter.attach("bench", engine.url.render_as_string(hide_password=False)).stop()

    def seconds_per_episode(engine: sa.Engine, restart_writer: bool = False) -> float:
        start = time.perf_counter()
        for _ in range(EVAL_EPISODES):
            episode(engine, restart_writer)
        return (time.perf_counter() - start) / EVAL_EPISODES

    result: dict[str, list[float]] = {"new_writer_per_episode": [], "shared_writer": [], "in_process": []}
    with scratch_database(backend) as engine:
        episode(engine, restart_writer=False)  # imports and first connections
        for _ in range(rounds):
            result["new_writer_per_episode"].append(seconds_per_episode(engine, restart_writer=True))
            episode(engine, restart_writer=False)  # the shared writer starts once, untimed
            result["shared_writer"].append(seconds_per_episode(engine))
            episode_log.LogWriter = InProcessWriter
            try:
                result["in_process"].append(seconds_per_episode(engine))
            finally:
                episode_log.LogWriter = LogWriter
    return {name: float(np.median(values)) for name, values in result.items()}


def main() -> None:
    panel_150 = make_panel(150, 2_000)
    panel_10 = make_panel(10, 2_000)
    result = {
        "tt_default_steps_per_s_150": tensortrade_speed(panel_150, 300),
        "project_steps_per_s_150": project_speed(panel_150, 20_000),
        "tt_default_steps_per_s_10": tensortrade_speed(panel_10, 1_000),
        "project_steps_per_s_10": project_speed(panel_10, 20_000),
    }
    ratio, rss = long_episode(make_panel(10, 50_100), 50_000)
    result["step_time_ratio_50k_vs_100"] = ratio
    result["rss_growth_mb_50k"] = rss
    result["ppo_fps_project"], result["ppo_fps_zero_cost"], result["ppo_fps_ratio"] = ppo_fps(panel_10, 4096)
    for backend, suffix in (("sqlite", ""), ("postgres", "_postgres")):
        for holdings, infix in ((False, ""), (True, "_with_holdings")):
            pct, us = logging_overhead(panel_10, LOGGED_STEPS, backend, holdings)
            result[f"logging_overhead{infix}_pct_10{suffix}"] = pct
            result[f"logging_us_per_step{infix}_10{suffix}"] = us
    for backend, suffix in (("sqlite", ""), ("postgres", "_postgres")):
        result[f"logging_overhead_pct_ppo_10{suffix}"] = ppo_logging_overhead(panel_10, 4096, backend, False)
        result[f"logging_overhead_with_holdings_pct_ppo_10{suffix}"] = ppo_logging_overhead(
            panel_10, 4096, backend, True
        )
    for backend, suffix in (("sqlite", ""), ("postgres", "_postgres")):
        for variant, seconds in evaluation_logging(panel_10, backend).items():
            result[f"eval_episode_s_{variant}_10{suffix}"] = seconds
    result["notes"] = (
        "synthetic 1d data; project env = tt_rl.env.build_env (TensorTrade TradingEnv shell); random actions; "
        "long episode and PPO/logging figures on 10 symbols; steps/s best of 5 wall-clock runs on a shared 2-core box (TensorTrade: 1 run); "
        "PPO: medians over 8 rounds of 4096 timesteps (both models built and warmed up once, alternating which "
        "goes first), ppo_fps_ratio = median of the per-round project/zero-cost ratios, no VecNormalize; the zero-cost env "
        "replays a bank of 509 random observations and rewards (all-zero rewards made PPO's updates slower); "
        "logging: EpisodeLogger with flush_every=1024 (the default) writing through its child writer process, "
        "2000-bar episodes, overhead = logged/bare wall time - 1 with the logged run timed until every step is "
        "stored, median of 9 paired rounds' logged/bare ratios (alternating which runs first), logging_us_per_step_*: the "
        "same rounds' median of (logged - bare) seconds per step; logging_overhead_*pct_ppo_*: the same logger under PPO learn() "
        "(training default: no holdings rows), median of 8 paired rounds' ratios (alternating which runs first); "
        "eval_episode_s_*: wall seconds per logged 250-step evaluation episode with holdings rows (a logger per "
        "episode), its rows written by a writer process started per episode, by the process's one shared writer, "
        "or synchronously in process; median of 3 rounds of 12 episodes"
    )
    write_results("env_speed", {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == "__main__":
    main()
