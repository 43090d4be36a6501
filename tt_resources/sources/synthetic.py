"""Deterministic synthetic market (the embedded default source).

Each symbol's 15-minute path is a market factor plus its sector's factor plus idiosyncratic noise. Every
component has a daily stochastic volatility (AR(1) log-volatility: GARCH-like clustering), a U-shaped intraday
volatility profile, Student-t(4) shocks (fat tails) and an overnight gap at the open. 1h and 1d bars are
aggregates of the 15-minute path, so the three timeframes always agree. Bars exist only in NYSE sessions.

Planted signal (`signal`, TT_SYNTHETIC_SIGNAL at the edge): "sign_persistence" makes the sessions' close -> close
returns a sign-persistence market (tt_resources.sign_persistence, SESSION_STRENGTH; the drift is spread evenly
over each session's bars), so a policy that holds yesterday's risers has a real, known edge; "none" is the plain
market, where no policy has one.

Random draws come from generators seeded by (seed, component, calendar year), and the volatility filter and
the planted drift are causal, so extending the horizon never changes bars already generated: incremental
ingests stay consistent. A database holds one market: switching the signal needs a fresh database.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from tt_resources import calendar
from tt_resources.sign_persistence import SESSION_STRENGTH, persistence_drift
from tt_resources.sources.base import Chunk, SourceStats, one_chunk
from tt_resources.terms import SOURCE_BAR_COLUMNS, SYNTHETIC_SIGNALS, SyntheticSignal, aware_utc
from tt_resources.timeframes import get_timeframe
from tt_resources.watchlist import Listing

ORIGIN = pd.Timestamp("2016-01-01", tz="UTC")  # first synthetic session; nothing exists before it
SECTORS = (
    "Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Communication Services",
    "Industrials",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Real Estate",
    "Materials",
)
T_DF = 4.0  # Student-t degrees of freedom of every shock
_T_SCALE = np.sqrt((T_DF - 2) / T_DF)  # makes t(4) draws unit-variance
_HOUR_NS = 3_600 * 10**9


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


class _Grid:
    """The 15-minute bar grid from ORIGIN to the end of `year`, with per-year block sizes."""

    def __init__(self, year: int) -> None:
        end = min(
            pd.Timestamp(f"{year + 1}-01-01", tz="UTC"), calendar.nyse().last_session.tz_localize("UTC")
        )
        table = calendar.bar_table("15m", ORIGIN, end)
        self.ts = table["ts"].to_numpy("datetime64[ns]").view("i8")
        self.end = table["end"].to_numpy("datetime64[ns]").view("i8")
        session = table["session"].to_numpy()
        self.first = np.r_[True, session[1:] != session[:-1]]  # first bar of a session
        self.session_idx = np.cumsum(self.first) - 1
        minutes = (self.ts - self.ts[self.first][self.session_idx]) // (60 * 10**9)
        # U-shaped intraday volatility (and volume) profile over minutes since the open, unit mean square
        shape = 1.0 + 1.2 * np.exp(-minutes / 45.0) + 0.6 * np.exp(-(375 - minutes) / 45.0)
        self.profile = shape / np.sqrt(np.mean(shape**2) * 26)  # a full session's variance sums to 1
        self.volume_share = shape / (np.mean(shape) * 26)
        years = pd.to_datetime(self.ts).year.to_numpy()
        self.years = np.unique(years)
        self.bars_per_year = np.array([np.sum(years == y) for y in self.years])
        self.sessions_per_year = np.array([np.sum(self.first[years == y]) for y in self.years])

    def draws(self, seed: int, component: str) -> dict[str, np.ndarray]:
        """Unit shocks for one component, concatenated over year blocks: per bar (t, z1..z3), per session."""
        blocks: list[dict[str, np.ndarray]] = []
        for year, n_bars, n_sessions in zip(
            self.years, self.bars_per_year, self.sessions_per_year, strict=True
        ):
            rng = np.random.default_rng([seed, _key(component), int(year)])
            blocks.append(
                {
                    "shock": rng.standard_t(T_DF, n_bars) * _T_SCALE,
                    "extra": rng.standard_normal((3, n_bars)),
                    "vol": rng.standard_normal(n_sessions),
                    "gap": rng.standard_t(T_DF, n_sessions) * _T_SCALE,
                }
            )
        return {k: np.concatenate([b[k] for b in blocks], axis=-1) for k in blocks[0]}

    def factor(self, draws: dict[str, np.ndarray], daily_vol: float) -> np.ndarray:
        """15-minute log returns of a factor with daily volatility `daily_vol` and clustered volatility."""
        log_vol = ar1(draws["vol"], scale=0.25, persistence=0.97)  # stationary std ~ 1.03
        sigma = daily_vol * np.exp(0.45 * log_vol - 0.1)
        return sigma[self.session_idx] * self.profile * draws["shock"]


def ar1(shocks: np.ndarray, scale: float, persistence: float) -> np.ndarray:
    """The AR(1) path y[t] = persistence * y[t-1] + scale * shocks[t] from y[-1] = 0, shape of `shocks` (1-D).

    Bit for bit what `scipy.signal.lfilter([scale], [1, -persistence], shocks)` returns (tested), without the
    1.3 s that importing scipy.signal costs every process that generates bars; a loop over sessions (a few
    thousand) takes about a millisecond."""
    path = np.empty_like(shocks)
    level = 0.0
    for t, shock in enumerate(shocks.tolist()):
        level = persistence * level + scale * shock
        path[t] = level
    return path


def pinned_clock(end: str) -> Callable[[], pd.Timestamp]:
    """The synthetic market's clock for TT_SYNTHETIC_END: a fixed instant (`YYYY-MM-DD`, 00:00 UTC: the
    sessions before that day have closed), or the wall clock for "now"."""
    if end == "now":
        return lambda: pd.Timestamp.now(tz="UTC")
    instant = pd.Timestamp(end, tz="UTC")
    return lambda: instant


class SyntheticSource:
    """Deterministic bars from (seed, symbol, sector, signal); a listing without a sector gets a hashed one.
    `signal` is one of SYNTHETIC_SIGNALS; `clock` is the market's present (default the wall clock; the
    platform builds it pinned, pinned_clock): no bar closes after it, and ingest takes it as "now"."""

    name = "synthetic"
    concurrency = 1  # generating is CPU-bound: threads would only contend

    def __init__(
        self,
        seed: int = 7,
        clock: Callable[[], pd.Timestamp] | None = None,
        signal: SyntheticSignal = "sign_persistence",
    ) -> None:
        if signal not in SYNTHETIC_SIGNALS:
            raise ValueError(f"unknown synthetic signal {signal!r}; valid: {', '.join(SYNTHETIC_SIGNALS)}")
        self.signal = signal
        self.seed = int(seed)
        self.clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self.stats = SourceStats()
        self._grid: _Grid | None = None
        self._factors: dict[str, np.ndarray] = {}
        self._paths: dict[tuple[Listing, str], dict[str, np.ndarray]] = {}

    @staticmethod
    def sector(listing: Listing) -> str:
        return listing.sector or SECTORS[_key(listing.symbol) % len(SECTORS)]

    def fetch_chunks(self, listing: Listing, timeframe: str, start, end) -> Iterator[Chunk]:
        """[start, end) as one chunk (see fetch)."""
        yield from one_chunk(lambda: self.fetch(listing, timeframe, start, end), self.stats, start, end)

    def fetch(self, listing: Listing, timeframe: str, start, end) -> pd.DataFrame:
        """Bars of `listing` starting in [start, end) that have closed by the source's clock."""
        tf = get_timeframe(timeframe)
        now = self.clock()
        start, end = aware_utc(start, "start"), min(aware_utc(end, "end"), now)
        self.stats.requests += 1
        self._ensure_horizon(end)
        path = self.bars(listing, tf.name)
        lo = np.searchsorted(path["ts"], max(start, ORIGIN).value, side="left")
        hi = max(lo, np.searchsorted(path["ts"], end.value, side="left"))
        hi = lo + np.searchsorted(path["end"][lo:hi] > now.value, True)  # drop bars still open at `now`
        frame = pd.DataFrame({c: path[c][lo:hi] for c in SOURCE_BAR_COLUMNS})
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        self.stats.bars += len(frame)
        return frame

    def close(self) -> None:
        """Nothing to release."""

    def _ensure_horizon(self, end: pd.Timestamp) -> None:
        year = max(end.year, ORIGIN.year)
        if self._grid is None or self._grid.years[-1] < year:
            self._grid = _Grid(year)
            self._factors.clear()
            self._paths.clear()

    def _factor(self, component: str, daily_vol: float) -> np.ndarray:
        if component not in self._factors:
            grid = self._grid
            self._factors[component] = grid.factor(grid.draws(self.seed, component), daily_vol)
        return self._factors[component]

    def bars(self, listing: Listing, timeframe: str) -> dict[str, np.ndarray]:
        """The whole generated history of one listing/timeframe as arrays (ts, end in int64 ns UTC)."""
        if (listing, timeframe) not in self._paths:
            if (listing, "15m") not in self._paths:
                self._paths[(listing, "15m")] = self._path_15m(listing)
            path = self._paths[(listing, "15m")]
            if timeframe != "15m":
                self._paths[(listing, timeframe)] = self._aggregate(path, timeframe)
        return self._paths[(listing, timeframe)]

    def _path_15m(self, listing: Listing) -> dict[str, np.ndarray]:
        grid, symbol = self._grid, listing.symbol
        traits = np.random.default_rng([self.seed, _key(symbol)]).random(8)
        beta_m, beta_s = 0.6 + 0.8 * traits[0], 0.4 + 0.8 * traits[1]
        idio_vol = 0.008 + 0.014 * traits[2]  # daily
        price0 = float(np.exp(np.log(15) + traits[3] * np.log(400 / 15)))
        daily_volume = float(np.exp(np.log(3e5) + traits[4] * np.log(2e7 / 3e5)))
        drift = (-0.05 + 0.2 * traits[5]) / (252 * 26)  # per bar
        trade_size = 80 + 120 * traits[6]

        draws = grid.draws(self.seed, f"symbol:{symbol}")
        ret = (
            beta_m * self._factor("market", 0.009)
            + beta_s * self._factor(f"sector:{self.sector(listing)}", 0.006)
            + grid.factor(draws, idio_vol)
            + drift
        )
        gap = np.zeros_like(ret)
        gap[grid.first] = 0.35 * (0.009 + idio_vol) * draws["gap"]
        gap[0] = 0.0
        if self.signal == "sign_persistence":
            ret = ret + self._planted_drift(gap + ret)
        log_close = np.log(price0) + np.cumsum(gap + ret)
        close = np.exp(log_close)
        open_ = np.exp(log_close - ret)
        bar_vol = np.abs(ret) + (0.009 + idio_vol) * grid.profile
        z1, z2, z3 = draws["extra"]
        high = np.maximum(open_, close) * np.exp(0.5 * np.abs(z1) * bar_vol)
        low = np.minimum(open_, close) * np.exp(-0.5 * np.abs(z2) * bar_vol)
        volume = np.round(
            daily_volume * grid.volume_share * np.exp(0.3 * z3) * (1 + np.abs(ret) / (bar_vol + 1e-12))
        )
        return {
            "ts": grid.ts,
            "end": grid.end,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "wap": (high + low + close) / 3.0,
            "bar_count": np.maximum(1.0, np.round(volume / trade_size)),
        }

    def _planted_drift(self, log_returns: np.ndarray) -> np.ndarray:
        """Per-bar drift (like `log_returns`, 15-minute log returns incl. gaps) of the sign-persistence signal:
        each session's bars share its drift, +-SESSION_STRENGTH with the sign of the previous session's return."""
        grid = self._grid
        starts = np.flatnonzero(grid.first)
        base = np.add.reduceat(log_returns, starts)  # sessions' close -> close log returns before the drift
        drift = persistence_drift(base, SESSION_STRENGTH)
        bars = np.diff(np.r_[starts, len(log_returns)])
        return (drift / bars)[grid.session_idx]

    def _aggregate(self, path: dict[str, np.ndarray], timeframe: str) -> dict[str, np.ndarray]:
        """1h / 1d bars from 15m bars: first open, max high, min low, last close, summed volume."""
        grid = self._grid
        boundary = grid.first if timeframe == "1d" else grid.first | (path["ts"] % _HOUR_NS == 0)
        starts = np.flatnonzero(boundary)
        last = np.r_[starts[1:], len(boundary)] - 1
        volume = np.add.reduceat(path["volume"], starts)
        return {
            "ts": path["ts"][starts],
            "end": path["end"][last],
            "open": path["open"][starts],
            "high": np.maximum.reduceat(path["high"], starts),
            "low": np.minimum.reduceat(path["low"], starts),
            "close": path["close"][last],
            "volume": volume,
            "wap": np.add.reduceat(path["wap"] * path["volume"], starts) / np.maximum(volume, 1.0),
            "bar_count": np.add.reduceat(path["bar_count"], starts),
        }
