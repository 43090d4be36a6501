"""`tt trade`, `tt positions`, `tt promote`, `tt halt`: the trading loop from the command line (docs/trading.md).

Every output line fits 80 columns. Torch and SB3 are loaded only when a target is computed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import click
import sqlalchemy as sa

from tt_cli.common import DATE, BadInput, open_database

WIDTH = 80


def format_run(run) -> list[str]:
    """The lines a SessionRun prints (at most WIDTH columns): what was decided, the target weights beside
    the shares held and the orders, then the run's lines."""
    head = f"session {run.session}"
    if run.next_session is not None:
        head += f": orders for the open of {run.next_session}"
    lines = [_fit(f"{head}; model {run.model_id}")]
    if run.account is not None:
        book = run.account
        lines.append(
            _fit(
                f"account {book.account}: net liquidation {book.net_liquidation:,.0f} {book.currency}, "
                f"{sum(1 for q in book.positions.values() if q)} position(s)"
            )
        )
    if run.target is not None:
        orders = {o.symbol: o for o in run.orders}
        held = run.account.positions if run.account is not None else {}
        lines.append(
            f"{'symbol':<10}{'weight':>8}{'held':>10}{'target':>10}{'order':>10}{'~value':>14}  state"
        )
        shown = sorted(run.target.weights, key=lambda s: (-abs(run.target.weights[s]), s))
        for symbol in shown:
            order = orders.get(symbol)
            weight = run.target.weights[symbol]
            if order is None and not weight and not held.get(symbol):
                continue
            state = ""
            if order is not None:
                ref = run.refs.get(symbol)
                state = "sent" if ref in run.sent else "known" if ref in run.known else ""
                if ref in run.rejected:
                    state = "rejected"
            lines.append(
                f"{symbol:<10}{weight:>8.3f}{held.get(symbol, order.held if order else 0):>10,.0f}"
                f"{order.target if order else held.get(symbol, 0):>10,.0f}"
                f"{(f'{order.quantity:+,d}' if order else ''):>10}"
                f"{(f'{order.notional:,.0f}' if order else ''):>14}  {state}"[:WIDTH].rstrip()
            )
        cash = 1.0 - sum(run.target.weights.values())
        lines.append(f"{'cash':<10}{cash:>8.3f}")
        total = sum(o.notional for o in run.orders)
        lines.append(_fit(f"{len(run.orders)} order(s) worth {total:,.0f}"))
    for line in run.lines:
        lines += _wrap(line)
    if run.dry_run:
        lines.append("dry run: nothing sent")
    elif run.sent or run.known:
        lines.append(_fit(f"sent {len(run.sent)} order(s); {len(run.known)} known to the broker already"))
    return lines


def _fit(text: str) -> str:
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, WIDTH, subsequent_indent="  ") or [""]


def print_dry_run(
    engine: sa.Engine | None = None,
    *,
    model_id: str | None = None,
    echo: Callable[[str], None] = click.echo,
    now: dt.datetime | None = None,
) -> None:
    """Print the dry run of the next session for the champion (or `model_id`): its target weights and the
    orders it would send from the last reconciled book (or all cash), at 80 columns; nothing is sent, no
    gateway is needed. For `make demo`."""
    from tt_pipeline.trading.session import last_final_session, trade_session

    engine = engine or open_database()
    now = now or dt.datetime.now(dt.UTC)
    session = _latest_stored_session(engine, last_final_session(now))
    run = trade_session(engine, session, broker=None, model_id=model_id, dry_run=True, now=now)
    for line in format_run(run):
        echo(line)


def demo_dry_run(
    engine: sa.Engine,
    walk_forward_id: str,
    *,
    run_id: str,
    model_dir,
    echo: Callable[[str], None] = click.echo,
    now: dt.datetime | None = None,
) -> None:
    """For `make demo`, after the evaluation of the walk-forward model `walk_forward_id`: its production model
    (trained on the whole history once: tt_pipeline.models.train_production), promoted only when its verdict
    allows (one line either way), then `print_dry_run` of the next session for the champion, or for the
    production model when there is no champion. Nothing is sent; no gateway is needed."""
    from tt_pipeline.models import train_production
    from tt_pipeline.trading import promotion
    from tt_resources.db import trading as db

    production = train_production(engine, walk_forward_id, run_id=run_id, model_dir=model_dir)
    try:
        promotion.promote(engine, production.model_id, reason="make demo: its verdict allows it")
        echo(_fit(f"promoted {production.model_id}: its evaluation shows skill beyond the best baseline"))
    except promotion.PromotionRefused as exc:
        for line in _wrap(f"not promoted: {exc}"):
            echo(line)
    champion = db.champion(engine, "1d")
    print_dry_run(engine, model_id=champion or production.model_id, echo=echo, now=now)


def _latest_stored_session(engine: sa.Engine, final: dt.date) -> dt.date:
    """The newest session with 1d bars stored, at or before `final` (`final` when none is stored)."""
    import pandas as pd

    from tt_resources.db.schema import prices

    query = sa.select(sa.func.max(prices.c.ts)).where(
        prices.c.timeframe == "1d",
        prices.c.ts < pd.Timestamp(final).tz_localize("UTC") + pd.Timedelta(days=1),
    )
    with engine.connect() as conn:
        newest = conn.execute(query).scalar()
    if newest is None:
        return final
    return pd.Timestamp(newest).tz_convert("America/New_York").date()


@click.command()
@click.option(
    "--session", "session", type=DATE, help="Session whose close decides (default: the last closed)."
)
@click.option("--dry-run", is_flag=True, help="Print the target and the orders; send nothing.")
@click.option("--model", "model_id", help="Trade this model instead of the champion (dry runs only).")
def trade(session, dry_run: bool, model_id: str | None) -> None:
    """Reconcile fills and positions, compute the champion's target for the session and submit its
    market-on-open orders for the next session (only with TT_TRADING_ENABLED=true)."""
    from tt_pipeline.trading.session import (
        ENABLE_HINT,
        TradingRefused,
        connect_broker,
        last_final_session,
        trade_session,
    )
    from tt_resources.broker import BrokerError
    from tt_resources.config import settings

    if model_id is not None and not dry_run:
        raise BadInput("--model: only with --dry-run (orders are sent for the champion only)")
    engine = open_database()
    env = settings()
    day = session.date() if session is not None else last_final_session(dt.datetime.now(dt.UTC))
    broker = None
    try:
        broker = connect_broker(env)
    except BrokerError as exc:
        if not dry_run:
            raise click.ClickException(str(exc)) from None
        click.echo(_fit(f"no broker ({exc})"), err=True)
    try:
        run = trade_session(engine, day, broker=broker, model_id=model_id, dry_run=dry_run, env=env)
    except (TradingRefused, BrokerError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if broker is not None:
            broker.close()
    disabled = ENABLE_HINT in run.lines
    if not dry_run and not disabled and run.account is not None:  # the book is reconciled: the live record
        from tt_pipeline.trading.live import record_line

        click.echo(_fit(record_line(engine, day)))
    for line in format_run(run):
        click.echo(line)
    if not dry_run and (not run.ok or disabled):
        raise SystemExit(1)


@click.command()
@click.option("--session", "session", type=DATE, help="Session (default: the newest reconciled).")
def positions(session) -> None:
    """The reconciled positions, cash and net liquidation of a session beside the champion's target."""
    from tt_resources.db import trading as db

    engine = open_database()
    day = session.date() if session is not None else db.latest_position_session(engine)
    if day is None:
        raise BadInput("no reconciled positions yet: `tt trade` reconciles them with the broker")
    rows = db.positions_of(engine, day)
    if not rows:
        raise BadInput(f"no reconciled positions for {day}")
    champion = db.champion(engine, "1d")
    targets = db.read_targets(engine, champion, day) if champion else {}
    click.echo(f"positions of {day}" + (f"; target of champion {champion}" if champion else ""))
    click.echo(f"{'account':<12}{'symbol':<10}{'shares':>10}{'price':>10}{'value':>16}{'target w':>10}")
    for row in rows:
        target = targets.get(row["symbol"], (None,))[0]
        price = f"{row['price']:.2f}" if row["price"] is not None else ""
        click.echo(
            f"{row['account']:<12}{row['symbol']:<10}{row['shares']:>10,.0f}{price:>10}{row['value']:>16,.2f}"
            f"{'' if target is None else f'{target:.3f}':>10}"
        )


@click.command()
@click.argument("model_id", required=False)
@click.option("--reason", help="Why (recorded; required with --force and --demote).")
@click.option("--force", is_flag=True, help="Promote without a 'skill beyond the best baseline' verdict.")
@click.option("--demote", is_flag=True, help="Leave the timeframe without a champion.")
@click.option("--timeframe", default="1d", show_default=True, help="Timeframe of --demote.")
def promote(model_id: str | None, reason: str | None, force: bool, demote: bool, timeframe: str) -> None:
    """Make the production model MODEL_ID the champion of its timeframe (or --demote the champion)."""
    from tt_pipeline.trading import promotion

    engine = open_database()
    try:
        if demote:
            if model_id is not None or not (reason or "").strip():
                raise BadInput("--demote takes no MODEL_ID and needs --reason")
            row = promotion.demote(engine, timeframe, reason=reason)
            click.echo(f"demoted {row['previous_model_id']}: the {timeframe} timeframe has no champion")
            return
        if model_id is None:
            raise BadInput("MODEL_ID is required (or --demote)")
        row = promotion.promote(engine, model_id, reason=reason, force=force)
    except promotion.PromotionRefused as exc:
        raise BadInput(str(exc)) from None
    previous = row["previous_model_id"] or "none"
    forced = " (forced)" if row["forced"] else ""
    click.echo(_fit(f"{model_id} is the {row['timeframe']} champion{forced}; previous: {previous}"))


@click.command()
@click.option("--off", is_flag=True, help="Clear the halt (TT_TRADING_HALT, if set, still halts).")
@click.option("--reason", help="Why (recorded).")
def halt(off: bool, reason: str | None) -> None:
    """Kill switch: stop every order submission at once (checked before each order), or --off to resume."""
    from tt_pipeline.trading.promotion import who
    from tt_resources.config import settings
    from tt_resources.db import trading as db

    engine = open_database()
    db.set_halt(engine, not off, who=who(), reason=reason)
    if off:
        still = " (TT_TRADING_HALT is still set: it halts)" if settings().tt_trading_halt else ""
        click.echo(f"trading resumed{still}")
    else:
        click.echo("trading halted: no order is submitted until `tt halt --off`")
