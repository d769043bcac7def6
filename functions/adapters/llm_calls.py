"""What every llm-proxy transport shares: the retry policy, the deadline cut, the status
mapping and the answer validation. A transport only says how one attempt is sent.

Why one base and not two copies: the plain HTTP service (`functions.adapters.llm_proxy`)
and the Supabase Edge Function (`functions.adapters.edge_llm`) are the same contract
behind different front doors. If their retries, deadlines or error types drifted apart,
switching `LLM_PROXY_TRANSPORT` would silently change how workflows fail.

The policy:
- Retries are bounded and jittered (`functions.core.retry`: full jitter, a uniform draw in
  [0, min(cap, base * 2^(n-1))]) so a fleet of workers hitting a
  throttled proxy spreads out instead of stampeding; `Retry-After` wins when given.
- The caller's `deadline` (the Lambda's remaining time) bounds everything: every attempt's
  timeout is cut to it and no retry starts that cannot finish before it. We would rather
  give up with `LlmProxyUnavailable` (SQS redelivers) than be killed mid-call by the
  Lambda timeout, which leaves no record at all.
- The same `Idempotency-Key` on every attempt lets the proxy answer a retry from its cache
  instead of paying for a second LLM call.
- 429 and 5xx are transient (retried, then `LlmProxyUnavailable`); any other non-2xx is our
  request's fault (`LlmProxyRejected`, never retried); a 2xx whose body breaks the contract
  is `LlmProxyInvalidAnswer`. Only our errors leave, and never with a secret in them.
"""

from __future__ import annotations

import json
import logging
import random as _random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from functions.adapters.tracing import span, trace_header
from functions.core.errors import (
    CallUsage,
    LlmProxyInvalidAnswer,
    LlmProxyRejected,
    LlmProxyUnavailable,
)
from functions.core.models import (
    AnalyzeSignalRequest,
    LlmResult,
    ManagementAnswer,
    ManagePositionRequest,
    SetupAnswer,
    TraceMetadata,
    Usage,
)
from functions.core.retry import BackoffPolicy, parse_retry_after

logger = logging.getLogger("functions.adapters.llm_proxy")

ANALYZE_OPERATION = "analyze-signal"
MANAGE_OPERATION = "manage-position"

# Trace metadata also travels as headers so the proxy (and any gateway in front of it)
# can tag the Braintrust trace and its access logs without parsing the body.
TRACE_HEADERS: dict[str, str] = {
    "workflow_id": "x-cmon-workflow-id",
    "workflow_type": "x-cmon-workflow-type",
    "signal_id": "x-cmon-signal-id",
    "position_id": "x-cmon-position-id",
    "trader_id": "x-cmon-trader-id",
    "candle_time": "x-cmon-candle-time",
    "analysis_type": "x-cmon-analysis-type",
    "stage": "x-cmon-stage",
}

# Errors after which the same request may well succeed: the proxy never saw it, or it
# was cut off mid-flight (a keep-alive connection the server had already closed). Both
# transports run on httpx, and the Supabase client lets these through unwrapped.
RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_AnswerT = TypeVar("_AnswerT", SetupAnswer, ManagementAnswer)


class RetryableStatus(Exception):
    """Internal: a 429/5xx answer (or a relay failure), carried to the retry loop."""

    def __init__(self, status: int, retry_after_s: float | None, *, relay: bool = False) -> None:
        kind = "relay error" if relay else "answered"
        super().__init__(f"llm-proxy {kind} HTTP {status}")
        self.status = status
        self.retry_after_s = retry_after_s
        self.relay = relay


class LlmProxyBase(ABC):
    """The `LlmProxy` port (see `functions.services.ports.LlmProxy`) minus the wire.

    `sleep`, `clock` and `random` are injectable so retry timing can be tested without
    waiting; `clock` must be monotonic and is the same clock `deadline` is measured on.
    `secrets` are redacted from every message this class raises or logs; a callable entry
    is read at each use (a key rotated in Secrets Manager is redacted too).
    """

    def __init__(
        self,
        *,
        secrets: Iterable[str | Callable[[], str]],
        timeout_s: float,
        max_attempts: int,
        backoff_base_s: float,
        backoff_cap_s: float,
        retry_after_cap_s: float,
        min_attempt_s: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._secrets = tuple(s for s in secrets if s)
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._policy = BackoffPolicy(backoff_base_s, backoff_cap_s, retry_after_cap_s=retry_after_cap_s)
        # An attempt with less time than this left cannot realistically get an LLM answer.
        self._min_attempt_s = min_attempt_s
        self._sleep = sleep
        self._clock = clock
        self._random = random

    # -- the transport's part ---------------------------------------------------------

    @abstractmethod
    def _send(self, operation: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> bytes:
        """Send one attempt within `timeout_s`; return a 2xx body.

        Raise `RetryableStatus` (or call `_check_status`) for a non-2xx answer; let the
        httpx errors through: the loop classifies them.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection pool."""

    def __enter__(self) -> LlmProxyBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the port ---------------------------------------------------------------------

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        return self._call(
            ANALYZE_OPERATION, request.model_dump(mode="json"), request.metadata,
            SetupAnswer, idempotency_key, deadline,
        )  # fmt: skip

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        return self._call(
            MANAGE_OPERATION, request.model_dump(mode="json"), request.metadata,
            ManagementAnswer, idempotency_key, deadline,
        )  # fmt: skip

    # -- the one policy ---------------------------------------------------------------

    def _call(
        self,
        operation: str,
        body: dict[str, Any],
        metadata: TraceMetadata,
        answer_type: type[_AnswerT],
        idempotency_key: str,
        deadline: float | None,
    ) -> LlmResult:
        with span("llm-proxy", path=operation, workflow_id=_text_or_none(metadata.workflow_id)):
            headers = {
                "Idempotency-Key": idempotency_key,
                **trace_headers(metadata),
                **self._request_headers(),
            }
            # Our X-Ray trace, passed on: llm-proxy records it beside its Braintrust trace.
            xray = trace_header()
            if xray:
                headers["X-Amzn-Trace-Id"] = xray
            attempt = 0
            while True:
                attempt += 1
                timeout_s = self._attempt_timeout(operation, attempt, deadline)
                started = self._clock()
                try:
                    content = self._send(operation, body, headers, timeout_s)
                    latency_ms = max(0, round((self._clock() - started) * 1000))
                    answer = self._parse(operation, content, answer_type, latency_ms)
                    return LlmResult(answer=answer, latency_ms=latency_ms, attempts=attempt)
                except (RetryableStatus, *RETRYABLE_TRANSPORT) as e:
                    reason = self._describe(e)
                    if attempt >= self._max_attempts:
                        raise LlmProxyUnavailable(
                            self._redact(f"llm-proxy {operation}: {reason} after {attempt} attempt(s)")
                        ) from e
                    retry_after = e.retry_after_s if isinstance(e, RetryableStatus) else None
                    delay = self._backoff(attempt, retry_after)
                    if deadline is not None and self._clock() + delay + self._min_attempt_s > deadline:
                        raise LlmProxyUnavailable(
                            self._redact(
                                f"llm-proxy {operation}: {reason} after {attempt} attempt(s); "
                                "no time left before the deadline to retry"
                            )
                        ) from e
                    logger.warning(
                        "llm-proxy %s attempt %d/%d failed (%s); retrying in %.2fs",
                        operation, attempt, self._max_attempts, self._redact(reason), delay,
                    )  # fmt: skip
                    self._sleep(delay)
                except (httpx.HTTPError, httpx.InvalidURL) as e:
                    # Not worth retrying here (bad URL scheme, TLS misconfiguration...), but
                    # transient from the workflow's view: fixing the config makes it succeed.
                    raise LlmProxyUnavailable(
                        self._redact(f"llm-proxy {operation}: {self._describe(e)}")
                    ) from e

    def _attempt_timeout(self, operation: str, attempt: int, deadline: float | None) -> float:
        """The timeout for the next attempt, never reaching past the deadline."""
        if deadline is None:
            return self._timeout_s
        remaining = deadline - self._clock()
        if remaining < self._min_attempt_s:
            raise LlmProxyUnavailable(
                f"llm-proxy {operation}: deadline reached before attempt {attempt} "
                f"({max(remaining, 0.0):.3f}s left)"
            )
        return min(self._timeout_s, remaining)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """The shared policy (`functions.core.retry`): a uniform draw in [0, min(cap,
        base * 2^(attempt-1))]; the server's Retry-After wins, capped."""
        return self._policy.delay(attempt, self._random(), retry_after_s)

    def _check_status(self, operation: str, status: int, headers: Mapping[str, str], text: str) -> None:
        """The status mapping both transports use: 2xx passes, 429/5xx retry, else reject."""
        if status == 429 or status >= 500:
            raise RetryableStatus(status, retry_after(headers))
        if not 200 <= status < 300:
            raise LlmProxyRejected(
                self._redact(f"llm-proxy {operation} rejected the request: HTTP {status}{snippet(text)}")
            )

    def _parse(
        self, operation: str, content: bytes, answer_type: type[_AnswerT], latency_ms: int | None = None
    ) -> _AnswerT:
        try:
            return answer_type.model_validate_json(content)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False)[:5]
            )
            raise LlmProxyInvalidAnswer(
                self._redact(f"llm-proxy {operation} answer does not match the contract: {problems}"),
                usage=reported_usage(content, latency_ms),
            ) from e
        except (ValueError, TypeError, RecursionError) as e:  # pragma: no cover - defensive
            raise LlmProxyInvalidAnswer(
                self._redact(f"llm-proxy {operation} answer is not valid JSON: {type(e).__name__}")
            ) from e

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, RetryableStatus):
            return f"relay error HTTP {error.status}" if error.relay else f"HTTP {error.status}"
        detail = str(error)
        return f"{type(error).__name__}: {detail}" if detail else type(error).__name__

    def _redact(self, message: str) -> str:
        for entry in self._secrets:
            secret = entry() if callable(entry) else entry
            if secret:
                message = message.replace(secret, "***")
        return message

    def _request_headers(self) -> dict[str, str]:
        """Headers a transport adds per request (e.g. a key read at each call)."""
        return {}


def attempt_timeout(seconds: float) -> httpx.Timeout:
    """One attempt's httpx timeout: the whole budget, but connecting gets at most 5 s."""
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def trace_headers(metadata: TraceMetadata) -> dict[str, str]:
    values = metadata.model_dump(mode="json")
    return {
        header: str(values[field]) for field, header in TRACE_HEADERS.items() if values.get(field) is not None
    }


def retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or junk."""
    return parse_retry_after(headers.get("retry-after"), time.time())


def snippet(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of an error body: enough to debug a 4xx."""
    text = " ".join(text.split())[:limit]
    return f": {text}" if text else ""


DEFAULT_RANDOM = _random.random
DEFAULT_SLEEP = time.sleep
DEFAULT_CLOCK = time.monotonic

__all__ = [
    "ANALYZE_OPERATION",
    "MANAGE_OPERATION",
    "LlmProxyBase",
    "RetryableStatus",
    "retry_after",
    "trace_headers",
]


def reported_usage(content: bytes, latency_ms: int | None) -> CallUsage | None:
    """The usage an answer reported even though the answer itself is invalid: the call
    was paid for, so the ledger must see it. None when the body carries no valid usage."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return None
    try:
        usage = Usage.model_validate(body["usage"])
    except ValidationError:
        return None
    model, trace_id = body.get("model"), body.get("trace_id")
    return CallUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        latency_ms=latency_ms,
        model=model[:200] if isinstance(model, str) else None,
        trace_id=trace_id[:200] if isinstance(trace_id, str) else None,
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
