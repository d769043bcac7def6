"""EdgeLlmProxy through the real `supabase_functions` client over httpx.MockTransport, with a
fake clock: what the loopback contract suite cannot pin without waiting (Retry-After, the
exact timeout of each attempt) and the wire details of the Edge Function layout."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from functions.adapters.edge_llm import EdgeLlmProxy
from functions.core.errors import LlmProxyRejected, LlmProxyUnavailable
from functions.core.models import AnalyzeSignalRequest, ManagePositionRequest, SetupAnswer, TraceMetadata
from functions.services.ports import LlmProxy

KEY = "sb-service-role-very-secret-777"
URL = "https://project-ref.supabase.test"
WORKFLOW_ID = UUID("66666666-6666-4666-8666-666666666666")
SIGNAL_ID = UUID("77777777-7777-4777-8777-777777777777")
ANSWER: dict[str, Any] = {
    "decision": "wait",
    "confidence": 0.5,
    "reasoning": "r",
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "model": "m",
    "trace_id": "t",
}

Step = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        return step(request) if callable(step) else step


def make(script: Script, fake: FakeTime, *, max_attempts: int = 3, timeout_s: float = 5.0) -> EdgeLlmProxy:
    return EdgeLlmProxy(
        URL, KEY, timeout_s=timeout_s, max_attempts=max_attempts, transport=httpx.MockTransport(script),
        backoff_base_s=0.5, backoff_cap_s=2.0, retry_after_cap_s=10.0,
        sleep=fake.sleep, clock=fake.clock, random=lambda: 0.5,
    )  # fmt: skip


def request() -> AnalyzeSignalRequest:
    return AnalyzeSignalRequest(
        signal={"id": str(SIGNAL_ID)},
        trader={"id": "t"},
        candle={"open": "1", "close": "1"},
        analysis_type="monitoring",
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID, signal_id=SIGNAL_ID, candle_time="c1", analysis_type="monitoring"
        ),
    )


def ok() -> httpx.Response:
    return httpx.Response(200, json=ANSWER)


def test_the_wire_layout_of_an_invocation() -> None:
    script, fake = Script(ok()), FakeTime()

    result = make(script, fake).analyze_signal(request(), idempotency_key="wf:c1")

    assert isinstance(result.answer, SetupAnswer)
    [sent] = script.requests
    assert sent.method == "POST"
    assert str(sent.url) == f"{URL}/functions/v1/llm-proxy/analyze-signal"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["apikey"] == KEY
    assert sent.headers["idempotency-key"] == "wf:c1"
    assert sent.headers["x-cmon-signal-id"] == str(SIGNAL_ID)
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == request().model_dump(mode="json")


def test_manage_position_is_its_own_path_suffix() -> None:
    answer = {**ANSWER, "action": "hold", "params": {}}
    del answer["decision"]
    script = Script(httpx.Response(200, json=answer))
    position = ManagePositionRequest(
        position={"id": "p"},
        candle={},
        metadata=TraceMetadata(workflow_id=WORKFLOW_ID, analysis_type="position_management"),
    )

    make(script, FakeTime()).manage_position(position, idempotency_key="k")

    assert script.requests[0].url.path == "/functions/v1/llm-proxy/manage-position"


def test_retry_after_of_a_429_from_the_function_is_honoured() -> None:
    script, fake = (
        Script(httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "slow"}), ok()),
        FakeTime(),
    )

    result = make(script, fake).analyze_signal(request(), idempotency_key="k")

    assert result.attempts == 2
    assert fake.sleeps == [3.0]


def test_a_relay_error_is_retried_with_its_retry_after() -> None:
    relay = httpx.Response(503, headers={"x-relay-error": "true", "Retry-After": "2"}, text="relay down")
    script, fake = Script(relay, ok()), FakeTime()

    result = make(script, fake).analyze_signal(request(), idempotency_key="k")

    assert result.attempts == 2
    assert fake.sleeps == [2.0]


def test_a_relay_error_with_a_4xx_status_is_still_transient() -> None:
    """The relay sets `x-relay-error` whatever the status: the function never ran."""
    relay = httpx.Response(400, headers={"x-relay-error": "true"}, text="relay")
    script, fake = Script(relay, relay), FakeTime()

    with pytest.raises(LlmProxyUnavailable, match="relay error HTTP 400 after 2"):
        make(script, fake, max_attempts=2).analyze_signal(request(), idempotency_key="k")


def test_each_attempt_timeout_is_cut_to_the_deadline() -> None:
    script, fake = Script(httpx.Response(500), ok()), FakeTime()

    make(script, fake, timeout_s=5.0).analyze_signal(request(), idempotency_key="k", deadline=fake.now + 3.0)

    first, second = (r.extensions["timeout"] for r in script.requests)
    assert first["read"] == pytest.approx(3.0)
    assert second["read"] == pytest.approx(3.0 - fake.sleeps[0])
    assert first["connect"] == pytest.approx(3.0)


def test_without_a_deadline_the_configured_timeout_applies() -> None:
    script = Script(ok())

    make(script, FakeTime(), timeout_s=7.0).analyze_signal(request(), idempotency_key="k")

    assert script.requests[0].extensions["timeout"]["read"] == pytest.approx(7.0)
    assert script.requests[0].extensions["timeout"]["connect"] == pytest.approx(5.0)


def test_a_redirect_is_not_followed_and_the_key_stays_home() -> None:
    moved = httpx.Response(307, headers={"Location": "https://elsewhere.test/"})
    script = Script(moved, ok())

    with pytest.raises(LlmProxyRejected, match="HTTP 307"):
        make(script, FakeTime()).analyze_signal(request(), idempotency_key="k")

    assert len(script.requests) == 1


def test_an_error_body_echoing_the_key_is_redacted() -> None:
    script = Script(httpx.Response(403, json={"error": f"key {KEY} is not allowed"}))

    with pytest.raises(LlmProxyRejected) as caught:
        make(script, FakeTime()).analyze_signal(request(), idempotency_key="k")

    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)


def test_satisfies_the_port_and_hides_the_key() -> None:
    client = make(Script(), FakeTime())
    port: LlmProxy = client
    assert port is client
    assert KEY not in repr(client)
