"""What the stub llm-proxy keeps: every call it saw (`StubCall`), its configuration, and
its per-entity queues of scripted answers and failures and its idempotency cache. Plain
records; `stub_llm.StubLlmProxy` guards them with its lock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from functions.local.stub_answers import Answer, FailStatus, Kind


@dataclass(frozen=True)
class StubCall:
    """One request to an llm endpoint, as the stub saw and answered it.

    `headers` keys are lower-case; `status` is None when no answer was sent (timeout mode).
    """

    path: str
    headers: dict[str, str]
    body: Any
    status: int | None
    answer: dict[str, Any] | None
    entity_id: str | None = None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class StubConfig:
    latency_ms: int = 0
    failure_rate: float = 0.0
    seed: int | None = 0
    prompt_tokens: int = 950
    completion_tokens: int = 150
    # Relative standard deviation of the token counts: 0 serves exactly the counts above;
    # 0.25 draws each answer's prompt and completion counts from a normal distribution
    # around them (seeded by `seed`, at least 1 token each), as a real model varies.
    token_jitter: float = 0.0
    # How long "timeout" mode holds a request: longer than any sane client timeout; the
    # wait is cut short by `stop()` so the server never lingers.
    timeout_sleep_s: float = 30.0


@dataclass
class Failure:
    remaining: int
    status: FailStatus


@dataclass
class StubState:
    queues: dict[tuple[Kind, str], deque[Answer]] = field(default_factory=dict)
    failures: dict[str, deque[Failure]] = field(default_factory=dict)
    cache: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[StubCall] = field(default_factory=list)
    sequence: int = 0
