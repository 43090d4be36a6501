"""PPO training (Stable-Baselines3) on the project's environment: checkpoints, resume, saved artefacts.

A run lives in `<model_dir>/<model_id>/`: checkpoints/ while training, then model.zip, vecnormalize.pkl,
config.json, metrics.json and meta.json (symbols, features, training span). A run that stopped before
writing model.zip is resumed from its newest readable checkpoint by the next `train` call with the same panel
and config (a checkpoint truncated by a kill is skipped with a warning naming it). torch and SB3 are imported inside the functions (tt_rl.train itself stays light to import).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tt_resources.terms import AGENT
from tt_rl.config import RLConfig
from tt_rl.panel import Panel

log = logging.getLogger(__name__)

MODEL_FILE = "model.zip"
NORMALIZE_FILE = "vecnormalize.pkl"
META_FILE = "meta.json"
CHECKPOINT_PREFIX = "ppo"


@dataclass(frozen=True)
class TrainedModel:
    """model_id, run directory, train metrics, timesteps trained in total, wall seconds of this call."""

    model_id: str
    path: Path
    metrics: dict[str, Any]
    total_timesteps: int
    seconds: float


def code_version() -> str:
    """Hash (12 hex) of the tt_rl sources: changes whenever the environment or training code changes."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def run_key(panel: Panel, config: RLConfig) -> str:
    """Identity of a training run: data version + config (a crashed run with the same key is resumed)."""
    payload = json.dumps({"data": panel.version, "config": config.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _unfinished_run(model_dir: Path, key: str) -> Path | None:
    """The run directory with this key that has checkpoints but no final model, if any."""
    for meta_path in sorted(model_dir.glob(f"*/{META_FILE}")):
        run = meta_path.parent
        if json.loads(meta_path.read_text()).get("run_key") == key and not (run / MODEL_FILE).exists():
            return run
    return None


def _checkpoints(run: Path) -> list[tuple[Path, Path, int]]:
    """(model zip, vecnormalize pkl, timesteps) of every checkpoint in `run/checkpoints`, newest first."""
    found = []
    for path in (run / "checkpoints").glob(f"{CHECKPOINT_PREFIX}_*_steps.zip"):
        steps = int(path.stem.split("_")[-2])
        stats = path.with_name(f"{CHECKPOINT_PREFIX}_vecnormalize_{steps}_steps.pkl")
        found.append((path, stats, steps))
    return sorted(found, key=lambda item: item[2], reverse=True)


def make_training_envs(
    panel: Panel,
    config: RLConfig,
    *,
    log_engine: sa.Engine | None = None,
    model_id: str | None = None,
    run_id: str | None = None,
):
    """n_envs copies of the environment (DummyVecEnv or SubprocVecEnv), each under SB3's Monitor and, when
    `log_engine` is given, the EpisodeLogger (split train, policy ppo)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    url = log_engine.url.render_as_string(hide_password=False) if log_engine is not None else None
    log_from_step = 0
    last, episode_steps = config.logging.training_episodes, config.env.max_episode_steps
    if last is not None and episode_steps is not None:
        ppo = config.ppo  # SB3 collects whole rollouts: each env takes a multiple of n_steps
        env_steps = -(-ppo.total_timesteps // (ppo.n_steps * ppo.n_envs)) * ppo.n_steps
        log_from_step = max(env_steps - (last + 1) * episode_steps, 0)

    def make() -> Any:
        from tt_rl.env import build_env
        from tt_rl.episode_log import EpisodeLogger

        env = build_env(panel, config)
        if url is not None:
            env = EpisodeLogger(
                env,
                url,
                split="train",
                policy=AGENT,
                run_id=run_id,
                model_id=model_id,
                flush_every=config.logging.flush_every,
                holdings=config.logging.holdings_in_training,
                log_from_step=log_from_step,
            )
        return Monitor(env)

    n_envs = config.ppo.n_envs
    if config.ppo.vec_env == "subproc" and n_envs > 1:
        return SubprocVecEnv([make] * n_envs)
    return DummyVecEnv([make] * n_envs)


def train(
    panel: Panel,
    config: RLConfig,
    *,
    engine: sa.Engine | None = None,
    model_dir: str | Path,
    run_id: str | None = None,
    dataset_version: str | None = None,
    callbacks: list | None = None,
    registry_fields: dict[str, Any] | None = None,
) -> TrainedModel:
    """Train PPO on all of `panel` and save the run; registers tt_model when `engine` is given, with the
    extra tt_model columns `registry_fields` (a walk-forward fold's group_id, fold, seed, test span).

    `callbacks` are extra SB3 callbacks (e.g. progress reporting). Same seed, data and config give the same
    weights (CPU, torch_threads threads). The config is validated again first (RLConfigError, nothing
    created); a run directory this call created is removed again if training fails before a checkpoint."""
    import torch

    config.check()
    started = time.perf_counter()
    torch.set_num_threads(config.ppo.torch_threads)
    model_dir = Path(model_dir)
    key = run_key(panel, config)
    run = _unfinished_run(model_dir, key) if model_dir.exists() else None
    created = run is None
    if created:
        run = model_dir / _new_model_id()
        run.mkdir(parents=True)
        meta = {
            "model_id": run.name,
            "run_key": key,
            "timeframe": panel.timeframe,
            "symbols": list(panel.symbols),
            "feature_names": list(panel.feature_names),
            "train_start": panel.index[0].isoformat(),
            "train_end": panel.index[-1].isoformat(),
            "data_version": panel.version,
            "dataset_version": dataset_version or panel.version,
            "code_version": code_version(),
        }
        (run / META_FILE).write_text(json.dumps(meta, indent=2))
        (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    meta = json.loads((run / META_FILE).read_text())
    model_id = meta["model_id"]
    try:
        model, resumed_from = _fit(
            panel, config, run, engine=engine, model_id=model_id, run_id=run_id, callbacks=callbacks
        )
    except BaseException:
        if created and not _checkpoints(run):
            shutil.rmtree(run, ignore_errors=True)
        raise

    seconds = time.perf_counter() - started
    metrics = _train_metrics(model, resumed_from, seconds)
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if engine is not None:
        from tt_resources.db import rl_log

        rl_log.register_model(
            engine,
            model_id=model_id,
            timeframe=panel.timeframe,
            path=str(run),
            dataset_version=meta["dataset_version"],
            code_version=meta["code_version"],
            symbols=meta["symbols"],
            config=config.to_dict(),
            train_metrics=metrics,
            total_timesteps=int(model.num_timesteps),
            train_start=panel.index[0].to_pydatetime(),
            train_end=panel.index[-1].to_pydatetime(),
            run_id=run_id,
            **(registry_fields or {}),
        )
    return TrainedModel(model_id, run, metrics, int(model.num_timesteps), seconds)


def load_model(run: Path, config: RLConfig):
    """The PPO model saved in the run directory `run`, on the CPU, with torch at `config.ppo.torch_threads`
    threads as in training: its batches are a few rows, and more threads only contend for the cores (an
    evaluation in a process of its own took 5x as long at torch's default)."""
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(config.ppo.torch_threads)
    return PPO.load(Path(run) / MODEL_FILE, device="cpu")


def progress_callback(report: Callable[[int], None]):
    """An SB3 callback for `train(callbacks=...)` that calls `report(timesteps)` with the model's timesteps
    so far (a resumed run's included) when training starts, after each rollout and when it ends."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            report(self.model.num_timesteps)

        def _on_rollout_end(self) -> None:
            report(self.model.num_timesteps)

        def _on_training_end(self) -> None:
            report(self.model.num_timesteps)

        def _on_step(self) -> bool:
            return True

    return Progress()


def _fit(
    panel: Panel,
    config: RLConfig,
    run: Path,
    *,
    engine: sa.Engine | None,
    model_id: str,
    run_id: str | None,
    callbacks: list | None,
) -> tuple[Any, int]:
    """Build (or resume from the latest checkpoint in `run`) and train the PPO model, save model.zip and the
    normalisation statistics into `run`; returns (model, timesteps resumed from)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.vec_env import VecNormalize

    ppo = config.ppo
    venv = make_training_envs(
        panel,
        config,
        log_engine=engine if config.logging.log_training else None,
        model_id=model_id,
        run_id=run_id,
    )
    try:
        model, venv, resumed_from = _resume(run, venv, config)
        if model is not None:
            log.info("resuming %s from checkpoint at %d timesteps", model_id, resumed_from)
            if engine is not None:
                from tt_resources.db import rl_log

                rl_log.mark_stale_episodes(engine, model_id=model_id)
        else:
            if ppo.normalize:
                venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=ppo.gamma)
            policy, policy_kwargs = _policy(config, panel.feature_names)
            model = PPO(
                policy,
                venv,
                learning_rate=ppo.learning_rate,
                n_steps=ppo.n_steps,
                batch_size=ppo.batch_size,
                n_epochs=ppo.n_epochs,
                gamma=ppo.gamma,
                gae_lambda=ppo.gae_lambda,
                clip_range=ppo.clip_range,
                ent_coef=ppo.ent_coef,
                policy_kwargs=policy_kwargs,
                seed=ppo.seed,
                device="cpu",
                verbose=0,
            )
        checkpoints = CheckpointCallback(
            save_freq=max(ppo.checkpoint_every // ppo.n_envs, 1),
            save_path=str(run / "checkpoints"),
            name_prefix=CHECKPOINT_PREFIX,
            save_vecnormalize=ppo.normalize,
        )
        model.learn(
            total_timesteps=max(ppo.total_timesteps - model.num_timesteps, 0),
            callback=[checkpoints, *(callbacks or [])],
            reset_num_timesteps=False,
            progress_bar=ppo.progress_bar,
        )
        model.save(run / MODEL_FILE)
        if ppo.normalize:
            venv.save(str(run / NORMALIZE_FILE))
    finally:
        venv.close()
    return model, resumed_from


def _resume(run: Path, venv, config: RLConfig) -> tuple[Any, Any, int]:
    """(model, env, timesteps) from the newest readable checkpoint of `run`, or (None, venv, 0) when there
    is none. A checkpoint that cannot be read (a kill while it was written leaves it truncated) is skipped
    with one warning naming the file, and the next older one is tried."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    for zip_path, stats_path, steps in _checkpoints(run):
        reading = stats_path
        try:
            env = VecNormalize.load(str(stats_path), venv) if config.ppo.normalize else venv
            reading = zip_path
            return PPO.load(zip_path, env=env, device="cpu"), env, steps
        except Exception as exc:  # whatever a truncated zip or pickle raises (ValueError, EOFError, ...)
            reason = " ".join(str(exc).split())
            log.warning("skipping unreadable checkpoint %s (%s: %s)", reading, type(exc).__name__, reason)
    return None, venv, 0


def _policy(config: RLConfig, feature_names: Sequence[str]) -> tuple[Any, Any]:
    """(policy, policy_kwargs) for PPO: ppo.policy "cross_sectional" (tt_rl.policy; ppo.cross_features found
    in the observation's `feature_names`) or SB3's "mlp"."""
    ppo = config.ppo
    if ppo.policy == "mlp":
        return "MlpPolicy", {"net_arch": list(ppo.net_arch), "log_std_init": ppo.log_std_init}
    from tt_rl.policy import CrossSectionalPolicy

    return CrossSectionalPolicy, {
        "net_arch": list(ppo.net_arch),
        "window": config.env.window_size,
        "cross_features": tuple(feature_names.index(name) for name in ppo.cross_features),
        "log_std_init": ppo.log_std_init,
    }


def _new_model_id() -> str:
    import uuid

    return uuid.uuid4().hex[:16]


def _train_metrics(model, resumed_from: int, seconds: float) -> dict[str, Any]:
    """Episode statistics from SB3's Monitor buffer plus throughput."""
    episodes = list(model.ep_info_buffer)
    rewards = [e["r"] for e in episodes]
    lengths = [e["l"] for e in episodes]
    return {
        "timesteps": int(model.num_timesteps),
        "resumed_from": resumed_from,
        "episodes_in_buffer": len(episodes),
        "ep_reward_mean": float(sum(rewards) / len(rewards)) if rewards else None,
        "ep_length_mean": float(sum(lengths) / len(lengths)) if lengths else None,
        "seconds": round(seconds, 3),
    }
