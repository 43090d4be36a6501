"""The platform's settings: every environment variable it reads, typed, with its default and meaning.

`Settings` (pydantic-settings) is the one place the environment is read; `.env` in the working directory or
the project root is loaded into the environment first (never overriding a variable that is set). Embedded
defaults: no DATABASE_URL -> SQLite file under the data directory; no TT_SOURCE -> synthetic market data;
no DAGSTER_HOME -> `<data dir>/dagster_home`. The README's configuration table lists exactly these fields
(tests/test_settings.py checks it).
"""

from __future__ import annotations

import errno
import os
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tt_resources import urls
from tt_resources.sources.settings import SYNTHETIC_END
from tt_resources.terms import DateFormat, PacingMode, SourceName, SyntheticSignal

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# variables whose value may hold a password: an error about them never shows the value
SECRET_FIELDS = frozenset({"database_url", "tt_celery_broker"})


class SettingsError(ValueError):
    """An environment variable has a value of the wrong type or range; the message names it."""


class Settings(BaseSettings):
    """Every environment variable of the platform (field name = variable name, lower case)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: str | None = Field(
        None,
        description="platform database, e.g. `postgresql://user:pass@host:5432/tt` (in the password escape "
        "`@` `%` `/` `:` as `%40` `%25` `%2F` `%3A`); unset: SQLite `<data dir>/tt.sqlite`",
    )
    tt_data_dir: Path | None = Field(
        None,
        description="SQLite file, datasets, models, Dagster home; unset: `data/`. `~` is expanded; a relative "
        "path is resolved against the working directory (said once)",
    )
    tt_source: SourceName = Field("synthetic", description="market-data source: `synthetic`, `csv` or `ibkr`")
    tt_synthetic_signal: SyntheticSignal = Field(
        "sign_persistence",
        description="signal planted in the synthetic market: `sign_persistence` (a known 1-day edge, so the "
        "demo can show learning) or `none` (the plain market)",
    )
    tt_synthetic_end: str = Field(
        SYNTHETIC_END,
        description="the synthetic market's clock: it ends at this UTC date (`YYYY-MM-DD`, bars closed before "
        "it), so `make demo` sees the same market on any day and machine; a later date extends it, `now` "
        "follows the wall clock",
    )
    tt_csv_dir: Path | None = Field(
        None, description="directory of `<SYMBOL>_<tf>.csv/.parquet` files; unset: `<data dir>/csv`"
    )
    tt_csv_tz: str | None = Field(
        None,
        description="IANA time zone of naive timestamps in CSV/Parquet files (e.g. `America/New_York`); unset: "
        "naive intraday times are rejected (`tt ingest --tz`)",
    )
    tt_csv_date_format: DateFormat | None = Field(
        None,
        description="field order of CSV dates like `03/06/2024`: `day-first` or `month-first`; unset: what "
        "the file shows (a field above 12), else the file is rejected (`tt ingest --date-format`)",
    )
    ib_host: str = Field("127.0.0.1", description="IB Gateway / TWS host")
    ib_port: int = Field(4002, ge=1, le=65535, description="IB Gateway / TWS port")
    ib_client_id: int = Field(
        17, ge=0, description="first IB API client id (the next ones are tried if taken: IB_CLIENT_IDS)"
    )
    ib_client_ids: int = Field(
        8,
        ge=1,
        description="client ids tried from IB_CLIENT_ID on: at least the connections open at once (Celery "
        "workers' `ibkr` pool slots + `tt` processes); the gateway answers 326 for an id in use",
    )
    ib_trading_client_id: int = Field(
        9,
        ge=0,
        description="IB API client id of the trading broker (`tt trade`, the Dagster trading assets): one fixed "
        "id apart from the market-data ids, so our orders are placed, seen and cancelled by one client; "
        "a second trading connection at once is refused (326)",
    )
    ib_timeout_s: float = Field(60.0, gt=0, description="seconds to wait for one historical-data answer")
    tt_ib_pacing: PacingMode = Field(
        "adaptive",
        description="IBKR pacing: `adaptive` (bounded concurrency, AIMD on pacing violations; IBKR's rule for "
        "bars >= 1 min) or `strict` (also at most TT_IB_MAX_REQUESTS per TT_IB_WINDOW_S)",
    )
    tt_ib_max_requests: int = Field(
        60, ge=1, description="strict pacing: historical requests per pacing window (IBKR: 60)"
    )
    tt_ib_window_s: float = Field(
        600.0,
        gt=0,
        description="strict pacing: window in seconds, also the pause after a violation (IBKR: 600)",
    )
    tt_ib_concurrency: int = Field(
        16,
        ge=1,
        le=49,
        description="most IBKR historical requests in flight at once, all processes (IBKR: 50)",
    )
    tt_ib_reconnect_s: float = Field(
        300.0,
        ge=0,
        description="how long to keep reconnecting to a gateway that went away (e.g. its restart), one window "
        "per run; also bounds the first connection",
    )
    tt_ib_hole_attempts: int = Field(
        3, ge=1, description="fetches of a span IBKR did not deliver before later runs stop retrying it"
    )
    tt_watchlist: Path | None = Field(None, description="watchlist CSV; unset: `data/tensorwatchlist.csv`")
    tt_watchlist_limit: int | None = Field(None, ge=1, description="use only the watchlist's first N symbols")
    dagster_home: Path | None = Field(
        None,
        description="Dagster instance; unset: `<data dir>/dagster_home` (copy `dagster.postgres.yaml` "
        "there for PostgreSQL storage, `dagster.celery.yaml` for scale-out on Celery; their `DAGSTER_PG_*` "
        "variables and the storage are checked before any work). `~` and a relative path as TT_DATA_DIR",
    )
    tt_executor: Literal["multiprocess", "celery"] = Field(
        "multiprocess",
        description="where Dagster runs steps: `multiprocess` (the run's own processes; `tt` runs in-process, "
        "except a `retrain_job` of several jobs of 8,192+ PPO steps: a process per step, forked from a server "
        "that has loaded torch once, as many at once as there are cores) or `celery` (Celery workers, "
        "`tt workers`; every run, `tt demo` and `--via-dagster` included)",
    )
    tt_celery_broker: str = Field(
        "amqp://guest@127.0.0.1:5672//",
        description="Celery broker URL (RabbitMQ) of the `celery` executor and `tt workers`; its password is "
        "never printed",
    )
    tt_celery_queue: str = Field(
        "dagster",
        min_length=1,
        description="Celery queue the `celery` executor sends steps to and workers read",
    )
    tt_celery_wait_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds a `celery` run waits for a worker consuming TT_CELERY_QUEUE before it fails "
        "naming the queue and the broker",
    )
    tt_retrain_min_sharpe: float = Field(
        0.0,
        description="retrain when the model's out-of-sample Sharpe is below it and the code or config changed",
    )

    tt_trading_enabled: bool = Field(
        False,
        description="send orders (`tt trade`, the trading assets); off: the target is computed and stored, "
        "the orders printed, nothing is sent (docs/trading.md)",
    )
    tt_trading_allow_live: bool = Field(
        False,
        description="allow a live account; off: only IBKR paper accounts (ids starting `DU`) are traded",
    )
    tt_trading_halt: bool = Field(
        False,
        description="kill switch: no order is submitted while set (as `tt halt`; `tt halt --off` clears "
        "only the command's halt)",
    )
    tt_trading_min_notional: float = Field(
        100.0, ge=0, description="skip an order below this value (shares x last close, account currency)"
    )
    tt_trading_max_gross: float = Field(
        1.0, gt=0, description="pre-trade limit: gross exposure sum |weight| of the book after the orders"
    )
    tt_trading_max_weight: float = Field(
        0.25, gt=0, le=1, description="pre-trade limit: |weight| of one symbol after the orders"
    )
    tt_trading_max_sector_weight: float = Field(
        0.5,
        gt=0,
        le=1,
        description="pre-trade limit: gross weight of one watchlist sector after the orders (symbols "
        "without a sector are not grouped)",
    )
    tt_trading_max_order_notional: float = Field(
        50_000.0, gt=0, description="pre-trade limit: value of one order (account currency)"
    )
    tt_trading_max_turnover: float = Field(
        2.0, gt=0, description="pre-trade limit: a session's orders' value / net liquidation"
    )
    tt_trading_price_collar: float = Field(
        0.1,
        gt=0,
        description="pre-trade limit: an order's sizing price may differ from the symbol's last stored close "
        "by at most this fraction",
    )
    tt_trading_orders_per_s: float = Field(
        40.0, gt=0, le=50, description="orders submitted per second at most (IBKR: 50 API messages/s)"
    )
    tt_trading_max_tracking_error: float = Field(
        0.01,
        gt=0,
        description="the live-performance sensor asks for retraining when a session's |live - shadow "
        "backtest| return exceeds it (docs/trading.md)",
    )
    tt_trading_auto_demote: bool = Field(
        False,
        description="the live-performance sensor also demotes the champion when it fires (off: retraining "
        "only; demotion stays `tt promote --demote`)",
    )

    tt_dagster_url: str = Field(
        "http://127.0.0.1:3000",
        description="Dagster UI address the dashboard links to (a model's run and assets)",
    )
    tt_dashboard_url: str = Field(
        "http://127.0.0.1:8501",
        description="dashboard address Dagster's metadata links to (a model's view: `?model=<model_id>`)",
    )

    @field_validator("database_url")
    @classmethod
    def _readable_database_url(cls, value: str | None) -> str | None:
        return _checked(value, urls.authority_problem) if value is not None else None

    @field_validator("tt_celery_broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return _checked(value, urls.broker_url_problem)

    @field_validator("tt_dagster_url", "tt_dashboard_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        return _checked(value, urls.web_url_problem)

    @field_validator("ib_host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _checked(value, urls.host_problem)

    @field_validator("tt_data_dir", "dagster_home")
    @classmethod
    def _home_expanded(cls, value: Path | None) -> Path | None:
        """`~` expanded, as a shell would (a relative path is made absolute by check_directories)."""
        return value.expanduser() if value is not None else None

    @field_validator("tt_synthetic_end")
    @classmethod
    def _synthetic_end(cls, value: str) -> str:
        if value != "now":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError("not a date YYYY-MM-DD or `now`") from None
        return value

    @field_validator("tt_csv_tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        try:
            check_zone(value)
        except ValueError:
            raise ValueError("not an IANA time zone name (e.g. America/New_York)") from None
        return value

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field, e.g. `IB_PORT`."""
        return field.upper()

    def is_set(self, field: str) -> bool:
        """True when the environment (or `.env`) sets the field's variable."""
        return field in self.model_fields_set


def _checked(value: str, problem) -> str:
    """`value`, or ValueError with the line `problem(value)` says (None: no problem)."""
    found = problem(value)
    if found is not None:
        raise ValueError(found)
    return value


def check_zone(tz: str | None) -> None:
    """ValueError when `tz` is not an IANA time zone name (None passes)."""
    if tz is None:
        return
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{tz!r} is not an IANA time zone name (e.g. America/New_York)") from None


@cache
def load_env() -> None:
    """Read `.env` from the working directory or the project root once (never overrides real env vars)."""
    load_dotenv(Path.cwd() / ".env", override=False)
    load_dotenv(PROJECT_ROOT / ".env", override=False)


def settings() -> Settings:
    """The settings as the environment says now; SettingsError names the first bad variable."""
    load_env()
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        own = error["type"] == "value_error"  # our own validators' line, as written
        message = str(error["ctx"]["error"]) if own else error["msg"].lower()
        shown = "" if field in SECRET_FIELDS else f" (got {error['input']!r})"
        raise SettingsError(f"{Settings.variable(field)}: {message}{shown}") from None


# directories the platform creates when missing: field -> what it is, for messages
DIRECTORIES = {"tt_data_dir": "data directory", "dagster_home": "Dagster home"}


def check_directories() -> list[str]:
    """Check TT_DATA_DIR and DAGSTER_HOME when set, before any work: SettingsError (one line naming the
    variable) for one that cannot be used or created; a relative one is resolved against the working
    directory and set so in the environment (so Dagster, `dagster dev` and Celery workers started from here
    use the same directory), returning one line per such resolution for the caller to state once."""
    env = settings()
    notes = []
    for field, what in DIRECTORIES.items():
        path = getattr(env, field)
        if path is None:
            continue
        variable = Settings.variable(field)
        problem = directory_problem(path)
        if problem is not None:
            raise SettingsError(f"cannot create the {what} {path} ({variable}): {problem}")
        if not path.is_absolute():
            notes.append(f"{variable}={path} is relative: using {path.resolve()}")
        os.environ[variable] = str(path.resolve())
    return notes


def directory_problem(path: Path) -> str | None:
    """Why the directory `path` can neither be used nor created (the OS's words), or None; creates nothing."""
    path = path.resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return os.strerror(errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None


def data_dir() -> Path:
    """Directory for the embedded database, models and datasets, created when missing."""
    path = data_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_path() -> Path:
    """TT_DATA_DIR (default `data/` in the project), not created."""
    return settings().tt_data_dir or PROJECT_ROOT / "data"


def database_url() -> str:
    """DATABASE_URL, or the embedded SQLite file `<data dir>/tt.sqlite`."""
    return settings().database_url or f"sqlite:///{data_dir() / 'tt.sqlite'}"


def csv_dir() -> Path:
    """TT_CSV_DIR, default `<data dir>/csv` (neither is created: the CSV source only reads)."""
    return settings().tt_csv_dir or data_path() / "csv"


def watchlist_path() -> Path:
    """TT_WATCHLIST, default `<project>/data/tensorwatchlist.csv`."""
    return settings().tt_watchlist or PROJECT_ROOT / "data" / "tensorwatchlist.csv"


def dagster_home() -> Path:
    """DAGSTER_HOME, default `<data dir>/dagster_home` (absolute)."""
    return (settings().dagster_home or data_dir() / "dagster_home").resolve()


def dagster_url() -> str:
    """TT_DAGSTER_URL without a trailing slash."""
    return settings().tt_dagster_url.rstrip("/")


def dashboard_url() -> str:
    """TT_DASHBOARD_URL without a trailing slash."""
    return settings().tt_dashboard_url.rstrip("/")


def markdown_table() -> str:
    """The README's configuration table: one row per variable with its default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else f"`{field.default}`"
        rows.append(f"| `{Settings.variable(name)}` | {default} | {field.description} |")
    return "\n".join(rows)
