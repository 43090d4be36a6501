"""The trading tests' world: the stand-in's daily bars of a few symbols stored with their features, and a
tiny PPO production model trained on them and registered (tests/test_trading*.py share it per module).

The bars are tests.fake_ibgateway.series, the same the stand-in fills market-on-open orders from, so live
fills happen at the opens the backtest uses.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from tests.fake_ibgateway import series
from tt_pipeline.market import update_features
from tt_resources.calendar import bar_table, session_open
from tt_resources.db.prices import upsert_price_bars
from tt_resources.db.rl_log import register_model
from tt_rl.config import RLConfig

SYMBOLS = ["AAPL", "JPM", "XOM", "PG"]  # four watchlist sectors
FIRST = pd.Timestamp("2026-04-01", tz="UTC")
WALK_FORWARD_ID = "wf00000000000001"


def sessions(first: dt.date, last: dt.date) -> list[dt.date]:
    """The NYSE sessions from `first` to `last`, inclusive."""
    table = bar_table("1d", session_open(first), session_open(last) + pd.Timedelta(hours=1))
    return [pd.Timestamp(s).date() for s in table["session"]]


def store_bars(engine: sa.Engine, symbols: list[str], last: dt.date, first: pd.Timestamp = FIRST) -> None:
    """The stand-in's 1d bars of `symbols` from `first` through the session `last`, and their features."""
    end = session_open(last) + pd.Timedelta(hours=1)
    for symbol in symbols:
        bars = series(symbol, "1d", first, end).assign(symbol=symbol, timeframe="1d")
        upsert_price_bars(engine, bars, source="ibkr")
        stored = bars[["symbol", "ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
        update_features(engine, symbol, "1d", stored, done=None)


def tiny_config(**env) -> RLConfig:
    """A PPO configuration that trains in seconds; costs and band off unless given."""
    config = RLConfig()
    config.env.commission_bps = 0.0
    config.env.slippage_bps = 0.0
    config.env.no_trade_band = 0.0
    config.env.cov_shrinkage = 0.5  # the sample covariance too: the target reads cov_window bars
    config.env.cov_window = 20
    config.env.window_size = 3
    config.env.max_episode_steps = 30
    for key, value in env.items():
        setattr(config.env, key, value)
    config.ppo.total_timesteps = 64
    config.ppo.n_steps = 32
    config.ppo.batch_size = 32
    config.ppo.n_epochs = 1
    config.ppo.progress_bar = False
    config.ppo.log_std_init = 0.0
    return config


def production_model(engine: sa.Engine, model_dir: Path, symbols: list[str], last: dt.date, **env) -> str:
    """Register the stored bars through `last` as a dataset and the tiny configuration as a walk-forward
    model on it (WALK_FORWARD_ID, not trained: its folds do not matter here), then train its production model
    (tt_pipeline.models.train_production); the production model's id."""
    from tt_pipeline.datasets import dataset_version
    from tt_pipeline.models import train_production
    from tt_resources.db import registry
    from tt_rl.panel import build_panel

    config = tiny_config(**env)
    panel = build_panel(engine, "1d", symbols, end=session_open(last) + pd.Timedelta(hours=1))
    split = panel.test_start(0.3)
    version = dataset_version(panel.version, 0.3, split)
    registry.record_dataset(
        engine,
        {
            "dataset_version": version,
            "timeframe": "1d",
            "symbols": list(panel.symbols),
            "start_ts": panel.index[0],
            "end_ts": panel.index[-1],
            "split_ts": split,
            "n_bars": len(panel),
            "path": str(panel.save(model_dir / f"{version}.npz")),
            "created_at": pd.Timestamp.now(tz="UTC"),
            "content_version": panel.version,
            "test_fraction": 0.3,
        },
    )
    register_model(
        engine,
        model_id=WALK_FORWARD_ID,
        timeframe="1d",
        path=str(model_dir),
        dataset_version=version,
        symbols=list(panel.symbols),
        config=config.to_dict(),
        train_start=panel.index[0].to_pydatetime(),
        train_end=panel.index[-1].to_pydatetime(),
    )
    trained = train_production(engine, WALK_FORWARD_ID, run_id="test", model_dir=model_dir)
    hold_every_symbol(trained.path)
    return trained.model_id


def hold_every_symbol(run: Path) -> None:
    """Set the action means of the PPO model saved in `run` to 0.5 (every symbol at half score, the book the
    tests were written for; the volatility targeting and caps size it): 64 steps teach it nothing, and with long-only scores max(a, 0)
    its untrained means (~0) would hold cash, leaving the trading loop nothing to trade. The trading tests
    test the loop, not the learning; the model stays a real PPO model, loaded like any other."""
    import torch
    from stable_baselines3 import PPO

    from tt_rl.train import MODEL_FILE

    model = PPO.load(run / MODEL_FILE, device="cpu")
    head = model.policy.action_net.linear
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(0.5)
    model.save(run / MODEL_FILE)
