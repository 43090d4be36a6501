"""From target weights to whole-share orders, and the blocking pre-trade limits on them (pure functions).

Sizing: the target position of a symbol is its weight x the account's net liquidation / the decision bar's
close, in whole shares rounded toward zero (so the book never exceeds its target exposure and ends within one
share of it); the order is the difference to the shares held now, a partial fill of an earlier order included
(the broker's positions say what was filled). Orders below a minimum value are skipped. Symbols the model
does not trade are never touched.

Limits (docs/trading.md): the book after the orders (held shares + orders, at the closes, over net
liquidation) must respect the gross exposure, the weight of each symbol and of each watchlist sector; each
order its value and a price collar (its sizing price against the symbol's last stored close); the session's
orders their turnover (value / net liquidation). Weight limits block only orders that add exposure:
reducing an over-weight book is always allowed. Any breach blocks the whole session's submission: each
breach is one line naming the limit, the order and the numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

LIMIT_NAMES = (
    "gross_exposure",
    "symbol_weight",
    "sector_weight",
    "order_notional",
    "turnover",
    "price_collar",
)


@dataclass(frozen=True)
class PlannedOrder:
    """One whole-share order: signed `quantity` (buy > 0) of `symbol` sized at `price` (the decision close),
    taking `held` shares to `target` shares."""

    symbol: str
    quantity: int
    price: float
    held: float
    target: int

    @property
    def notional(self) -> float:
        return abs(self.quantity) * self.price

    def describe(self) -> str:
        side = "buy" if self.quantity > 0 else "sell"
        return f"{side} {abs(self.quantity)} {self.symbol} @ ~{self.price:.2f}"


def target_shares(weight: float, net_liquidation: float, price: float) -> int:
    """Whole shares of a `weight` of `net_liquidation` at `price`, rounded toward zero."""
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price {price!r} is not a positive number")
    return math.trunc(weight * net_liquidation / price + 1e-9 * math.copysign(1.0, weight))


def plan_orders(
    weights: Mapping[str, float],
    closes: Mapping[str, float],
    held: Mapping[str, float],
    net_liquidation: float,
    min_notional: float,
) -> tuple[list[PlannedOrder], list[str]]:
    """(orders, one line per order skipped below `min_notional`) taking the `held` shares of the symbols of
    `weights` to their targets at `closes`; symbols in `weights` order."""
    if not (math.isfinite(net_liquidation) and net_liquidation > 0):
        raise ValueError(f"net liquidation {net_liquidation!r}: nothing to size orders with")
    planned, skipped = [], []
    for symbol, weight in weights.items():
        price = closes[symbol]
        goal = target_shares(weight, net_liquidation, price)
        now = float(held.get(symbol, 0.0))
        quantity = round(goal - now)
        if quantity == 0:
            continue
        order = PlannedOrder(symbol, quantity, price, now, goal)
        if order.notional < min_notional:
            skipped.append(
                f"skipped {order.describe()}: {order.notional:,.0f} below the minimum {min_notional:,.0f}"
            )
            continue
        planned.append(order)
    return planned, skipped


@dataclass(frozen=True)
class Limits:
    """The pre-trade limits (settings TT_TRADING_MAX_*, TT_TRADING_PRICE_COLLAR): weights are fractions of
    net liquidation, notional in account currency."""

    max_gross: float
    max_weight: float
    max_sector_weight: float
    max_order_notional: float
    max_turnover: float
    price_collar: float

    @classmethod
    def from_settings(cls, env) -> Limits:
        """From tt_resources.config.Settings."""
        return cls(
            env.tt_trading_max_gross,
            env.tt_trading_max_weight,
            env.tt_trading_max_sector_weight,
            env.tt_trading_max_order_notional,
            env.tt_trading_max_turnover,
            env.tt_trading_price_collar,
        )


@dataclass(frozen=True)
class Breach:
    """One limit an order (or the session's orders, symbol None) breaks, as one line."""

    limit: str
    symbol: str | None
    line: str


def check_limits(
    orders: list[PlannedOrder],
    held: Mapping[str, float],
    prices: Mapping[str, float],
    net_liquidation: float,
    sectors: Mapping[str, str],
    last_closes: Mapping[str, float],
    limits: Limits,
) -> list[Breach]:
    """Every breach of `limits` by `orders` on a book holding `held` shares marked at `prices` (every held
    symbol's price; the orders' own prices for theirs); `sectors` symbol -> watchlist sector (empty: none),
    `last_closes` the symbols' last stored closes. Empty when all pass."""
    breaches: list[Breach] = []
    after = {s: float(q) for s, q in held.items()}
    for order in orders:
        after[order.symbol] = after.get(order.symbol, 0.0) + order.quantity
    mark = {**prices, **{o.symbol: o.price for o in orders}}
    weight = {s: q * mark[s] / net_liquidation for s, q in after.items() if q}

    for order in orders:
        if order.notional > limits.max_order_notional:
            breaches.append(
                Breach(
                    "order_notional",
                    order.symbol,
                    f"limit order_notional: {order.describe()} is worth {order.notional:,.0f} > "
                    f"TT_TRADING_MAX_ORDER_NOTIONAL {limits.max_order_notional:,.0f}",
                )
            )
        last = last_closes.get(order.symbol)
        if last is None or abs(order.price / last - 1.0) > limits.price_collar:
            seen = "no stored close" if last is None else f"the last stored close {last:.2f}"
            breaches.append(
                Breach(
                    "price_collar",
                    order.symbol,
                    f"limit price_collar: {order.describe()} is sized at {order.price:.2f}, {seen} "
                    f"(TT_TRADING_PRICE_COLLAR {limits.price_collar:.0%})",
                )
            )
        w = weight.get(order.symbol, 0.0)
        if abs(w) > limits.max_weight + 1e-12 and _adds(order):
            breaches.append(
                Breach(
                    "symbol_weight",
                    order.symbol,
                    f"limit symbol_weight: {order.describe()} makes {order.symbol} {w:.1%} of the book > "
                    f"TT_TRADING_MAX_WEIGHT {limits.max_weight:.1%}",
                )
            )
    sector_weight: dict[str, float] = defaultdict(float)
    for symbol, w in weight.items():
        if sectors.get(symbol):
            sector_weight[sectors[symbol]] += abs(w)
    for sector, w in sorted(sector_weight.items()):
        traded = [o for o in orders if sectors.get(o.symbol) == sector and _adds(o)]
        if w > limits.max_sector_weight + 1e-12 and traded:
            largest = max(traded, key=lambda o: o.notional)
            breaches.append(
                Breach(
                    "sector_weight",
                    largest.symbol,
                    f"limit sector_weight: {largest.describe()} (and {len(traded) - 1} more) makes {sector} "
                    f"{w:.1%} of the book > TT_TRADING_MAX_SECTOR_WEIGHT {limits.max_sector_weight:.1%}",
                )
            )
    gross = sum(abs(w) for w in weight.values())
    adding = [o for o in orders if _adds(o)]
    if gross > limits.max_gross + 1e-12 and adding:
        named = max(adding, key=lambda o: o.notional)
        breaches.append(
            Breach(
                "gross_exposure",
                named.symbol,
                f"limit gross_exposure: the orders ({len(orders)}, largest {named.describe()}) make the book "
                f"{gross:.1%} gross > TT_TRADING_MAX_GROSS {limits.max_gross:.1%}",
            )
        )
    turnover = sum(o.notional for o in orders) / net_liquidation
    if turnover > limits.max_turnover + 1e-12:
        named = max(orders, key=lambda o: o.notional)
        breaches.append(
            Breach(
                "turnover",
                None,
                f"limit turnover: the session's {len(orders)} orders (largest {named.describe()}) trade "
                f"{turnover:.1%} of net liquidation > TT_TRADING_MAX_TURNOVER {limits.max_turnover:.1%}",
            )
        )
    return breaches


def _adds(order: PlannedOrder) -> bool:
    """Whether `order` adds exposure (its target lies beyond what is held, away from zero): only such orders
    can breach a weight limit, so reducing an over-weight book is never blocked by it."""
    return order.quantity * order.target > 0 and abs(order.target) > abs(order.held)
