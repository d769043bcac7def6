"""Guardrails on what the LLM may do to a position. Pure: no I/O, no clock.

The model proposes; these rules decide. A rejected action leaves the position untouched
and is recorded with its reason, so a bad answer is visible, never silently applied.
Rules (mirrored for a short):
- a long's stop-loss must stay below the candle's close, and may only tighten (move
  up, toward the price) unless `allow_sl_loosening` is set;
- a take-profit must lie beyond the close (above it for a long);
- `reduce` takes a fraction in (0, 1) and always leaves a positive size;
- `close` exits at the candle's close;
- anything else (unknown action, a missing or non-numeric parameter, NaN, infinity,
  a boolean) is rejected.
Paper execution (local runs, the demo) closes a position whose stop-loss or take-profit
the candle's range crossed, at that level, before the LLM is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from functions.core.models import Action, PositionSnapshot, Side, is_plausible
from functions.core.vocabulary import RejectionReason


@dataclass(frozen=True)
class GuardrailConfig:
    allow_sl_loosening: bool = False


@dataclass(frozen=True)
class Verdict:
    """What to do with a proposed action: apply it (with the values to write) or reject it."""

    action: str
    apply: bool
    reason: RejectionReason | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    fraction: Decimal | None = None

    @classmethod
    def reject(cls, action: str, reason: RejectionReason) -> Verdict:
        return cls(action=action, apply=False, reason=reason)


@dataclass(frozen=True)
class PaperFill:
    exit_price: Decimal
    reason: str  # "stop_loss" or "take_profit"


def parse_price(value: Any) -> Decimal | None:
    """A strictly positive, finite decimal from a JSON value, or None.

    Booleans are refused even though `True` is an int in Python: `{"stop_loss": true}`
    is a malformed answer, not a price of 1. Floats go through `str` so 0.1 stays 0.1.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, int | str | Decimal):
        return None
    try:
        text = str(value).strip()  # str() of a 5000-digit int raises ValueError
        if not text.isascii():  # Decimal reads "١٢" as 12; an LLM answer should not
            return None
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not is_plausible(number) or number <= 0:  # finite first: NaN <= 0 raises
        return None
    return number


def _beyond(side: Side, level: Decimal, price: Decimal) -> bool:
    """True if `level` is on the profit side of `price` (above for a long)."""
    return level > price if side is Side.LONG else level < price


def check_action(
    action: str,
    params: Mapping[str, Any],
    position: PositionSnapshot,
    price: Decimal,
    config: GuardrailConfig = GuardrailConfig(),
) -> Verdict:
    """Judge one proposed action against the position at the candle's close `price`."""
    try:
        kind = Action(action)
    except ValueError:
        return Verdict.reject(action, RejectionReason.UNKNOWN_ACTION)
    if position.status != "open":
        return Verdict.reject(action, RejectionReason.POSITION_NOT_OPEN)

    if kind in (Action.HOLD, Action.CLOSE):
        return Verdict(action=action, apply=True)

    if kind is Action.ADJUST_SL:
        new_sl = parse_price(params.get("stop_loss"))
        if new_sl is None:
            return Verdict.reject(action, RejectionReason.INVALID_STOP_LOSS)
        if not _beyond(position.side, price, new_sl):
            return Verdict.reject(action, RejectionReason.STOP_LOSS_ON_WRONG_SIDE)
        current = position.stop_loss
        if current is not None and not config.allow_sl_loosening and _beyond(position.side, current, new_sl):
            return Verdict.reject(action, RejectionReason.STOP_LOSS_LOOSENED)
        return Verdict(action=action, apply=True, stop_loss=new_sl)

    if kind is Action.ADJUST_TP:
        new_tp = parse_price(params.get("take_profit"))
        if new_tp is None:
            return Verdict.reject(action, RejectionReason.INVALID_TAKE_PROFIT)
        if not _beyond(position.side, new_tp, price):
            return Verdict.reject(action, RejectionReason.TAKE_PROFIT_ON_WRONG_SIDE)
        return Verdict(action=action, apply=True, take_profit=new_tp)

    # Action.REDUCE
    fraction = parse_price(params.get("fraction"))
    if fraction is None or fraction >= 1:
        return Verdict.reject(action, RejectionReason.REDUCE_FRACTION_OUT_OF_RANGE)
    if position.contracts - position.contracts * fraction <= 0:
        return Verdict.reject(action, RejectionReason.REDUCE_LEAVES_NO_SIZE)
    return Verdict(action=action, apply=True, fraction=fraction)


def paper_fill(position: PositionSnapshot, low: Decimal, high: Decimal) -> PaperFill | None:
    """The stop or target a candle's range crossed, if any; the stop wins a tie because
    within one candle we cannot know which was touched first and losses must not hide."""
    sl, tp = position.stop_loss, position.take_profit
    if position.side is Side.LONG:
        if sl is not None and low <= sl:
            return PaperFill(sl, "stop_loss")
        if tp is not None and high >= tp:
            return PaperFill(tp, "take_profit")
    else:
        if sl is not None and high >= sl:
            return PaperFill(sl, "stop_loss")
        if tp is not None and low <= tp:
            return PaperFill(tp, "take_profit")
    return None
