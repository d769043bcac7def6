"""Our error types: what crosses a layer boundary is one of these, never an SDK's.

Handlers decide retry behaviour by type, never by message text:
- `TransientError` subclasses mean "try again later" (SQS redelivers the message);
- `PermanentError` subclasses are recorded against the workflow and the message is done.
"""

from __future__ import annotations

from dataclasses import dataclass


class CmonError(Exception):
    """Base of every error this project raises on purpose."""


class TransientError(CmonError):
    """The operation may succeed if retried later (outage, timeout, throttling)."""


class PermanentError(CmonError):
    """Retrying the same input will fail the same way."""


class InvalidInterval(PermanentError, ValueError):
    """An interval Binance does not publish."""


class InvalidInput(PermanentError, ValueError):
    """Input that does not match its contract; `field` names the offending part."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(PermanentError):
    """The entity the operation names does not exist."""


class Unauthorized(PermanentError):
    """The caller did not present the secret the operation needs (the API answers 401)."""


class DatabaseUnavailable(TransientError):
    """Postgres could not be reached or the connection broke mid-operation."""


class DatabaseError(PermanentError):
    """Postgres rejected the statement (a constraint, a raised exception)."""


@dataclass(frozen=True)
class CallUsage:
    """What an llm-proxy call cost, as its answer reported it.

    Travels with a failure (an answer that did not match the contract, or one the
    database refused) so that the ledger counts the tokens of failed calls too: they
    were paid for, and the daily cap and the cost must see them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: int | None = None
    model: str | None = None
    trace_id: str | None = None


class LlmProxyError(CmonError):
    """llm-proxy did not give a usable answer; `usage` is set when its answer reported one."""

    def __init__(self, message: str, *, usage: CallUsage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class LlmProxyUnavailable(LlmProxyError, TransientError):
    """llm-proxy timed out, refused the connection or answered 429/5xx after retries."""


class LlmProxyRejected(LlmProxyError, PermanentError):
    """llm-proxy answered a 4xx other than 429: our request is wrong."""


class LlmProxyInvalidAnswer(LlmProxyError, PermanentError):
    """llm-proxy answered 200 with a body that does not match the contract."""


class PublishError(TransientError):
    """EventBridge or SQS refused entries after the allowed retries."""
