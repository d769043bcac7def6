"""llm-proxy as a Supabase Edge Function, invoked through the `supabase` client's functions
API (the `supabase-functions` distribution: `SyncFunctionsClient.invoke`).

The contract (README, "llm-proxy as an Edge Function"): `POST {SUPABASE_URL}/functions/v1/
{LLM_PROXY_FUNCTION}/{operation}` with `operation` = `analyze-signal` | `manage-position`,
headers `Authorization: Bearer <SUPABASE_KEY>` and `apikey: <SUPABASE_KEY>` (what
`supabase.create_client(url, key).functions` sends), `Idempotency-Key` and the trace
headers; the body and the answers are exactly those of the plain HTTP service.

Why this shape:
- `supabase-functions`, not the full `supabase` package: it is the only part we use, and
  the full package adds the PostgREST, Auth, Storage and Realtime clients (cryptography,
  PyJWT, websockets pinned below 16) to every Lambda's artifact and ~0.5 s to an import
  (README, "Edge Function transport: which package"). This module is imported only when
  `LLM_PROXY_TRANSPORT=edge` (`functions.handlers.wiring.build_llm`), so the HTTP
  transport's cold start does not pay for it either.
- The operation is a path suffix because an Edge Function receives every path under its
  name (`/functions/v1/llm-proxy/*`) and routes on it; the body then stays byte-for-byte
  the HTTP service's, so one llm-proxy code base can serve both front doors.
- `invoke()` takes no timeout and hides the response of a failed call, so we hand it our
  own `httpx.Client`: its `build_request` applies the attempt's timeout (cut to the
  Lambda deadline) and a response hook keeps the last response for `Retry-After`. Both
  travel in a context variable, so one adapter is safe to share between threads.
- The library raises `FunctionsHttpError(status)` for any non-2xx and `FunctionsRelayError`
  when Supabase's relay could not reach the function (header `x-relay-error: true`; the
  function never ran, so it is retried like a network error); timeouts and connection
  errors come through as httpx errors. All of them go through the one policy of
  `functions.adapters.llm_calls`. Redirects are not followed: the key stays on its origin.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr
from supabase_functions import SyncFunctionsClient
from supabase_functions.errors import FunctionsHttpError, FunctionsRelayError

from functions.adapters.llm_calls import (
    DEFAULT_CLOCK,
    DEFAULT_RANDOM,
    DEFAULT_SLEEP,
    LlmProxyBase,
    RetryableStatus,
    attempt_timeout,
    retry_after,
)
from functions.core.errors import LlmProxyRejected

if TYPE_CHECKING:
    from functions.settings import Settings

DEFAULT_FUNCTION = "llm-proxy"
FUNCTIONS_PATH = "functions/v1"
# Supabase function names: letters, digits, `-` and `_` (they are one path segment).
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class _Attempt:
    timeout: httpx.Timeout
    response: httpx.Response | None = None


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("cmon_edge_attempt", default=None)


class _AttemptClient(httpx.Client):
    """An httpx client whose requests take the current attempt's timeout."""

    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        attempt = _ATTEMPT.get()
        if attempt is not None:
            kwargs["timeout"] = attempt.timeout
        return super().build_request(*args, **kwargs)


def _remember_response(response: httpx.Response) -> None:
    attempt = _ATTEMPT.get()
    if attempt is not None:
        attempt.response = response


class EdgeLlmProxy(LlmProxyBase):
    """The `LlmProxy` port over the Supabase Edge Function `function_name`."""

    def __init__(
        self,
        supabase_url: str,
        supabase_key: str,
        *,
        function_name: str = DEFAULT_FUNCTION,
        timeout_s: float = 20.0,
        max_attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        min_attempt_s: float = 0.25,
        sleep: Callable[[float], None] = DEFAULT_SLEEP,
        clock: Callable[[], float] = DEFAULT_CLOCK,
        random: Callable[[], float] = DEFAULT_RANDOM,
    ) -> None:
        super().__init__(
            secrets=[supabase_key], timeout_s=timeout_s, max_attempts=max_attempts,
            backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s,
            retry_after_cap_s=retry_after_cap_s, min_attempt_s=min_attempt_s,
            sleep=sleep, clock=clock, random=random,
        )  # fmt: skip
        if not supabase_key:
            raise ValueError("the Edge Function transport needs a key (SUPABASE_KEY)")
        if not FUNCTION_NAME.fullmatch(function_name):
            raise ValueError(f"not a Supabase function name: {function_name!r}")
        self._function = function_name
        self._functions_url = f"{supabase_url.rstrip('/')}/{FUNCTIONS_PATH}"
        self._http = _AttemptClient(
            timeout=attempt_timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
            event_hooks={"response": [_remember_response]},
        )
        # The headers `supabase.create_client(url, key)` gives its functions client.
        self._functions = SyncFunctionsClient(
            url=self._functions_url,
            headers={
                "apikey": supabase_key,
                "Authorization": f"Bearer {supabase_key}",
                "Accept": "application/json",
            },
            http_client=self._http,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> EdgeLlmProxy:
        if not settings.supabase_url:
            raise ValueError("SUPABASE_URL is not set (needed by LLM_PROXY_TRANSPORT=edge)")
        return cls(
            supabase_url=settings.supabase_url,
            # Secrets Manager when SUPABASE_KEY_SECRET_ID is set (read once per container).
            supabase_key=(settings.secret("supabase_key") or SecretStr("")).get_secret_value(),
            function_name=settings.llm_proxy_function,
            timeout_s=settings.llm_proxy_timeout_s,
            max_attempts=settings.llm_proxy_max_attempts,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgeLlmProxy:
        return self

    def __repr__(self) -> str:  # never the key
        return f"EdgeLlmProxy(functions_url={self._functions_url!r}, function={self._function!r})"

    def _send(self, operation: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> bytes:
        attempt = _Attempt(attempt_timeout(timeout_s))
        token = _ATTEMPT.set(attempt)
        try:
            content = self._functions.invoke(
                f"{self._function}/{operation}", {"headers": headers, "body": body}
            )
        except FunctionsRelayError as e:
            raise RetryableStatus(e.status, _retry_after_of(attempt), relay=True) from e
        except FunctionsHttpError as e:
            response_headers = attempt.response.headers if attempt.response is not None else httpx.Headers()
            try:
                self._check_status(operation, e.status, response_headers, e.message)
            except (RetryableStatus, LlmProxyRejected) as mapped:
                raise mapped from e
            # The library raises only for non-2xx, which the mapping never passes.
            raise LlmProxyRejected(  # pragma: no cover - defensive
                self._redact(f"llm-proxy {operation}: HTTP {e.status}")
            ) from e
        finally:
            _ATTEMPT.reset(token)
        if isinstance(content, dict):  # pragma: no cover - only with responseType "json"
            raise TypeError("invoke() returned parsed JSON; expected bytes")
        return content


def _retry_after_of(attempt: _Attempt) -> float | None:
    return retry_after(attempt.response.headers) if attempt.response is not None else None


__all__ = ["DEFAULT_FUNCTION", "EdgeLlmProxy"]
