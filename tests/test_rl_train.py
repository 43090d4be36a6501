"""Training, evaluation and episode logging end to end on tiny synthetic panels (real databases)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tt_resources.db import rl_log
from tt_resources.db.engine import create_engine
from tt_resources.db.schema import actions, episodes, evals, holdings, portfolio, rewards
from tt_rl.config import RLConfig
from tt_rl.panel import panel_from_frames
from tt_rl.synthetic import synthetic_bars


@pytest.fixture(scope="module")
def panel():
    return panel_from_frames("1d", synthetic_bars(["A", "AA", "B"], n_bars=200, seed=7))


def _tiny(total: int = 128, **ppo) -> RLConfig:
    cfg = RLConfig()
    cfg.env.max_episode_steps = 40
    cfg.ppo.total_timesteps = total
    cfg.ppo.n_steps = 64
    cfg.ppo.batch_size = 32
    cfg.ppo.n_epochs = 2
    cfg.ppo.progress_bar = False
    cfg.logging.flush_every = 16
    for key, value in ppo.items():
        setattr(cfg.ppo, key, value)
    return cfg


def _weights(path):
    from stable_baselines3 import PPO

    return [p.detach().numpy().copy() for p in PPO.load(path / "model.zip", device="cpu").policy.parameters()]


def test_same_seed_same_weights(panel, tmp_path):
    from tt_rl.train import train

    first = train(panel, _tiny(), model_dir=tmp_path / "a")
    second = train(panel, _tiny(), model_dir=tmp_path / "b")
    other = train(panel, _tiny(seed=1), model_dir=tmp_path / "c")
    for x, y in zip(_weights(first.path), _weights(second.path), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y) for x, y in zip(_weights(first.path), _weights(other.path), strict=True)
    )


def test_resume_from_checkpoint_after_crash(panel, tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    from tt_rl.train import train

    class Crash(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 100:
                raise RuntimeError("simulated crash")
            return True

    cfg = _tiny(total=192, checkpoint_every=64)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(panel, cfg, model_dir=tmp_path, callbacks=[Crash()])
    (crashed,) = tmp_path.iterdir()
    assert not (crashed / "model.zip").exists()
    resumed = train(panel, cfg, model_dir=tmp_path)
    assert resumed.path == crashed and resumed.metrics["resumed_from"] == 64
    assert resumed.total_timesteps == 192 and (crashed / "model.zip").exists()


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(panel, tmp_path, caplog):
    from stable_baselines3.common.callbacks import BaseCallback

    from tt_rl.train import train

    class Crash(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 150:
                raise RuntimeError("simulated crash")
            return True

    cfg = _tiny(total=192, checkpoint_every=64)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(panel, cfg, model_dir=tmp_path, callbacks=[Crash()])
    (crashed,) = tmp_path.iterdir()
    newest = crashed / "checkpoints" / "ppo_128_steps.zip"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a kill while the checkpoint was written
    with caplog.at_level("WARNING", logger="tt_rl.train"):
        resumed = train(panel, cfg, model_dir=tmp_path)
    assert resumed.path == crashed and resumed.metrics["resumed_from"] == 64
    assert resumed.total_timesteps == 192 and (crashed / "model.zip").exists()
    [note] = [r.getMessage() for r in caplog.records if "skipping unreadable checkpoint" in r.getMessage()]
    assert str(newest) in note and "\n" not in note


def test_logged_rows_are_what_the_env_reported(engine, panel):
    """Every stored step row (both backends, across several flushes) equals the env's own step output."""
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    cfg = _tiny()
    cfg.env.no_trade_band = 0.1  # 7 of the 21 steps skip the rebalance
    env = EpisodeLogger(build_env(panel, cfg), engine, split="test", policy="random", flush_every=8)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    sent, seen = [], []
    for _ in range(21):
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        _, reward, *_, info = env.step(action)
        sent.append(action)
        seen.append({**info, "reward": reward, "weights": info["weights"].copy()})
    env.close()
    episode = env.last_episode_id
    with engine.connect() as conn:

        def rows(table):
            return conn.execute(sa.select(table).where(table.c.episode_id == episode).order_by("step")).all()

        acted, rewarded, marked, held = rows(actions), rows(rewards), rows(portfolio), rows(holdings)
        assert (
            conn.execute(sa.select(episodes.c.steps).where(episodes.c.episode_id == episode)).scalar() == 21
        )
    assert (
        [r.step for r in acted] == [r.step for r in rewarded] == [r.step for r in marked] == list(range(21))
    )
    assert {a.rebalanced for a in acted} == {True, False} and held
    for step, (a, r, m, info) in enumerate(zip(acted, rewarded, marked, seen, strict=True)):
        assert a.action == pytest.approx(sent[step].tolist(), rel=1e-6)
        assert a.rebalanced == info["rebalanced"]
        assert a.ts == panel.index[info["bar"] - 1] and m.ts == panel.index[info["bar"]]
        assert r.reward == pytest.approx(info["reward"], rel=1e-12, abs=1e-15)
        for field in ("net_worth", "cash", "turnover", "costs", "drawdown", "period_return"):
            assert getattr(m, field) == pytest.approx(info[field], rel=1e-12, abs=1e-15), field
        assert m.gross_exposure == pytest.approx(np.abs(info["weights"]).sum(), rel=1e-12)
        mine = {h.symbol: h for h in held if h.step == step}
        for j, symbol in enumerate(panel.symbols):
            weight = info["weights"][j]
            assert symbol in mine or weight == 0.0
            if symbol in mine:
                h = mine[symbol]
                assert h.weight == pytest.approx(weight, rel=1e-12)
                assert h.value == pytest.approx(weight * info["net_worth"], rel=1e-12)
                assert h.price == pytest.approx(panel.prices[info["bar"], j], rel=1e-12)
                assert h.quantity * h.price == pytest.approx(h.value, rel=1e-12)
    # P&L of the held positions = the change in their value not explained by trading
    for step in range(1, 21):
        before = {h.symbol: h for h in held if h.step == step - 1}
        for h in (h for h in held if h.step == step and h.trade_value == 0.0 and h.symbol in before):
            assert h.pnl == pytest.approx(h.value - before[h.symbol].value, rel=1e-9, abs=1e-9)


def test_training_logs_only_its_last_episodes_when_asked(sqlite_engine, panel, tmp_path):
    from tt_rl.train import train

    cfg = _tiny(total=400)  # 10 episodes of 40 steps
    cfg.logging.log_training, cfg.logging.training_episodes = True, 2
    trained = train(panel, cfg, engine=sqlite_engine, model_dir=tmp_path)
    with sqlite_engine.connect() as conn:
        logged = conn.execute(
            sa.select(episodes.c.status, episodes.c.steps).where(episodes.c.model_id == trained.model_id)
        ).all()
    finished = [steps for status, steps in logged if status == "finished"]
    assert finished == [40, 40]  # the last two of the ten, not the eight before them


def test_logger_marks_abandoned_episode_incomplete(sqlite_engine, panel):
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    env = EpisodeLogger(
        build_env(panel, _tiny()), sqlite_engine, split="train", policy="random", flush_every=8
    )
    env.reset(seed=0)
    for _ in range(13):
        env.step(env.action_space.sample())
    first = env.episode_id
    env.reset(seed=1)  # abandon the first episode mid-way
    env.close()
    with sqlite_engine.connect() as conn:
        rows = {r.episode_id: r for r in conn.execute(sa.select(episodes))}
    assert rows[first].status == "incomplete" and rows[first].steps == 13
    assert {r.status for r in rows.values()} == {"incomplete"}


def test_logger_write_errors_surface_on_the_stepping_thread(sqlite_url, panel):
    from tt_resources.db.engine import create_engine
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    engine = create_engine(sqlite_url)  # no schema: the writer thread's first write fails
    env = EpisodeLogger(build_env(panel, _tiny()), engine, split="train", policy="random", flush_every=4)
    env.reset(seed=0)
    with pytest.raises(sa.exc.OperationalError, match="no such table: tt_episode"):
        env.flush()
    with pytest.raises(sa.exc.OperationalError, match="no such table: tt_episode"):
        env.close()  # the finishing update fails the same way; the writer thread still ends
    engine.dispose()


def _log_writers(process: psutil.Process) -> list[psutil.Process]:
    """`process`'s living log writer children."""
    found = []
    for child in process.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "tt_rl.log_writer" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_loggers_of_a_process_share_one_child_writer_that_never_sees_the_password(db_url, panel):
    from tt_resources.db.engine import create_engine
    from tt_resources.db.migrate import upgrade
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    url = sa.make_url(db_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(password="s3cret")  # trust auth here: accepted and ignored by the server
    engine = create_engine(url)
    upgrade(engine)
    for run in range(2):
        env = EpisodeLogger(build_env(panel, _tiny()), engine, split="train", policy="random", flush_every=8)
        (writer,) = _log_writers(psutil.Process())
        if run == 0:
            first = writer
        assert writer == first  # the second logger's episodes go to the same process
        assert "s3cret" not in " ".join(writer.cmdline()) and "s3cret" not in str(writer.environ())
        env.reset(seed=0)
        for _ in range(20):
            env.step(env.action_space.sample())
        env.flush()
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(portfolio)).scalar() == 20 * (run + 1)
        env.close()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(episodes)).all()
    assert [(row.status, row.steps) for row in rows] == [("incomplete", 20)] * 2
    engine.dispose()


def test_logger_reports_a_dead_writer(sqlite_engine, panel):
    from tt_rl.env import build_env
    from tt_rl.episode_log import EpisodeLogger

    env = EpisodeLogger(
        build_env(panel, _tiny()), sqlite_engine, split="train", policy="random", flush_every=4
    )
    (writer,) = _log_writers(psutil.Process())
    writer.kill()  # not reaped here: the logger's Popen reads its exit code
    while writer.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="episode log writer process exited with code -9"):
        for _ in range(8):
            env.step(env.action_space.sample())
        env.flush()
    with pytest.raises(RuntimeError, match="exited with code -9"):
        env.close()  # the closing update cannot be stored either; the logger still lets go of the writer
    env.close()  # a second close is a no-op
    again = EpisodeLogger(build_env(panel, _tiny()), sqlite_engine, split="train", policy="random")
    assert _log_writers(psutil.Process()) not in ([], [writer])  # the next logger starts a new writer
    again.close()


HANG_BOUND_S = 1800  # against a hung child only: a loaded machine may need minutes for its imports


def test_killed_process_leaves_episode_unfinished(sqlite_url, sqlite_engine, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import numpy as np
            from tt_rl.config import RLConfig
            from tt_rl.env import build_env
            from tt_rl.episode_log import EpisodeLogger
            from tt_rl.panel import panel_from_frames
            from tt_rl.synthetic import synthetic_bars

            panel = panel_from_frames("1d", synthetic_bars(["A", "B"], n_bars=3000, seed=1))
            cfg = RLConfig()
            cfg.env.max_episode_steps = None
            cfg.env.random_start = False
            cfg.env.max_drawdown = 1.0
            env = EpisodeLogger(build_env(panel, cfg), {sqlite_url!r}, split="train", policy="random", flush_every=10)
            env.reset(seed=0)
            while True:
                env.step(np.full(2, 0.5, dtype=np.float32))
            """
        )
    )
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        # the condition: three flushes stored (the child's imports take minutes on a loaded machine); the
        # bound only stops a hung child from hanging the suite
        hang_bound = time.monotonic() + HANG_BOUND_S
        steps = 0
        while steps < 30 and proc.poll() is None and time.monotonic() < hang_bound:
            time.sleep(0.2)
            with sqlite_engine.connect() as conn:
                steps = conn.execute(sa.select(sa.func.max(episodes.c.steps))).scalar() or 0
        assert proc.poll() is None, f"the child exited ({proc.returncode}): {stderr.read_text()[-2000:]}"
        writers = psutil.Process(proc.pid).children()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert steps >= 30, f"no 30 logged steps within the {HANG_BOUND_S} s hang bound"
    assert [" ".join(w.cmdline()[1:3]) for w in writers] == ["-m tt_rl.log_writer"]
    psutil.wait_procs(writers, timeout=30)  # the orphaned writer sees end-of-file and exits by itself
    assert not any(w.is_running() for w in writers)
    with sqlite_engine.connect() as conn:
        (row,) = conn.execute(sa.select(episodes)).all()
        stored = conn.execute(
            sa.select(sa.func.count()).where(portfolio.c.episode_id == row.episode_id)
        ).scalar()
    assert row.status == "running" and row.finished_at is None  # never looks finished
    assert row.steps == stored and stored % 10 == 0  # whole flushes only
    assert rl_log.mark_stale_episodes(sqlite_engine) == 1
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(episodes.c.status)).scalar() == "incomplete"


def test_tt_train_cli_on_synthetic_data(tmp_path, monkeypatch):
    from tt_cli.main import cli

    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tt.sqlite'}")
    monkeypatch.setenv("COLUMNS", "200")  # rich: room for the whole table
    config = tmp_path / "rl.json"
    config.write_text(
        '{"ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "progress_bar": true},'
        ' "env": {"max_episode_steps": 50}, "eval": {"n_folds": 2, "seeds": 1}}'
    )
    result = CliRunner().invoke(
        cli,
        ["train", "--limit", "3", "--steps", "128", "--months", "14", "--config", str(config), "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    # the progress bar's last frame: every fold's and seed's PPO steps, the time it took and none left
    assert re.search(r"^evaluating +━+ 256/256 steps \d+:\d\d:\d\d 00:00 left$", result.output, re.M)
    # one table, the policies by their labels, its title the test span (dates, test windows, sessions)
    assert re.search(
        r"^1d out-of-sample: test \d{4}-\d\d-\d\d\.\.\d{4}-\d\d-\d\d, 2 windows, \d+ sessions",
        result.output,
        re.M,
    )
    assert "(cont.)" not in result.output
    for label in ("PPO agent", "Equal weight (buy & hold)", "Equal weight, vol-targeted", "Cash", "sharpe"):
        assert label in result.output
    # one verdict line, printed as stored with the evaluation (rich may wrap it at the terminal's width)
    with create_engine(f"sqlite:///{tmp_path / 'tt.sqlite'}").connect() as conn:
        [verdict] = (
            conn.execute(sa.select(evals.c.verdict).where(evals.c.verdict.is_not(None))).scalars().all()
        )
    assert verdict.startswith("Verdict: ") and verdict in " ".join(result.output.split())
    assert result.output.count("Verdict: ") == 1
    assert list((tmp_path / "models" / "1d").glob("*/model.zip"))


def test_tt_train_cli_bad_config(tmp_path, monkeypatch):
    from tt_cli.main import cli

    monkeypatch.setenv("TT_DATA_DIR", str(tmp_path))
    config = tmp_path / "rl.json"
    config.write_text('{"ppo": {"stepz": 1}}')
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "ppo.stepz" in result.output


pytestmark = pytest.mark.slow


def test_a_loaded_model_runs_torch_at_its_configured_threads(panel, tmp_path):
    """An evaluation in a process of its own ran torch at its default thread count, 5x slower on 2 cores."""
    import torch

    from tt_rl.train import load_model, train

    config = _tiny()
    run = train(panel, config, model_dir=tmp_path).path
    torch.set_num_threads(2)
    load_model(run, config)
    assert torch.get_num_threads() == config.ppo.torch_threads == 1
