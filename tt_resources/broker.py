"""What the trading loop needs from a broker, and what it gets back (tt_pipeline.trading uses it; the IBKR
implementation is tt_resources.brokers.ibkr.IbkrBroker).

Quantities are whole shares, signed (buy > 0, sell < 0); prices and money in the account's currency; instants
tz-aware UTC. Every order the platform sends carries an `order_ref` (tt_resources.broker.order_ref) that names
the session it executes at, the model and the symbol: it is how a later run finds its own orders at the broker
after a crash, so that no retry or restart can send an order twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

OrderState = Literal[
    "pending_submit",  # sent, not yet acknowledged
    "submitted",  # acknowledged, working (IBKR: PreSubmitted / Submitted)
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
]
REF_PREFIX = "tt"


def order_ref(session: dt.date, model_id: str, symbol: str) -> str:
    """`tt:<session yyyymmdd>:<model id, 12 chars>:<symbol>`: one order per session, model and symbol."""
    return f"{REF_PREFIX}:{session:%Y%m%d}:{model_id[:12]}:{symbol}"


def parse_order_ref(ref: str) -> tuple[dt.date, str, str] | None:
    """(session, model id prefix, symbol) of one of our order refs; None for anyone else's."""
    parts = ref.split(":")
    if len(parts) != 4 or parts[0] != REF_PREFIX:
        return None
    try:
        session = dt.datetime.strptime(parts[1], "%Y%m%d").date()
    except ValueError:
        return None
    return session, parts[2], parts[3]


@dataclass(frozen=True)
class AccountState:
    """The account as the broker reports it: id (IBKR paper accounts start with "DU"), net liquidation value,
    cash, and positions in shares per symbol (absent = flat)."""

    account: str
    currency: str
    net_liquidation: float
    cash: float
    positions: dict[str, float]
    as_of: dt.datetime


@dataclass(frozen=True)
class OrderRequest:
    """A market-on-open order (IBKR: MKT, time in force OPG) for the session `session`."""

    symbol: str
    quantity: int  # signed shares, never 0
    order_ref: str
    session: dt.date


@dataclass(frozen=True)
class OrderReport:
    """One of our orders as the broker knows it now. `messages` holds warnings (IBKR 399 and the like) and,
    for a rejection, the code and text ("201: Order rejected - reason: ...")."""

    order_ref: str
    symbol: str
    quantity: int
    broker_order_id: int | None
    perm_id: int | None
    state: OrderState
    filled: float
    remaining: float
    avg_fill_price: float | None
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Execution:
    """One execution (a fill or part of one) of one of our orders, with its commission when reported."""

    exec_id: str
    order_ref: str
    symbol: str
    shares: float  # signed: bought > 0, sold < 0
    price: float
    time: dt.datetime
    commission: float | None


class Broker(Protocol):
    """A connected brokerage account. Every method raises tt_resources.broker.BrokerError with one line
    (host, port, account, what failed) when the broker cannot answer; never returns a partial answer."""

    def account(self) -> AccountState: ...

    def open_orders(self) -> list[OrderReport]:
        """Our working orders (order refs from tt_resources.broker.order_ref only)."""
        ...

    def orders(self) -> list[OrderReport]:
        """Our orders the broker knows today: working and done (filled, cancelled, rejected); what a rerun asks
        before it sends anything, so that no order goes out twice."""
        ...

    def executions(self, since: dt.datetime) -> list[Execution]:
        """Our executions since `since` (inclusive), commissions included when the broker reported them."""
        ...

    def place(self, order: OrderRequest) -> OrderReport:
        """Submit one market-on-open order and wait (bounded) for its acknowledgement or rejection; a rejection
        is a report in state "rejected", not an exception."""
        ...

    def cancel(self, order_ref: str) -> OrderReport: ...

    def close(self) -> None: ...


class BrokerError(RuntimeError):
    """The broker could not answer (connection, timeout, account-wide refusal): one line, no secrets."""
