"""llm-proxy as a plain HTTP service: `POST {LLM_PROXY_URL}/<operation>` with its own key.

Why it looks the way it does:
- One sync `httpx.Client` per process: Lambda handlers are sync and a warm container
  reuses the TCP/TLS connection across invocations, which is most of the latency win.
- Retries, the deadline cut, the status mapping and the answer validation are the one
  policy in `functions.adapters.llm_calls`, shared with the Edge Function transport
  (`functions.adapters.edge_llm`); this module only knows the URL and the bearer key.
- Only our errors leave this module, and never with the API key in them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from functions.adapters.llm_calls import (
    ANALYZE_OPERATION,
    DEFAULT_CLOCK,
    DEFAULT_RANDOM,
    DEFAULT_SLEEP,
    MANAGE_OPERATION,
    LlmProxyBase,
    attempt_timeout,
)

if TYPE_CHECKING:
    from functions.settings import Settings

ANALYZE_PATH = ANALYZE_OPERATION
MANAGE_PATH = MANAGE_OPERATION


class HttpLlmProxy(LlmProxyBase):
    """The `LlmProxy` port over HTTP (see `functions.services.ports.LlmProxy`)."""

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
        sleep: Callable[[float], None] = DEFAULT_SLEEP,
        clock: Callable[[], float] = DEFAULT_CLOCK,
        random: Callable[[], float] = DEFAULT_RANDOM,
    ) -> None:
        super().__init__(
            secrets=[api_key], timeout_s=timeout_s, max_attempts=max_attempts,
            backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s,
            retry_after_cap_s=retry_after_cap_s, min_attempt_s=min_attempt_s,
            sleep=sleep, clock=clock, random=random,
        )  # fmt: skip
        self._api_key = api_key
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=attempt_timeout(timeout_s),
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

    def __repr__(self) -> str:  # never the key
        return f"HttpLlmProxy(base_url={str(self._client.base_url)!r})"

    def _request_headers(self) -> dict[str, str]:
        key = self._api_key() if callable(self._api_key) else self._api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _send(self, operation: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> bytes:
        timeout = attempt_timeout(timeout_s)
        response = self._client.post(operation, json=body, headers=headers, timeout=timeout)
        self._check_status(operation, response.status_code, response.headers, _text(response))
        return response.content


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except (UnicodeDecodeError, LookupError):  # pragma: no cover - defensive
        return ""


__all__ = ["ANALYZE_PATH", "MANAGE_PATH", "HttpLlmProxy"]
