"""llm-proxy over HTTP: the one place that knows its URLs, headers, retries and errors.

Why it looks the way it does:
- One sync `httpx.Client` per process: Lambda handlers are sync and a warm container
  reuses the TCP/TLS connection across invocations, which is most of the latency win.
- Retries are bounded and jittered (full jitter, capped) so a fleet of workers hitting a
  throttled proxy spreads out instead of stampeding; `Retry-After` wins when given.
- The caller's `deadline` (the Lambda's remaining time) bounds everything: we would rather
  give up with `LlmProxyUnavailable` (SQS redelivers) than be killed mid-call by the
  Lambda timeout, which leaves no record at all.
- The same `Idempotency-Key` on every attempt lets the proxy answer a retry from its cache
  instead of paying for a second LLM call.
- Only our errors leave this module, and never with the API key in them.
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import SecretStr, ValidationError

from functions.adapters.tracing import span, trace_header
from functions.core.errors import (
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
)

if TYPE_CHECKING:
    from functions.settings import Settings

logger = logging.getLogger(__name__)

ANALYZE_PATH = "analyze-signal"
MANAGE_PATH = "manage-position"

# Trace metadata also travels as headers so the proxy (and any gateway in front of it)
# can tag the Braintrust trace and its access logs without parsing the body.
_TRACE_HEADERS: dict[str, str] = {
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
# was cut off mid-flight (a keep-alive connection the server had already closed).
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_AnswerT = TypeVar("_AnswerT", SetupAnswer, ManagementAnswer)


class _RetryableStatus(Exception):
    """Internal: a 429/5xx answer, carried to the retry loop with its Retry-After."""

    def __init__(self, status: int, retry_after_s: float | None) -> None:
        super().__init__(f"llm-proxy answered HTTP {status}")
        self.status = status
        self.retry_after_s = retry_after_s


class HttpLlmProxy:
    """The `LlmProxy` port over HTTP (see `functions.services.ports.LlmProxy`).

    `sleep`, `clock` and `random` are injectable so retry timing can be tested without
    waiting; `clock` must be monotonic and is the same clock `deadline` is measured on.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | Callable[[], str],
        *,
        timeout_s: float = 20.0,
        max_attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        min_attempt_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._retry_after_cap_s = retry_after_cap_s
        # An attempt with less time than this left cannot realistically get an LLM answer.
        self._min_attempt_s = min_attempt_s
        self._sleep = sleep
        self._clock = clock
        self._random = random
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> HttpLlmProxy:
        return cls(
            base_url=settings.llm_proxy_url,
            # Read per request (Secrets Manager, cached): a rotated key needs no restart.
            api_key=lambda: (settings.secret("llm_proxy_api_key") or SecretStr("")).get_secret_value(),
            timeout_s=settings.llm_proxy_timeout_s,
            max_attempts=settings.llm_proxy_max_attempts,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpLlmProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the key
        return f"HttpLlmProxy(base_url={str(self._client.base_url)!r})"

    # -- the port ---------------------------------------------------------------------

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        return self._call(
            ANALYZE_PATH, request.model_dump(mode="json"), request.metadata,
            SetupAnswer, idempotency_key, deadline,
        )  # fmt: skip

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        return self._call(
            MANAGE_PATH, request.model_dump(mode="json"), request.metadata,
            ManagementAnswer, idempotency_key, deadline,
        )  # fmt: skip

    # -- internals --------------------------------------------------------------------

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        metadata: TraceMetadata,
        answer_type: type[_AnswerT],
        idempotency_key: str,
        deadline: float | None,
    ) -> LlmResult:
        with span("llm-proxy", path=path, workflow_id=_text(metadata.workflow_id)):
            return self._call_in_span(path, body, metadata, answer_type, idempotency_key, deadline)

    def _call_in_span(
        self,
        path: str,
        body: dict[str, Any],
        metadata: TraceMetadata,
        answer_type: type[_AnswerT],
        idempotency_key: str,
        deadline: float | None,
    ) -> LlmResult:
        headers = {"Idempotency-Key": idempotency_key, **_trace_headers(metadata)}
        # Our X-Ray trace, passed on: llm-proxy records it beside its Braintrust trace.
        xray = trace_header()
        if xray:
            headers["X-Amzn-Trace-Id"] = xray
        api_key = self._current_key()
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        attempt = 0
        while True:
            attempt += 1
            timeout_s = self._attempt_timeout(path, attempt, deadline)
            started = self._clock()
            try:
                response = self._client.post(path, json=body, headers=headers, timeout=_timeout(timeout_s))
                latency_ms = max(0, round((self._clock() - started) * 1000))
                answer = self._read(path, response, answer_type)
                return LlmResult(answer=answer, latency_ms=latency_ms, attempts=attempt)
            except (_RetryableStatus, *_RETRYABLE_TRANSPORT) as e:
                reason = self._describe(e)
                if attempt >= self._max_attempts:
                    raise LlmProxyUnavailable(
                        self._redact(f"llm-proxy {path}: {reason} after {attempt} attempt(s)")
                    ) from e
                retry_after = e.retry_after_s if isinstance(e, _RetryableStatus) else None
                delay = self._backoff(attempt, retry_after)
                if deadline is not None and self._clock() + delay + self._min_attempt_s > deadline:
                    raise LlmProxyUnavailable(
                        self._redact(
                            f"llm-proxy {path}: {reason} after {attempt} attempt(s); "
                            "no time left before the deadline to retry"
                        )
                    ) from e
                logger.warning(
                    "llm-proxy %s attempt %d/%d failed (%s); retrying in %.2fs",
                    path, attempt, self._max_attempts, reason, delay,
                )  # fmt: skip
                self._sleep(delay)
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                # Not worth retrying here (bad URL scheme, TLS misconfiguration...), but
                # transient from the workflow's view: fixing the config makes it succeed.
                raise LlmProxyUnavailable(self._redact(f"llm-proxy {path}: {self._describe(e)}")) from e

    def _attempt_timeout(self, path: str, attempt: int, deadline: float | None) -> float:
        """The timeout for the next attempt, never reaching past the deadline."""
        if deadline is None:
            return self._timeout_s
        remaining = deadline - self._clock()
        if remaining < self._min_attempt_s:
            raise LlmProxyUnavailable(
                f"llm-proxy {path}: deadline reached before attempt {attempt} "
                f"({max(remaining, 0.0):.3f}s left)"
            )
        return min(self._timeout_s, remaining)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter under a capped exponential; the server's Retry-After wins (capped)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self._retry_after_cap_s)
        ceiling = min(self._backoff_cap_s, self._backoff_base_s * 2.0 ** (attempt - 1))
        return ceiling * min(max(self._random(), 0.0), 1.0)

    def _read(self, path: str, response: httpx.Response, answer_type: type[_AnswerT]) -> _AnswerT:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableStatus(status, _retry_after(response.headers))
        if not 200 <= status < 300:
            raise LlmProxyRejected(
                self._redact(f"llm-proxy {path} rejected the request: HTTP {status}"
                             f"{_snippet(response)}")
            )  # fmt: skip
        return self._parse(path, response.content, answer_type)

    def _parse(self, path: str, content: bytes, answer_type: type[_AnswerT]) -> _AnswerT:
        try:
            return answer_type.model_validate_json(content)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False)[:5]
            )
            raise LlmProxyInvalidAnswer(
                self._redact(f"llm-proxy {path} answer does not match the contract: {problems}")
            ) from e
        except (ValueError, TypeError, RecursionError) as e:  # pragma: no cover - defensive
            raise LlmProxyInvalidAnswer(
                self._redact(f"llm-proxy {path} answer is not valid JSON: {type(e).__name__}")
            ) from e

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, _RetryableStatus):
            return f"HTTP {error.status}"
        detail = str(error)
        return f"{type(error).__name__}: {detail}" if detail else type(error).__name__

    def _redact(self, message: str) -> str:
        api_key = self._current_key()
        return message.replace(api_key, "***") if api_key else message

    def _current_key(self) -> str:
        return self._api_key() if callable(self._api_key) else self._api_key


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _trace_headers(metadata: TraceMetadata) -> dict[str, str]:
    values = metadata.model_dump(mode="json")
    return {
        header: str(values[field])
        for field, header in _TRACE_HEADERS.items()
        if values.get(field) is not None
    }


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or junk."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(seconds, 0.0)


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    """A short, single-line excerpt of an error body: enough to debug a 4xx."""
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):  # pragma: no cover - defensive
        return ""
    text = " ".join(text.split())[:limit]
    return f": {text}" if text else ""


__all__ = ["ANALYZE_PATH", "MANAGE_PATH", "HttpLlmProxy"]
