"""Seed a migrated database with a realistic trained model and its walk-forward evaluation for dashboard tests.

Writes tt_dataset, tt_model, a logged training episode, test episodes for ppo, the oracle and the baselines on
every window (per step: tt_portfolio, tt_holdings, tt_action, tt_reward), tt_eval rows (per fold and stitched =
-1) and tt_prices + tt_fetch_log for the freshness panel (one stale and one failed partition). With `seeds`, the
agent is played as tt_pipeline trains it: one fold model per (fold, seed) trained up to its fold's test window,
each with its logged training episode, tt_eval rows per seed and the summary row across seeds. Deterministic for
a seed and a `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from tt_resources.calendar import expected_bar_starts, last_closed_bar
from tt_resources.db.bulk import insert_frame
from tt_resources.db.schema import (
    actions,
    datasets,
    episodes,
    evals,
    fetch_log,
    holdings,
    models,
    portfolio,
    prices,
    rewards,
)
from tt_resources.terms import AGENT, POLICY_NAMES
from tt_resources.timeframes import TIMEFRAME_NAMES, get_timeframe

SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "AMZN", "JPM", "XOM")
INITIAL_NET_WORTH = 100_000.0
COST_RATE = 0.0005  # commission + slippage per unit of traded value
STALE_PARTITION = ("XOM", "1h")
FAILED_PARTITION = ("JPM", "15m")
INTRADAY_BARS = 40
DAGSTER_RUN_ID = "0b7a3c2e-5d4f-4e1a-9c8b-7a6d5e4f3c2b"  # Dagster's run ids are UUIDs


@dataclass
class Simulation:
    """One policy run over prices (S + 1, N): per-step arrays of shape (S,) or (S, N)."""

    weights: np.ndarray
    quantity: np.ndarray
    value: np.ndarray
    trade_value: np.ndarray
    cost: np.ndarray
    pnl: np.ndarray
    price: np.ndarray
    net_worth: np.ndarray
    cash: np.ndarray
    period_return: np.ndarray
    drawdown: np.ndarray
    turnover: np.ndarray
    costs: np.ndarray
    scores: np.ndarray
    rebalanced: np.ndarray


@dataclass(frozen=True)
class SeededEvaluation:
    """What the seed wrote: enough for tests to compare the dashboard with the database."""

    model_id: str
    timeframe: str
    symbols: tuple[str, ...]
    split_ts: pd.Timestamp
    train_episode_id: str
    # (policy, window) -> episode_id (the agent's: its first seed's)
    test_episodes: dict[tuple[str, int], str] = field(default_factory=dict)
    agent_episodes: dict[tuple[int, int], str] = field(default_factory=dict)  # (seed, window), with `seeds`
    fold_train_episodes: dict[tuple[int, int], str] = field(
        default_factory=dict
    )  # (seed, fold), with `seeds`
    steps_per_window: int = 0
    windows: int = 0


def bar_index(timeframe: str, bars: int, now: pd.Timestamp) -> pd.DatetimeIndex:
    """The last `bars` NYSE bar starts of `timeframe` that have closed at `now`."""
    per_session = get_timeframe(timeframe).bars_per_year / 252
    start = now - pd.Timedelta(days=int(bars / per_session * 1.5) + 10)
    grid = expected_bar_starts(timeframe, start, last_closed_bar(timeframe, now) + pd.Timedelta(1))
    return grid[-bars:]


def random_prices(rng: np.random.Generator, bars: int, n_symbols: int) -> np.ndarray:
    """Geometric random walks (bars, n_symbols) with per-symbol drift and volatility, starting near 100."""
    drift = rng.uniform(-0.0002, 0.0008, n_symbols)
    vol = rng.uniform(0.008, 0.025, n_symbols)
    shocks = rng.standard_normal((bars - 1, n_symbols)) * vol + drift
    start = rng.uniform(40, 300, n_symbols)
    return start * np.exp(np.vstack([np.zeros(n_symbols), np.cumsum(shocks, axis=0)]))


def policy_targets(policy: str, px: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Target weights (S, N) (NaN row = no trade that step) and raw scores (S, N) for prices (S + 1, N)."""
    steps, n = px.shape[0] - 1, px.shape[1]
    targets = np.full((steps, n), np.nan)
    scores = np.zeros((steps, n))
    if policy == "ppo":
        log_px = np.log(px[:-1])
        momentum = log_px - np.vstack([np.repeat(log_px[:1], 10, axis=0), log_px[:-10]])
        foresight = np.diff(np.log(px), axis=0)  # the seed's "skill": a glimpse of the next bar
        scores = 30 * momentum + 6 * foresight + 0.1 * rng.standard_normal((steps, n))
        top = scores >= np.sort(scores, axis=1)[:, [-3]]  # long the three best scores
        exp = np.where(top, np.exp(scores - scores.max(axis=1, keepdims=True)), 0.0)
        targets = 0.95 * exp / exp.sum(axis=1, keepdims=True)
    elif policy == "oracle":  # all in the next bar's best symbol
        scores = np.diff(np.log(px), axis=0)
        targets = 0.95 * (scores == scores.max(axis=1, keepdims=True))
    elif policy == "equal_weight":
        targets[0] = 1.0 / n
        scores[:] = 1.0
    elif policy == "equal_weight_vol":
        rets = np.diff(np.log(px), axis=0)
        vol = pd.DataFrame(rets).rolling(20, min_periods=2).std().bfill().fillna(0.01).to_numpy()
        inv = 1.0 / np.maximum(vol, 1e-4)
        scores = inv / inv.sum(axis=1, keepdims=True)
        exposure = np.minimum(1.0, 0.01 / np.maximum(np.sqrt((scores**2 * vol**2).sum(axis=1)), 1e-6))
        targets[::5] = (scores * exposure[:, None])[::5]
    return targets, scores


def simulate(px: np.ndarray, targets: np.ndarray, scores: np.ndarray, band: float = 0.3) -> Simulation:
    """Trade to `targets` at each step's price unless they are within `band` (sum of |weight change|) of the
    current weights, pay COST_RATE on traded value, mark to the next price."""
    steps, n = targets.shape
    out = {
        name: np.zeros((steps, n)) for name in ("weights", "quantity", "value", "trade_value", "cost", "pnl")
    }
    net_worth, cash_path = np.zeros(steps), np.zeros(steps)
    qty, cash = np.zeros(n), INITIAL_NET_WORTH
    for s in range(steps):
        value = qty * px[s]
        pre = cash + value.sum()
        skip = np.isnan(targets[s, 0]) or (s > 0 and np.abs(targets[s] - value / pre).sum() < band)
        trade = np.zeros(n) if skip else targets[s] * pre - value
        cost = np.abs(trade) * COST_RATE
        qty = (value + trade) / px[s]
        cash -= trade.sum() + cost.sum()
        marked = qty * px[s + 1]
        net_worth[s] = cash + marked.sum()
        cash_path[s] = cash
        for name, arr in (("quantity", qty), ("value", marked), ("trade_value", trade), ("cost", cost)):
            out[name][s] = arr
        out["pnl"][s] = qty * (px[s + 1] - px[s])
        out["weights"][s] = marked / net_worth[s]
    previous = np.concatenate([[INITIAL_NET_WORTH], net_worth[:-1]])  # = pre-trade net worth of each step
    return Simulation(
        price=px[1:],
        net_worth=net_worth,
        cash=cash_path,
        period_return=net_worth / previous - 1,
        drawdown=1 - net_worth / np.maximum.accumulate(np.concatenate([[INITIAL_NET_WORTH], net_worth]))[1:],
        turnover=np.abs(out["trade_value"]).sum(axis=1) / previous,
        costs=out["cost"].sum(axis=1),
        scores=scores,
        rebalanced=np.abs(out["trade_value"]).sum(axis=1) > 0,
        **out,
    )


def metrics(returns: np.ndarray, turnover: np.ndarray, costs: np.ndarray, bars_per_year: int) -> dict:
    """tt_eval's metric columns for per-step net returns (NULL where undefined, e.g. Sharpe of cash)."""
    equity = np.cumprod(1 + returns)
    total = float(equity[-1] - 1)
    years = len(returns) / bars_per_year
    cagr = float((1 + total) ** (1 / years) - 1)
    std = float(returns.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0) ** 2)))
    max_dd = float((1 - equity / np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]).max())
    scale = np.sqrt(bars_per_year)
    return {
        "total_return": total,
        "cagr": cagr,
        "ann_volatility": std * scale,
        "sharpe": float(returns.mean() / std * scale) if std > 1e-12 else None,
        "sortino": float(returns.mean() / downside * scale) if downside > 1e-12 else None,
        "max_drawdown": max_dd,
        "calmar": cagr / max_dd if max_dd > 1e-12 else None,
        "turnover": float(turnover.mean()),
        "costs": float(costs.sum() / INITIAL_NET_WORTH),
        "hit_rate": float((returns > 0).mean()),
    }


def write_steps(
    conn: sa.Connection,
    episode_id: str,
    sim: Simulation,
    ts: pd.DatetimeIndex,
    symbols: Sequence[str],
    steps: range,
) -> None:
    """Log steps `steps` of a simulation: tt_portfolio, tt_holdings, tt_action and tt_reward rows."""
    s = np.arange(steps.start, steps.stop)
    n = len(symbols)
    per_step = {"episode_id": episode_id, "step": s}
    penalty = -0.1 * sim.turnover[s] * COST_RATE
    insert_frame(
        conn,
        portfolio,
        pd.DataFrame(
            per_step
            | {
                "ts": ts[s],
                "net_worth": sim.net_worth[s],
                "cash": sim.cash[s],
                "gross_exposure": np.abs(sim.weights[s]).sum(axis=1),
                "period_return": sim.period_return[s],
                "drawdown": sim.drawdown[s],
                "turnover": sim.turnover[s],
                "costs": sim.costs[s],
            }
        ),
    )
    per_symbol = pd.DataFrame(
        {"episode_id": episode_id, "step": np.repeat(s, n), "symbol": np.tile(symbols, len(s))}
        | {
            name: getattr(sim, name)[s].ravel()
            for name in ("quantity", "price", "value", "trade_value", "cost", "pnl")
        }
        | {"weight": sim.weights[s].ravel()}
    )
    # like tt_rl's episode logger: a row per step and symbol with a position or a trade
    insert_frame(conn, holdings, per_symbol[(per_symbol["value"] != 0) | (per_symbol["trade_value"] != 0)])
    insert_frame(
        conn,
        actions,
        pd.DataFrame(
            per_step
            | {
                "ts": ts[s],
                "action": list(np.round(sim.scores[s], 6).tolist()),
                "rebalanced": sim.rebalanced[s],
            }
        ),
    )
    insert_frame(
        conn,
        rewards,
        pd.DataFrame(
            per_step
            | {
                "reward": sim.period_return[s] + penalty,
                "sharpe_term": sim.period_return[s],
                "drawdown_penalty": -0.1 * sim.drawdown[s],
                "turnover_penalty": penalty,
            }
        ),
    )


def _episode_row(
    episode_id: str, model_id: str | None, run_id: str, timeframe: str, policy: str, split: str, **extra
) -> dict:
    return {
        "episode_id": episode_id,
        "model_id": model_id,
        "run_id": run_id,
        "timeframe": timeframe,
        "split": split,
        "policy": policy,
        **extra,
    }


def seed_prices(
    conn: sa.Connection,
    symbols: Sequence[str],
    panels: dict[str, tuple[pd.DatetimeIndex, np.ndarray]],
    now: pd.Timestamp,
) -> None:
    """tt_prices for every timeframe's panel (the stale partition without its last 10 bars) and tt_fetch_log."""
    for timeframe, (index, px) in panels.items():
        for i, symbol in enumerate(symbols):
            cut = -10 if (symbol, timeframe) == STALE_PARTITION else None
            close = px[:cut, i]
            insert_frame(
                conn,
                prices,
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "timeframe": timeframe,
                        "ts": index[:cut],
                        "open": close * 0.998,
                        "high": close * 1.01,
                        "low": close * 0.99,
                        "close": close,
                        "volume": 1e6,
                        "wap": close,
                        "bar_count": 1000,
                        "source": "synthetic",
                        "ingested_at": now,
                    }
                ),
            )
            log = {
                "symbol": symbol,
                "timeframe": timeframe,
                "source": "synthetic",
                "request": "historical",
                "end_ts": now.to_pydatetime(),
                "duration": "1 Y",
                "bar_size": get_timeframe(timeframe).ib_bar_size,
                "outcome": "ok",
                "bars": len(close),
                "latency_s": 0.2,
                "requested_at": (now - pd.Timedelta(minutes=10)).to_pydatetime(),
            }
            conn.execute(fetch_log.insert(), log)
            if (symbol, timeframe) == FAILED_PARTITION:
                failed = log | {
                    "outcome": "pacing",
                    "error_code": 162,
                    "message": "Historical Market Data Service error message:API historical data query cancelled",
                    "bars": 0,
                    "requested_at": (now - pd.Timedelta(minutes=1)).to_pydatetime(),
                }
                conn.execute(fetch_log.insert(), failed)


def seed_evaluation(
    engine: sa.Engine,
    *,
    timeframe: str = "1d",
    symbols: Sequence[str] = SYMBOLS,
    train_steps: int = 120,
    windows: int = 3,
    steps_per_window: int = 40,
    model_id: str = "ppo-1d-seed",
    now: pd.Timestamp | None = None,
    seed: int = 7,
    seeds: Sequence[int] = (),
    run_id: str = DAGSTER_RUN_ID,
    with_prices: bool = True,
    policies: Sequence[str] = POLICY_NAMES,
) -> SeededEvaluation:
    """Write a model, its training episode(s), a walk-forward evaluation (the agent per seed of `seeds`, else
    once) and (`with_prices`) price data and fetch log rows, all of run `run_id`; see the module doc. `policies`
    play every window (the oracle's foresight compounds past the float range over 100,000 bars)."""
    now = now or pd.Timestamp.now(tz="UTC")
    rng = np.random.default_rng(seed)
    symbols = tuple(symbols)
    tf = get_timeframe(timeframe)
    bars = train_steps + windows * steps_per_window + 1
    index = bar_index(timeframe, bars, now)
    px = random_prices(rng, bars, len(symbols))
    split = train_steps
    created = now - pd.Timedelta(hours=1)
    panels = {timeframe: (index, px)}
    for other in TIMEFRAME_NAMES:
        if other != timeframe:
            panels[other] = (
                bar_index(other, INTRADAY_BARS, now),
                random_prices(rng, INTRADAY_BARS, len(symbols)),
            )
    model = {
        "timeframe": timeframe,
        "algo": "PPO",
        "dataset_version": f"ds-{model_id}",
        "code_version": "seed",
        "symbols": list(symbols),
        "config": {"learning_rate": 3e-4, "n_steps": 256, "cost_rate": COST_RATE},
        "train_metrics": {"ep_rew_mean": 0.012},
        "total_timesteps": 20_000,
        "train_start": index[0].to_pydatetime(),
        "run_id": run_id,
        "created_at": created.to_pydatetime(),
    }
    # (policy, seed) pairs that play every window, in POLICY_NAMES order; the agent's seed -1 without `seeds`
    players = [(p, -1) for p in policies if p != AGENT or not seeds] + [(AGENT, s) for s in seeds]
    players.sort(key=lambda player: POLICY_NAMES.index(player[0]))

    with engine.begin() as conn:
        if with_prices:
            seed_prices(conn, symbols, panels, now)
        conn.execute(
            datasets.insert(),
            {
                "dataset_version": model["dataset_version"],
                "timeframe": timeframe,
                "symbols": list(symbols),
                "start_ts": index[0].to_pydatetime(),
                "end_ts": index[-1].to_pydatetime(),
                "split_ts": index[split].to_pydatetime(),
                "n_bars": bars,
                "created_at": created.to_pydatetime(),
            },
        )
        conn.execute(
            models.insert(),
            model
            | {
                "model_id": model_id,
                "path": f"data/models/{model_id}.zip",
                "train_end": index[split - 1].to_pydatetime(),
            },
        )
        train_id = f"{model_id}-train"
        if not seeds:
            train_px = px[: split + 1]
            train_sim = simulate(train_px, *policy_targets(AGENT, train_px, rng))
            _log_episode(
                conn, train_id, model_id, timeframe, AGENT, "train", None, train_sim, index[1 : split + 1],
                symbols, created, run_id,
            )  # fmt: skip

        eval_rows, test_episodes, agent_episodes, fold_trains = [], {}, {}, {}
        stitched: dict[tuple[str, int], list[Simulation]] = {player: [] for player in players}
        for w in range(windows):
            lo, hi = split + w * steps_per_window, split + (w + 1) * steps_per_window
            window_px, window_ts = px[lo : hi + 1], index[lo + 1 : hi + 1]
            for policy, player_seed in players:
                owner, fold_model = (model_id if policy == AGENT else None), None
                if player_seed >= 0:
                    owner = fold_model = f"{model_id}-f{w}-s{player_seed}"
                    fold_trains[(player_seed, w)] = _fold_model(
                        conn, model, model_id, fold_model, (w, player_seed), px, index, (lo, hi), rng, created
                    )
                sim = simulate(window_px, *policy_targets(policy, window_px, rng))
                episode_id = f"{model_id}-{policy}-w{w}" + (f"-s{player_seed}" if player_seed >= 0 else "")
                _log_episode(
                    conn,
                    episode_id,
                    owner,
                    timeframe,
                    policy,
                    "test",
                    w,
                    sim,
                    window_ts,
                    symbols,
                    now,
                    run_id,
                )
                if player_seed >= 0:
                    agent_episodes[(player_seed, w)] = episode_id
                test_episodes.setdefault((policy, w), episode_id)
                stitched[(policy, player_seed)].append(sim)
                eval_rows.append(
                    {
                        "policy": policy,
                        "fold": w,
                        "seed": player_seed,
                        "fold_model_id": fold_model,
                        "train_start": index[0],
                        "train_end": index[lo - 1],
                        "test_start": index[lo],
                        "test_end": index[hi],
                        "episode_id": episode_id,
                        **metrics(sim.period_return, sim.turnover, sim.costs, tf.bars_per_year),
                    }
                )
        span = {"train_start": index[0], "train_end": index[split - 1], "test_start": index[split]}
        span |= {"test_end": index[-1], "fold": -1, "fold_model_id": None, "episode_id": None}
        for (policy, player_seed), sims in stitched.items():
            eval_rows.append(
                span
                | {"policy": policy, "seed": player_seed}
                | metrics(
                    np.concatenate([s.period_return for s in sims]),
                    np.concatenate([s.turnover for s in sims]),
                    np.concatenate([s.costs for s in sims]),
                    tf.bars_per_year,
                )
            )
        if seeds:
            per_seed = [r for r in eval_rows if r["policy"] == AGENT and r["fold"] == -1]
            eval_rows.append(span | {"policy": AGENT, "seed": -1} | seed_summary(per_seed))
        columns = set().union(*eval_rows)  # executemany binds the columns of every row
        conn.execute(
            evals.insert(),
            [
                {
                    **dict.fromkeys(columns),
                    **row,
                    **{
                        k: row[k].to_pydatetime()
                        for k in ("train_start", "train_end", "test_start", "test_end")
                    },
                    "model_id": model_id,
                    "timeframe": timeframe,
                    "run_id": run_id,
                    "created_at": now.to_pydatetime(),
                }
                for row in eval_rows
            ],
        )
    return SeededEvaluation(
        model_id=model_id,
        timeframe=timeframe,
        symbols=symbols,
        split_ts=index[split],
        train_episode_id=fold_trains[(seeds[0], 0)] if seeds else train_id,
        test_episodes=test_episodes,
        agent_episodes=agent_episodes,
        fold_train_episodes=fold_trains,
        steps_per_window=steps_per_window,
        windows=windows,
    )


SEEDED_VERDICT = "Verdict: nothing significant: DSR vs cash 0.412 and DSR vs Equal weight (buy & hold) 0.207"


def seed_summary(per_seed: Sequence[dict]) -> dict:
    """The agent's summary row from its per-seed stitched rows, numbers for display only (tt_rl.evaluate
    computes the real one on the seed ensemble's series): the metrics' means, an interval around the mean
    Sharpe ratio, the seeds' Sharpe range and a verdict line."""
    frame = pd.DataFrame(list(per_seed)).drop(columns=["policy", "seed", "fold"])
    numbers = frame.select_dtypes("number").astype(float)
    sharpe = numbers["sharpe"]
    half = stats.t.ppf(0.975, len(sharpe) - 1) * sharpe.std(ddof=1) / np.sqrt(len(sharpe))
    return numbers.mean().to_dict() | {
        "sharpe_ci_low": sharpe.mean() - half,
        "sharpe_ci_high": sharpe.mean() + half,
        "sharpe_seed_min": sharpe.min(),
        "sharpe_seed_max": sharpe.max(),
        "verdict": SEEDED_VERDICT,
    }


def _fold_model(
    conn: sa.Connection,
    model: dict,
    group_id: str,
    fold_model: str,
    fold_seed: tuple[int, int],
    px: np.ndarray,
    index: pd.DatetimeIndex,
    test: tuple[int, int],
    rng: np.random.Generator,
    created: pd.Timestamp,
) -> str:
    """Register the model of (fold, seed) `fold_seed`, trained on bars [0, lo) and tested on [lo, hi] (`test`),
    and log its training episode; returns that episode's id."""
    (fold, seed), (lo, hi) = fold_seed, test
    conn.execute(
        models.insert(),
        model
        | {
            "model_id": fold_model,
            "path": f"data/models/{fold_model}.zip",
            "train_end": index[lo - 1].to_pydatetime(),
            "group_id": group_id,
            "fold": fold,
            "seed": seed,
            "test_start": index[lo].to_pydatetime(),
            "test_end": index[hi].to_pydatetime(),
        },
    )
    train_px = px[: lo + 1]
    sim = simulate(train_px, *policy_targets(AGENT, train_px, rng))
    episode_id = f"{fold_model}-train"
    _log_episode(
        conn, episode_id, fold_model, model["timeframe"], AGENT, "train", None, sim, index[1 : lo + 1],
        model["symbols"], created, model["run_id"],
    )  # fmt: skip
    return episode_id


def _log_episode(
    conn: sa.Connection,
    episode_id: str,
    model_id: str | None,
    timeframe: str,
    policy: str,
    split: str,
    window: int | None,
    sim: Simulation,
    ts: pd.DatetimeIndex,
    symbols: Sequence[str],
    started: pd.Timestamp,
    run_id: str,
) -> None:
    steps = len(sim.net_worth)
    conn.execute(
        episodes.insert(),
        _episode_row(
            episode_id,
            model_id,
            run_id,
            timeframe,
            policy,
            split,
            window=window,
            status="finished",
            started_at=started.to_pydatetime(),
            finished_at=(started + pd.Timedelta(seconds=30)).to_pydatetime(),
            start_ts=ts[0].to_pydatetime(),
            end_ts=ts[-1].to_pydatetime(),
            steps=steps,
            initial_net_worth=INITIAL_NET_WORTH,
            final_net_worth=float(sim.net_worth[-1]),
            total_reward=float(sim.period_return.sum()),
            max_drawdown=float(sim.drawdown.max()),
            terminated=False,
            truncated=True,
            symbols=list(symbols),
        ),
    )
    write_steps(conn, episode_id, sim, ts, symbols, range(steps))


@dataclass
class LiveEpisode:
    """A ppo training episode being logged step by step, as the training loop would (status running)."""

    engine: sa.Engine
    episode_id: str
    sim: Simulation
    ts: pd.DatetimeIndex
    symbols: tuple[str, ...]
    logged: int = 0

    def log(self, steps: int) -> None:
        """Append the next `steps` steps in one transaction."""
        upto = min(self.logged + steps, len(self.sim.net_worth))
        with self.engine.begin() as conn:
            write_steps(conn, self.episode_id, self.sim, self.ts, self.symbols, range(self.logged, upto))
            conn.execute(episodes.update().where(episodes.c.episode_id == self.episode_id).values(steps=upto))
        self.logged = upto

    def finish(self) -> None:
        """Mark the episode finished with its final net worth."""
        with self.engine.begin() as conn:
            conn.execute(
                episodes.update()
                .where(episodes.c.episode_id == self.episode_id)
                .values(status="finished", final_net_worth=float(self.sim.net_worth[self.logged - 1]))
            )


def start_live_episode(
    engine: sa.Engine,
    seeded: SeededEvaluation,
    *,
    steps: int = 200,
    now: pd.Timestamp | None = None,
    seed: int = 11,
) -> LiveEpisode:
    """Open a running training episode for the seeded model (no steps logged yet)."""
    now = now or pd.Timestamp.now(tz="UTC")
    rng = np.random.default_rng(seed)
    px = random_prices(rng, steps + 1, len(seeded.symbols))
    ts = bar_index(seeded.timeframe, steps + 1, seeded.split_ts)[1:]
    episode_id = f"{seeded.model_id}-live"
    with engine.begin() as conn:
        conn.execute(
            episodes.insert(),
            _episode_row(
                episode_id,
                seeded.model_id,
                DAGSTER_RUN_ID,
                seeded.timeframe,
                "ppo",
                "train",
                status="running",
                started_at=now.to_pydatetime(),
                start_ts=ts[0].to_pydatetime(),
                steps=0,
                initial_net_worth=INITIAL_NET_WORTH,
                symbols=list(seeded.symbols),
            ),
        )
    return LiveEpisode(engine, episode_id, simulate(px, *policy_targets("ppo", px, rng)), ts, seeded.symbols)
