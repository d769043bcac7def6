"""Token-usage projection (the brief: ~264k tokens/day for 100 signals/day).

The brief's arithmetic, made explicit so the alarm threshold (125 % of projection) and
`cmon cost` agree: every signal gets one initial analysis; a share of them wait and are
re-analysed a few times; every position is managed for a number of candles; each LLM
call costs about the same number of tokens.

The projection is for the whole user base. During a staged rollout only a share of the
users is admitted, so what actual usage is compared against (here and in the CloudWatch
token alarms) is the projection times that share: at the 10 % stage, 10 % of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Projection:
    signals_per_day: float = 100
    wait_rate: float = 0.2
    reanalyses_per_wait: float = 3
    positions_per_day: float = 10
    candles_per_position: float = 8
    tokens_per_analysis: int = 1100
    usd_per_1k_tokens: float = 0.0005

    def __post_init__(self) -> None:
        if not 0 <= self.wait_rate <= 1:
            raise ValueError("wait_rate must be within [0, 1]")
        for name in (
            "signals_per_day",
            "reanalyses_per_wait",
            "positions_per_day",
            "candles_per_position",
            "tokens_per_analysis",
            "usd_per_1k_tokens",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


def project(p: Projection) -> dict[str, Any]:
    """Tokens per day by part, in total, and the monthly cost at the given price."""
    breakdown = {
        "initial analyses": round(p.signals_per_day * p.tokens_per_analysis),
        "setup monitoring": round(
            p.signals_per_day * p.wait_rate * p.reanalyses_per_wait * p.tokens_per_analysis
        ),
        "position management": round(p.positions_per_day * p.candles_per_position * p.tokens_per_analysis),
    }
    total = sum(breakdown.values())
    return {
        "breakdown": breakdown,
        "tokens_per_day": total,
        "alarm_tokens_per_day": round(total * 1.25),
        "usd_per_day": round(total * p.usd_per_1k_tokens / 1000, 4),
        "usd_per_month": total * 30 * p.usd_per_1k_tokens / 1000,
        "usd_per_1k_tokens": p.usd_per_1k_tokens,
    }


ALARM_PERCENT = 125


def compare(
    projected_tokens_per_day: int, actual_tokens: int, hours: float, admitted_share: float
) -> dict[str, Any]:
    """Actual usage over `hours` against the projection scaled to the admitted share of
    users and to the window: the number the token alarm fires on (above 125 %)."""
    if not 0 <= admitted_share <= 1:
        raise ValueError("admitted_share must be within [0, 1]")
    if hours <= 0:
        raise ValueError("hours must be positive")
    expected = projected_tokens_per_day * admitted_share * hours / 24
    return {
        "admitted_share": admitted_share,
        "expected_tokens": round(expected),
        "ratio": actual_tokens / expected if expected else None,
        "alarm_percent": ALARM_PERCENT,
        "over_alarm": bool(expected) and actual_tokens * 100 > expected * ALARM_PERCENT,
    }
