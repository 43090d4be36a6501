"""TensorFlow stays out of the process, and nothing the platform filters can swallow a native crash message."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

BUILD_ENV = textwrap.dedent(
    """
    import sys
    from tt_rl.config import RLConfig
    from tt_rl.env import build_env
    from tt_rl.panel import panel_from_frames
    from tt_rl.synthetic import synthetic_bars

    env = build_env(panel_from_frames("1d", synthetic_bars(["A", "B"], n_bars=80, seed=1)), RLConfig())
    env.reset(seed=0)
    env.step(env.action_space.sample())
    print("tensorflow" in sys.modules, "tensortrade" in sys.modules)
    """
)


def test_building_and_stepping_an_env_imports_tensortrade_without_tensorflow():
    done = subprocess.run([sys.executable, "-c", BUILD_ENV], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_reaching_for_a_tensortrade_agent_names_the_shell():
    importlib.import_module("tt_rl.tensortrade_shell")  # first: registers the placeholder
    agents = importlib.import_module("tensortrade.agents")
    with pytest.raises(ImportError, match=r"tt_rl/tensortrade_shell\.py"):
        agents.DQNAgent  # noqa: B018


ABORTING_PACKAGE = """
import os
os.write(2, b"F0000 00:00:1795983599.903696 17768 cpu_feature_guard.cc:64] Check failed: CPU lacks AVX\\n")
os.abort()
"""


def test_a_native_crash_message_reaches_stderr_through_the_quiet_console(tmp_path):
    """A package that writes absl's fatal record to file descriptor 2 and aborts, as TensorFlow does on a CPU it
    cannot run on: with the CLI's quiet() in force the record still reaches stderr."""
    (tmp_path / "crashing_native").mkdir()
    (tmp_path / "crashing_native" / "__init__.py").write_text(ABORTING_PACKAGE)
    code = "from tt_assets import quiet; quiet.choose(verbose=False); import crashing_native"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode < 0  # killed by SIGABRT
    assert "Check failed: CPU lacks AVX" in done.stderr
