"""The simulated result of a position against the candles that followed its entry.

`cmon replay` runs the real pipeline; this is the independent account of what the
position would have done in the market it was replayed on, so an operator can judge a
policy by its PnL and can check the pipeline's own books against it. Rules, the same as
paper execution (`guardrails.paper_fill`): during a candle the levels set at the previous
close apply; a candle whose low/high crossed the stop-loss or take-profit exits there
(the stop wins a tie, losses must not hide); then the action decided at that candle's
close applies: a new stop or target, a reduce (booked at the close) or a close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from functions.core.errors import InvalidInput
from functions.core.guardrails import paper_fill
from functions.core.models import PositionSnapshot, Side

_NO_ID = UUID(int=0)


def realized_pnl(side: Side, entry: Decimal, exit_price: Decimal, contracts: Decimal) -> Decimal:
    """PnL of closing `contracts` at `exit_price` (the database computes the same)."""
    sign = 1 if side is Side.LONG else -1
    return sign * (exit_price - entry) * contracts


@dataclass(frozen=True)
class Bar:
    """What the simulation needs of a candle."""

    close_time: datetime
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True)
class Action:
    """An action applied at a candle's close: `adjust_sl`, `adjust_tp`, `reduce`, `close`."""

    action: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SimEvent:
    time: datetime
    kind: str  # entry | adjust_sl | adjust_tp | reduce | close | stop_loss | take_profit
    price: Decimal
    contracts: Decimal
    pnl: Decimal = Decimal(0)
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "kind": self.kind,
            "price": str(self.price),
            "contracts": str(self.contracts),
            "pnl": str(self.pnl),
            "stop_loss": None if self.stop_loss is None else str(self.stop_loss),
            "take_profit": None if self.take_profit is None else str(self.take_profit),
        }


@dataclass
class SimResult:
    events: list[SimEvent]
    realized_pnl: Decimal
    open_contracts: Decimal
    exit_reason: str | None  # stop_loss | take_profit | close | None (still open)
    exit_price: Decimal | None
    unrealized_pnl: Decimal  # of what is still open, at the last close

    @property
    def total_pnl(self) -> Decimal:
        return self.realized_pnl + self.unrealized_pnl

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [e.to_json() for e in self.events],
            "realized_pnl": str(self.realized_pnl),
            "unrealized_pnl": str(self.unrealized_pnl),
            "total_pnl": str(self.total_pnl),
            "open_contracts": str(self.open_contracts),
            "exit_reason": self.exit_reason,
            "exit_price": None if self.exit_price is None else str(self.exit_price),
        }


def _crossed(side: Side, sl: Decimal | None, tp: Decimal | None, bar: Bar) -> tuple[str, Decimal] | None:
    snapshot = PositionSnapshot(
        id=_NO_ID, side=side, entry_price=Decimal(1), contracts=Decimal(1), stop_loss=sl, take_profit=tp
    )
    fill = paper_fill(snapshot, bar.low, bar.high)
    return None if fill is None else (fill.reason, fill.exit_price)


def simulate(
    *,
    side: Side,
    entry_time: datetime,
    entry_price: Decimal,
    contracts: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    bars: Sequence[Bar],
    actions: Mapping[datetime, Action],
) -> SimResult:
    """Walk the bars that closed after `entry_time`, in order; see the module docstring."""
    if entry_price <= 0 or contracts <= 0:
        raise InvalidInput("a position needs a positive entry price and size")
    events = [
        SimEvent(entry_time, "entry", entry_price, contracts, stop_loss=stop_loss, take_profit=take_profit)
    ]
    left, booked = contracts, Decimal(0)
    last_close: Decimal | None = None
    for bar in sorted((b for b in bars if b.close_time > entry_time), key=lambda b: b.close_time):
        last_close = bar.close
        hit = _crossed(side, stop_loss, take_profit, bar)
        if hit is not None:
            reason, price = hit
            pnl = realized_pnl(side, entry_price, price, left)
            booked += pnl
            events.append(SimEvent(bar.close_time, reason, price, left, pnl, stop_loss, take_profit))
            return SimResult(events, booked, Decimal(0), reason, price, Decimal(0))
        act = actions.get(bar.close_time)
        if act is None:
            continue
        params = act.params
        if act.action == "adjust_sl" and params.get("stop_loss") is not None:
            stop_loss = Decimal(str(params["stop_loss"]))
            events.append(
                SimEvent(bar.close_time, "adjust_sl", bar.close, left, Decimal(0), stop_loss, take_profit)
            )
        elif act.action == "adjust_tp" and params.get("take_profit") is not None:
            take_profit = Decimal(str(params["take_profit"]))
            events.append(
                SimEvent(bar.close_time, "adjust_tp", bar.close, left, Decimal(0), stop_loss, take_profit)
            )
        elif act.action == "reduce" and params.get("fraction") is not None:
            fraction = Decimal(str(params["fraction"]))
            if not Decimal(0) < fraction < Decimal(1):
                continue
            size = left * fraction
            pnl = realized_pnl(side, entry_price, bar.close, size)
            booked += pnl
            left -= size
            events.append(SimEvent(bar.close_time, "reduce", bar.close, size, pnl, stop_loss, take_profit))
        elif act.action == "close":
            pnl = realized_pnl(side, entry_price, bar.close, left)
            booked += pnl
            events.append(SimEvent(bar.close_time, "close", bar.close, left, pnl, stop_loss, take_profit))
            return SimResult(events, booked, Decimal(0), "close", bar.close, Decimal(0))
    unrealized = Decimal(0) if last_close is None else realized_pnl(side, entry_price, last_close, left)
    return SimResult(events, booked, left, None, None, unrealized)
