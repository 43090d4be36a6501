"""Strict RL configuration: types, ranges, unknown keys and file errors as one-line ValueErrors."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import yaml

from tt_rl.config import SECTIONS, EnvConfig, EvalConfig, PPOConfig, RLConfig, RLConfigError
from tt_rl.panel import panel_from_frames
from tt_rl.synthetic import synthetic_bars

# (section, key, value, the reason in the message)
BAD_VALUES = [
    ("ppo", "n_envs", "two", "must be an integer (got 'two')"),
    ("env", "long_only", "no", "must be a boolean (got 'no')"),
    ("ppo", "total_timesteps", "lots", "must be an integer (got 'lots')"),
    ("ppo", "total_timesteps", 0, "must be >= 1 (got 0)"),
    ("ppo", "total_timesteps", 1.5, "must be an integer (got 1.5)"),
    ("ppo", "learning_rate", "fast", "must be a number (got 'fast')"),
    ("ppo", "learning_rate", 0, "must be > 0 (got 0)"),
    ("env", "target_vol", 0, "must be > 0 (got 0)"),
    ("ppo", "n_steps", 0, "must be >= 2 (got 0)"),
    ("ppo", "batch_size", 1, "must be >= 2 (got 1)"),
    ("ppo", "gamma", 1.5, "must be <= 1 (got 1.5)"),
    ("ppo", "gae_lambda", -0.1, "must be >= 0 (got -0.1)"),
    ("ppo", "clip_range", 0, "must be > 0 (got 0)"),
    ("ppo", "vec_env", "fork", "must be 'dummy' or 'subproc' (got 'fork')"),
    ("ppo", "net_arch", [], "must not be empty (got [])"),
    ("ppo", "normalize", 1, "must be a boolean (got 1)"),
    ("env", "max_weight", 1.5, "must be <= 1 (got 1.5)"),
    ("env", "max_leverage", 0, "must be > 0 (got 0)"),
    ("env", "commission_bps", -1, "must be >= 0 (got -1)"),
    ("env", "slippage_bps", -0.5, "must be >= 0 (got -0.5)"),
    ("env", "window_size", 0, "must be >= 1 (got 0)"),
    ("env", "max_episode_steps", 0, "must be >= 1 (got 0)"),
    (
        "env",
        "vol_feature",
        "vol_30",
        "must be 'ret_1', 'log_ret_1', 'vol_10', 'vol_20', 'mom_20', 'rsi_14', 'volume_z_20' or 'hl_range' "
        "(got 'vol_30')",
    ),
    ("reward", "eta", 0, "must be > 0 (got 0)"),
    ("eval", "test_fraction", 1, "must be < 1 (got 1)"),
    ("eval", "test_fraction", 0, "must be > 0 (got 0)"),
    ("eval", "n_folds", 0, "must be >= 1 (got 0)"),
    ("logging", "flush_every", 0, "must be >= 1 (got 0)"),
]


def _write(tmp_path, data, suffix: str):
    path = tmp_path / f"rl{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    return path


def _error(path) -> str:
    with pytest.raises(ValueError) as info:
        RLConfig.from_file(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize(("section", "key", "value", "why"), BAD_VALUES)
def test_bad_value_names_file_and_key(tmp_path, suffix, section, key, value, why):
    path = _write(tmp_path, {section: {key: value}}, suffix)
    assert _error(path) == f"{path}: {section}.{key}: {why}"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_rules_across_fields_and_lists(tmp_path, suffix):
    path = _write(tmp_path, {"ppo": {"n_steps": 64, "n_envs": 2, "batch_size": 256}}, suffix)
    assert _error(path) == f"{path}: ppo.batch_size: must be <= ppo.n_steps * ppo.n_envs = 128 (got 256)"
    path = _write(tmp_path, {"ppo": {"net_arch": [64, 0]}}, suffix)
    assert _error(path) == f"{path}: ppo.net_arch[1]: must be >= 1 (got 0)"
    path = _write(tmp_path, {"ppo": {"n_steps": 0, "gamma": 2}}, suffix)
    assert _error(path) == f"{path}: ppo.n_steps: must be >= 2 (got 0); ppo.gamma: must be <= 1 (got 2)"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_unknown_sections_and_keys(tmp_path, suffix):
    path = _write(tmp_path, {"envs": {"window_size": 5}}, suffix)
    assert _error(path) == f"{path}: envs: unknown section (did you mean env?)"
    path = _write(tmp_path, {"env": {"target_volatility": 0.1}}, suffix)
    assert _error(path) == f"{path}: env.target_volatility: unknown key (did you mean target_vol?)"
    path = _write(tmp_path, {"ppo": 5}, suffix)
    assert _error(path) == f"{path}: ppo: must be a mapping (got 5)"
    path = _write(tmp_path, [1, 2], suffix)
    assert _error(path) == f"{path}: top level must be a mapping of sections (got [1, 2])"


def test_valid_files_and_lenient_numbers(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text(
        "env:\n  max_episode_steps: null\nppo:\n  learning_rate: 3e-4\n  clip_range: 1\nreward:\n"
    )
    cfg = RLConfig.from_file(path)
    assert (
        cfg.ppo.learning_rate == 3e-4 and cfg.ppo.clip_range == 1.0 and isinstance(cfg.ppo.clip_range, float)
    )
    assert cfg.env.max_episode_steps is None and cfg.reward == RLConfig().reward
    path = tmp_path / "rl.json"
    path.write_text('{"ppo": {"learning_rate": 1, "vec_env": "subproc"}, "env": {"vol_feature": "vol_10"}}')
    cfg = RLConfig.from_file(path)
    assert cfg.ppo.learning_rate == 1.0 and cfg.ppo.vec_env == "subproc" and cfg.env.vol_feature == "vol_10"


def test_invalid_syntax_names_file_line_and_column(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("ppo:\n  n_steps: 64\n  batch_size: [32\n")
    message = _error(path)
    assert message.startswith(f"{path}: invalid YAML at line 4, column 1: ")
    path = tmp_path / "rl.json"
    path.write_text('{"ppo": {"n_steps": 64,}}')
    assert (
        _error(path)
        == f"{path}: invalid JSON at line 1, column 24: Expecting property name enclosed in double quotes"
    )
    assert _error(tmp_path / "missing.yaml").startswith(f"{tmp_path / 'missing.yaml'}: cannot read")
    path = tmp_path / "rl.toml"
    path.write_text("")
    assert _error(path) == f"{path}: config must be .json, .yaml or .yml"


def test_assignment_is_validated():
    cfg = RLConfig()
    with pytest.raises(ValueError, match=r"^config: ppo\.n_steps: must be >= 2 \(got 0\)$"):
        cfg.ppo.n_steps = 0
    with pytest.raises(ValueError, match=r"^config: env\.long_only: must be a boolean \(got 'no'\)$"):
        cfg.env.long_only = "no"
    with pytest.raises(RLConfigError, match=r"^config: ppo: must be a mapping \(got 5\)$"):
        cfg.ppo = 5
    with pytest.raises(ValueError, match=r"^config: env\.window_size: must be >= 1 \(got 0\)$"):
        dataclasses.replace(cfg.env, window_size=0)
    with pytest.raises(ValueError, match=r"^config: ppo\.seed: must be an integer"):
        PPOConfig(seed="1")
    assert cfg.ppo.n_steps == 512 and cfg.env.long_only is True
    cfg.ppo.total_timesteps = 128
    cfg.env.max_drawdown = float("inf")  # evaluation switches the drawdown stop off
    cfg.env.max_episode_steps = None
    assert copy.deepcopy(cfg) == cfg and copy.deepcopy(cfg) is not cfg
    cfg.ppo.n_steps = 64  # below batch_size 128: only the whole-config check sees it
    with pytest.raises(ValueError, match=r"^config: ppo\.batch_size: must be <= ppo\.n_steps \* ppo\.n_envs"):
        cfg.check()


def test_defaults_round_trip():
    cfg = RLConfig()
    data = cfg.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == set(SECTIONS)
    assert RLConfig.from_dict(data) == cfg
    assert RLConfig.from_dict({}) == cfg
    assert data["ppo"]["net_arch"] == [64, 64] and data["env"]["max_episode_steps"] == 252
    assert cfg.env.cost_rate == pytest.approx(3e-4)
    assert EvalConfig.test_fraction == 0.3 and EnvConfig.window_size == 1  # plain class defaults


def test_stored_configs_of_the_retired_cross_asset_flag_still_load():
    """Models trained before ppo.cross_features stored ppo.cross_asset (False: no cross-asset term, True: over
    every feature); their configs load as what they trained with, and a config naming both is refused."""
    from tt_resources.terms import FEATURE_COLUMNS

    assert RLConfig().ppo.cross_features == ["ret_1"]
    assert RLConfig.from_dict({"ppo": {"cross_asset": False}}).ppo.cross_features == []
    assert RLConfig.from_dict({"ppo": {"cross_asset": True}}).ppo.cross_features == list(FEATURE_COLUMNS)
    with pytest.raises(RLConfigError, match="cross_asset"):
        RLConfig.from_dict({"ppo": {"cross_asset": True, "cross_features": []}})
    with pytest.raises(RLConfigError, match="cross_features"):
        RLConfig.from_dict({"ppo": {"cross_features": ["volume"]}})  # not a feature


@pytest.fixture(scope="module")
def panel():
    return panel_from_frames("1d", synthetic_bars(["A", "B"], n_bars=120, seed=3))


def _small() -> RLConfig:
    cfg = RLConfig()
    cfg.env.max_episode_steps = 30
    cfg.ppo.total_timesteps = 64
    cfg.ppo.n_steps = 32
    cfg.ppo.batch_size = 16
    cfg.ppo.n_epochs = 1
    cfg.ppo.net_arch = [8]
    cfg.ppo.progress_bar = False
    return cfg


@pytest.mark.slow  # trains PPO until the injected failure
def test_failed_train_leaves_no_run_folder(panel, tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    from tt_rl.train import train

    class Abort(BaseCallback):
        """Stops training with an error after `after` steps."""

        def __init__(self, after: int) -> None:
            super().__init__()
            self.after = after

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.after:
                raise RuntimeError("aborted")
            return True

    inconsistent = _small()
    inconsistent.ppo.batch_size = 64  # > n_steps * n_envs = 32
    with pytest.raises(ValueError, match=r"ppo\.batch_size"):
        train(panel, inconsistent, model_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()

    too_long = _small()
    too_long.env.window_size = 200  # the panel has 120 bars: building the environments fails
    with pytest.raises(ValueError, match="need at least"):
        train(panel, too_long, model_dir=tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []

    with pytest.raises(RuntimeError, match="aborted"):
        train(panel, _small(), model_dir=tmp_path / "c", callbacks=[Abort(8)])
    assert list((tmp_path / "c").iterdir()) == []

    resumable = _small()
    resumable.ppo.checkpoint_every = 32
    with pytest.raises(RuntimeError, match="aborted"):
        train(panel, resumable, model_dir=tmp_path / "d", callbacks=[Abort(40)])
    (run,) = (tmp_path / "d").iterdir()  # a checkpoint was written: the run stays to be resumed
    assert list((run / "checkpoints").glob("ppo_*_steps.zip"))
    resumed = train(panel, resumable, model_dir=tmp_path / "d")
    assert resumed.path == run and resumed.metrics["resumed_from"] == 32
