"""The dashboard's cache of the database's answers (tt_resources.db.reports): a new session pays only for what
changed since an earlier one asked, and rows about one model never invalidate another model's answers.

Each answer is keyed on its arguments and a token of what it reads, chosen by the report's first parameter
(reports' convention):
- `model_id`: reports.model_token (that model's registration, evaluation rows and episodes);
- `episode_ids` / `episode_id`: reports.episodes_token (those episodes; a finished episode never changes);
- partition_freshness: the newest fetch (ChangeToken.market), and the minute its caller passes;
- the Live tab's reports (TRADING_REPORTS): reports.trading_token (the trading tables' counts and newest rows);
- anything else (the model catalog): ChangeToken.models (any model, evaluation or episode).
Tokens are one cheap query each, read at most once per Reports object (one per page run).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import sqlalchemy as sa
import streamlit as st

from tt_resources.db import reports
from tt_resources.db.engine import check_connection, create_engine

MARKET_REPORTS = frozenset({"partition_freshness"})
TRADING_REPORTS = frozenset(
    {
        "live_performance",
        "promotion_history",
        "trading_orders",
        "positions_and_targets",
        "limits_hit",
        "session_closes",
        "traded_symbols",
    }
)
MAX_ANSWERS = 1_024  # cached answers per process (a model's page asks about 10 questions)


@st.cache_resource(show_spinner=False)
def database(url: str) -> sa.Engine:
    """A migrated engine for `url` (connection checked, schema upgraded once per process)."""
    from tt_resources.db.migrate import upgrade  # alembic: imported once, here

    engine = create_engine(url)
    check_connection(engine)
    upgrade(engine)
    return engine


@st.cache_data(show_spinner=False, max_entries=MAX_ANSWERS)
def _answer(name: str, url: str, version: tuple, *args, **kwargs):
    """reports.<name>(engine, *args, **kwargs), cached per `version` of what it reads."""
    return getattr(reports, name)(database(url), *args, **kwargs)


@functools.cache
def _subject(name: str) -> tuple[inspect.Signature, str | None]:
    """reports.<name>'s signature and its first parameter after the engine (None when it has none)."""
    signature = inspect.signature(getattr(reports, name))
    return signature, next(iter(list(signature.parameters)[1:]), None)


class Reports:
    """tt_resources.db.reports bound to one database for one page run: `Reports(url).model_catalog()`,
    `.eval_metrics(model_id)`, `.portfolio_buckets(episode_ids, stride)`, each answer cached as the module
    doc says."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = database(url)
        self.token = reports.change_token(self.engine)
        self._tokens: dict[tuple, tuple] = {}

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("_") or not callable(getattr(reports, name, None)):
            raise AttributeError(f"tt_resources.db.reports has no report {name!r}")
        return functools.partial(self._ask, name)

    def _ask(self, name: str, *args, **kwargs):
        return _answer(name, self.url, self.version(name, *args, **kwargs), *args, **kwargs)

    def version(self, name: str, *args, **kwargs) -> tuple:
        """The token of what reports.<name>(engine, *args, **kwargs) reads."""
        if name in TRADING_REPORTS:
            return self._token(("trading",), lambda engine, _: reports.trading_token(engine), None)
        signature, first = _subject(name)
        subject = signature.bind(self.engine, *args, **kwargs).arguments.get(first)
        if first == "model_id":
            return self._token(("model", subject), reports.model_token, subject)
        if first in ("episode_ids", "episode_id"):
            ids = (subject,) if first == "episode_id" else tuple(subject)
            return self._token(("episodes", ids), reports.episodes_token, ids)
        if name in MARKET_REPORTS:
            return ("market", *self.token.market)
        return ("models", *self.token.models)

    def _token(self, key: tuple, read: Callable, subject) -> tuple:
        if key not in self._tokens:
            self._tokens[key] = (*key, *read(self.engine, subject))
        return self._tokens[key]
