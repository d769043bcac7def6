"""The stub llm-proxy's answers: the deterministic default heuristic (a pure function of
the request body, see `stub_llm`'s docstring), scripted answers made whole, and the reply
shape the HTTP layer sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["setup", "management"]
FailStatus = int | Literal["timeout", "invalid"]
Answer = str | dict[str, Any]

# The heuristic's thresholds, as fractions of the open.
ENTER_ABOVE = Decimal("0.002")
BAD_BELOW = Decimal("-0.005")
STOP_LOSS_FACTOR = Decimal("0.99")
TAKE_PROFIT_FACTOR = Decimal("1.02")


@dataclass
class Reply:
    status: int | None
    body: bytes
    answer: dict[str, Any] | None
    delay_s: float = 0.0


# -- the default heuristic and the scripted answers --------------------------------------


def setup_answer(body: dict[str, Any], scripted: Answer | None) -> dict[str, Any]:
    heuristic = _setup_heuristic(body)
    if scripted is None:
        return heuristic
    if isinstance(scripted, str):
        scripted = {"decision": scripted}
    answer = {
        "confidence": 0.8,
        "reasoning": f"stub: scripted {scripted.get('decision', heuristic['decision'])}",
        "decision": heuristic["decision"],
        **scripted,
    }
    if answer["decision"] == "enter_trade" and "trade_plan" not in answer:
        answer["trade_plan"] = _long_plan(_candle(body)[1])
    return answer


def _setup_heuristic(body: dict[str, Any]) -> dict[str, Any]:
    open_, close = _candle(body)
    if open_ is None or close is None or open_ <= 0:
        return {"decision": "wait", "confidence": 0.5, "reasoning": "stub: no candle, wait"}
    change = (close - open_) / open_
    pct = f"{change * 100:+.3f}%"
    if change > ENTER_ABOVE:
        return {
            "decision": "enter_trade",
            "confidence": 0.75,
            "reasoning": f"stub: candle closed {pct} (> +0.2%), enter long",
            "trade_plan": _long_plan(close),
        }
    if change < BAD_BELOW:
        return {
            "decision": "bad_setup",
            "confidence": 0.7,
            "reasoning": f"stub: candle closed {pct} (< -0.5%), setup invalidated",
        }
    return {"decision": "wait", "confidence": 0.6, "reasoning": f"stub: candle closed {pct}, wait"}


def _long_plan(close: Decimal | None) -> dict[str, Any]:
    if close is None or close <= 0:
        return {"side": "long"}
    return {
        "side": "long",
        "entry": _fmt(close),
        "stop_loss": _fmt(close * STOP_LOSS_FACTOR),
        "take_profit": _fmt(close * TAKE_PROFIT_FACTOR),
    }


def management_answer(scripted: Answer | None) -> dict[str, Any]:
    if scripted is None:
        return {"action": "hold", "params": {}, "confidence": 0.5, "reasoning": "stub: hold"}
    if isinstance(scripted, str):
        scripted = {"action": scripted}
    return {
        "action": "hold",
        "params": {},
        "confidence": 0.8,
        "reasoning": f"stub: scripted {scripted.get('action', 'hold')}",
        **scripted,
    }


def _candle(body: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    candle = body.get("candle")
    if not isinstance(candle, dict):
        return None, None
    return _decimal(candle.get("open")), _decimal(candle.get("close"))


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def entity_of(body: dict[str, Any], kind: Kind) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("signal_id" if kind == "setup" else "position_id")
    return None if value is None else str(value)


def dump(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, dump({"error": message}), None)
