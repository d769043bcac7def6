"""HttpLlmProxy against httpx.MockTransport, with a fake clock: no network, no waiting."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters.llm_proxy import HttpLlmProxy
from functions.core.errors import (
    LlmProxyError,
    LlmProxyInvalidAnswer,
    LlmProxyRejected,
    LlmProxyUnavailable,
    PermanentError,
    TransientError,
)
from functions.core.models import (
    AnalyzeSignalRequest,
    Decision,
    LlmResult,
    ManagementAnswer,
    ManagePositionRequest,
    SetupAnswer,
    Side,
    TraceMetadata,
)
from functions.services.ports import LlmProxy
from functions.settings import Settings

API_KEY = "sk-test-very-secret-key-123"
BASE_URL = "http://llm-proxy.test/v1"
WORKFLOW_ID = UUID("11111111-1111-4111-8111-111111111111")
SIGNAL_ID = UUID("22222222-2222-4222-8222-222222222222")
POSITION_ID = UUID("33333333-3333-4333-8333-333333333333")
BACKOFF_CAP_S = 2.0
RETRY_AFTER_CAP_S = 10.0

SETUP_ANSWER: dict[str, Any] = {
    "decision": "enter_trade",
    "confidence": 0.62,
    "reasoning": "breakout",
    "trade_plan": {"side": "long", "entry": "64200", "stop_loss": "63800", "take_profit": 65100.1},
    "usage": {"prompt_tokens": 950, "completion_tokens": 150, "total_tokens": 1100},
    "model": "gpt-test",
    "trace_id": "tr-1",
}
MANAGEMENT_ANSWER: dict[str, Any] = {
    "action": "adjust_sl",
    "params": {"stop_loss": "49500"},
    "confidence": 0.7,
    "reasoning": "tighten",
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    "model": "gpt-test",
    "trace_id": "tr-2",
}

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps (or a test says so)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """The transport's answers, in order; records every request it sees."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.steps, "the client made more attempts than scripted"
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step


def make_client(
    script: Script,
    fake: FakeTime | None = None,
    *,
    max_attempts: int = 3,
    random_value: float = 0.5,
) -> tuple[HttpLlmProxy, FakeTime]:
    fake = fake or FakeTime()
    client = HttpLlmProxy(
        BASE_URL,
        API_KEY,
        timeout_s=5.0,
        max_attempts=max_attempts,
        transport=httpx.MockTransport(script),
        backoff_base_s=0.5,
        backoff_cap_s=BACKOFF_CAP_S,
        retry_after_cap_s=RETRY_AFTER_CAP_S,
        sleep=fake.sleep,
        clock=fake.clock,
        random=lambda: random_value,
    )
    return client, fake


def setup_request() -> AnalyzeSignalRequest:
    return AnalyzeSignalRequest(
        signal={"id": str(SIGNAL_ID), "symbol": "BTCUSDT", "interval": "1m"},
        trader={"id": "t-1"},
        candle={"open": "64000", "close": "64200", "close_time": "2024-01-01T00:01:00.000Z"},
        analysis_type="monitoring",
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID,
            workflow_type="setup_monitoring",
            signal_id=SIGNAL_ID,
            candle_time="2024-01-01T00:01:00.000Z",
            analysis_type="monitoring",
            stage="test",
        ),
    )


def management_request() -> ManagePositionRequest:
    return ManagePositionRequest(
        position={"id": str(POSITION_ID), "side": "long"},
        candle={"open": "50000", "close": "50100"},
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID, position_id=POSITION_ID, analysis_type="position_management"
        ),
    )


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": "nope"}, headers=headers)


def assert_no_secret(error: BaseException) -> None:
    seen: BaseException | None = error
    while seen is not None:
        assert API_KEY not in str(seen)
        assert API_KEY not in repr(seen)
        seen = seen.__cause__


# -- success ------------------------------------------------------------------------------


def test_setup_answer_parses_into_models_with_decimals() -> None:
    script = Script(ok(SETUP_ANSWER))
    client, fake = make_client(script)

    result = client.analyze_signal(setup_request(), idempotency_key="wf:2024-01-01T00:01")

    assert isinstance(result.answer, SetupAnswer)
    assert result.answer.decision is Decision.ENTER_TRADE
    plan = result.answer.trade_plan
    assert plan is not None
    assert plan.side is Side.LONG
    assert plan.entry == Decimal("64200")
    assert isinstance(plan.entry, Decimal)
    assert plan.take_profit == Decimal("65100.1")  # a JSON float arrives without float noise
    assert result.answer.usage.total_tokens == 1100
    assert result.attempts == 1
    assert result.latency_ms >= 0
    assert fake.sleeps == []


def test_request_shape_headers_and_body() -> None:
    script = Script(ok(SETUP_ANSWER))
    client, _ = make_client(script)
    request = setup_request()

    client.analyze_signal(request, idempotency_key="wf:candle")

    (sent,) = script.requests
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/analyze-signal"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["idempotency-key"] == "wf:candle"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-cmon-workflow-id"] == str(WORKFLOW_ID)
    assert sent.headers["x-cmon-signal-id"] == str(SIGNAL_ID)
    assert sent.headers["x-cmon-analysis-type"] == "monitoring"
    assert sent.headers["x-cmon-candle-time"] == "2024-01-01T00:01:00.000Z"
    assert "x-cmon-position-id" not in sent.headers  # None values are not sent
    assert json.loads(sent.content) == request.model_dump(mode="json")


def test_manage_position_posts_to_its_path_and_keeps_params_raw() -> None:
    script = Script(ok(MANAGEMENT_ANSWER))
    client, _ = make_client(script)

    result = client.manage_position(management_request(), idempotency_key="wf:c2")

    assert str(script.requests[0].url) == f"{BASE_URL}/manage-position"
    assert script.requests[0].headers["x-cmon-position-id"] == str(POSITION_ID)
    assert isinstance(result.answer, ManagementAnswer)
    assert result.answer.action == "adjust_sl"
    assert result.answer.params == {"stop_loss": "49500"}


def test_unknown_extra_fields_are_ignored() -> None:
    body = {**SETUP_ANSWER, "new_field": {"x": 1}, "cost_usd": 0.01}
    body["trade_plan"] = {**SETUP_ANSWER["trade_plan"], "leverage": 5}
    client, _ = make_client(Script(ok(body)))

    result = client.analyze_signal(setup_request(), idempotency_key="k")

    assert isinstance(result.answer, SetupAnswer)
    assert result.answer.decision is Decision.ENTER_TRADE


def test_latency_is_the_successful_attempts_wall_time() -> None:
    fake = FakeTime()

    def slow(request: httpx.Request) -> httpx.Response:
        fake.now += 0.25
        return ok(SETUP_ANSWER)

    script = Script(status(503), slow)
    client, _ = make_client(script, fake)

    result = client.analyze_signal(setup_request(), idempotency_key="k")

    assert result.attempts == 2
    assert result.latency_ms == 250


# -- retries ------------------------------------------------------------------------------


def test_two_5xx_then_success(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(status(500), status(502), ok(SETUP_ANSWER))
    client, fake = make_client(script, random_value=1.0)

    with caplog.at_level(logging.WARNING, logger="functions.adapters.llm_proxy"):
        result = client.analyze_signal(setup_request(), idempotency_key="same-key")

    assert result.attempts == 3
    assert len(script.requests) == 3
    assert len(fake.sleeps) == 2
    assert all(0 <= s <= BACKOFF_CAP_S for s in fake.sleeps)
    assert fake.sleeps == [0.5, 1.0]  # exponential under the cap, jitter at its maximum
    assert {r.headers["idempotency-key"] for r in script.requests} == {"same-key"}
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert all(API_KEY not in r.getMessage() for r in caplog.records)


def test_backoff_is_capped_and_jittered() -> None:
    script = Script(*[status(500)] * 6, ok(SETUP_ANSWER))
    client, fake = make_client(script, max_attempts=7, random_value=0.999)

    client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(fake.sleeps) == 6
    assert max(fake.sleeps) <= BACKOFF_CAP_S
    assert fake.sleeps[-1] == pytest.approx(BACKOFF_CAP_S * 0.999)


def test_full_jitter_can_be_zero() -> None:
    script = Script(status(500), ok(SETUP_ANSWER))
    client, fake = make_client(script, random_value=0.0)

    client.analyze_signal(setup_request(), idempotency_key="k")

    assert fake.sleeps == [0.0]


def test_429_retry_after_is_honoured() -> None:
    script = Script(status(429, **{"Retry-After": "3"}), ok(SETUP_ANSWER))
    client, fake = make_client(script)

    result = client.analyze_signal(setup_request(), idempotency_key="k")

    assert result.attempts == 2
    assert fake.sleeps == [3.0]


def test_429_retry_after_is_capped() -> None:
    script = Script(status(429, **{"Retry-After": "3600"}), ok(SETUP_ANSWER))
    client, fake = make_client(script)

    client.analyze_signal(setup_request(), idempotency_key="k")

    assert fake.sleeps == [RETRY_AFTER_CAP_S]


def test_junk_retry_after_falls_back_to_backoff() -> None:
    script = Script(status(429, **{"Retry-After": "soon"}), ok(SETUP_ANSWER))
    client, fake = make_client(script, random_value=1.0)

    client.analyze_signal(setup_request(), idempotency_key="k")

    assert fake.sleeps == [0.5]


def test_exhausted_retries_raise_unavailable_with_cause() -> None:
    script = Script(status(500), status(500), status(503))
    client, fake = make_client(script)

    with pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 3
    assert len(fake.sleeps) == 2
    assert "503" in str(caught.value)
    assert isinstance(caught.value, TransientError)
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=["read-timeout", "connect-timeout", "connect-error", "remote-protocol"],
)
def test_transport_errors_are_retried_then_unavailable(error: httpx.HTTPError) -> None:
    script = Script(error, error, error)
    client, fake = make_client(script)

    with pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 3
    assert len(fake.sleeps) == 2
    assert caught.value.__cause__ is error
    assert_no_secret(caught.value)


def test_timeout_then_success() -> None:
    script = Script(httpx.ReadTimeout("slow"), ok(SETUP_ANSWER))
    client, _ = make_client(script)

    result = client.analyze_signal(setup_request(), idempotency_key="k")

    assert result.attempts == 2
    assert [r.headers["idempotency-key"] for r in script.requests] == ["k", "k"]


def test_non_retryable_transport_error_is_unavailable_without_retry() -> None:
    error = httpx.UnsupportedProtocol("no such scheme")
    script = Script(error)
    client, fake = make_client(script)

    with pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 1
    assert fake.sleeps == []
    assert caught.value.__cause__ is error


# -- deadline -----------------------------------------------------------------------------


def test_no_retry_sleep_past_the_deadline() -> None:
    fake = FakeTime(now=100.0)
    script = Script(status(429, **{"Retry-After": "5"}), ok(SETUP_ANSWER))
    client, _ = make_client(script, fake)

    with pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k", deadline=102.0)

    assert len(script.requests) == 1
    assert fake.sleeps == []
    assert fake.now <= 102.0
    assert "deadline" in str(caught.value)


def test_deadline_already_passed_makes_no_attempt() -> None:
    fake = FakeTime(now=100.0)
    script = Script(ok(SETUP_ANSWER))
    client, _ = make_client(script, fake)

    with pytest.raises(LlmProxyUnavailable):
        client.analyze_signal(setup_request(), idempotency_key="k", deadline=100.1)

    assert script.requests == []


def test_retries_continue_while_the_deadline_allows() -> None:
    fake = FakeTime(now=100.0)
    script = Script(status(500), status(500), ok(SETUP_ANSWER))
    client, _ = make_client(script, fake, random_value=1.0)

    result = client.analyze_signal(setup_request(), idempotency_key="k", deadline=110.0)

    assert result.attempts == 3
    assert fake.now <= 110.0


def test_attempt_timeout_is_bounded_by_the_deadline() -> None:
    fake = FakeTime(now=100.0)
    seen: list[dict[str, float | None]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok(SETUP_ANSWER)

    client, _ = make_client(Script(capture), fake)

    client.analyze_signal(setup_request(), idempotency_key="k", deadline=101.5)

    assert seen[0]["read"] == pytest.approx(1.5)


# -- rejections and invalid answers -------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
def test_4xx_is_rejected_without_retry(code: int) -> None:
    script = Script(status(code))
    client, fake = make_client(script)

    with pytest.raises(LlmProxyRejected) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 1
    assert fake.sleeps == []
    assert str(code) in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert_no_secret(caught.value)


def test_rejection_message_never_echoes_the_key() -> None:
    echo = httpx.Response(401, text=f"bad token Bearer {API_KEY}")
    client, _ = make_client(Script(echo))

    with pytest.raises(LlmProxyRejected) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert_no_secret(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"",
        b"[1, 2, 3]",
        b"\xff\xfe",
        json.dumps({k: v for k, v in SETUP_ANSWER.items() if k != "decision"}).encode(),
        json.dumps({**SETUP_ANSWER, "decision": "buy_now"}).encode(),
        json.dumps({**SETUP_ANSWER, "confidence": 1.5}).encode(),
        json.dumps({**SETUP_ANSWER, "trade_plan": {"side": "sideways"}}).encode(),
        json.dumps({**SETUP_ANSWER, "trade_plan": {"side": "long", "entry": "-1"}}).encode(),
        json.dumps({**SETUP_ANSWER, "usage": {"prompt_tokens": -5}}).encode(),
    ],
    ids=[
        "not-json", "empty", "array", "bad-utf8", "missing-decision", "unknown-decision",
        "confidence-1.5", "bad-side", "negative-entry", "negative-tokens",
    ],
)  # fmt: skip
def test_invalid_answers(content: bytes) -> None:
    script = Script(httpx.Response(200, content=content))
    client, fake = make_client(script)

    with pytest.raises(LlmProxyInvalidAnswer) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 1
    assert fake.sleeps == []
    assert isinstance(caught.value, PermanentError)
    assert_no_secret(caught.value)


def test_management_answer_without_action_is_invalid() -> None:
    body = {k: v for k, v in MANAGEMENT_ANSWER.items() if k != "action"}
    client, _ = make_client(Script(ok(body)))

    with pytest.raises(LlmProxyInvalidAnswer):
        client.manage_position(management_request(), idempotency_key="k")


# -- construction -------------------------------------------------------------------------


def test_from_settings_uses_the_secret_and_never_shows_it() -> None:
    settings_ = Settings(
        llm_proxy_url="http://proxy.test/",
        llm_proxy_api_key=API_KEY,
        llm_proxy_timeout_s=3.0,
        llm_proxy_max_attempts=2,
    )
    script = Script(status(500), status(500))
    client = HttpLlmProxy.from_settings(settings_, transport=httpx.MockTransport(script))
    client._sleep = lambda _s: None  # no real waiting in a unit test

    with pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(), idempotency_key="k")

    assert len(script.requests) == 2
    assert str(script.requests[0].url) == "http://proxy.test/analyze-signal"
    assert script.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in repr(client)
    assert_no_secret(caught.value)
    client.close()


def test_client_is_reused_across_calls() -> None:
    script = Script(ok(SETUP_ANSWER), ok(SETUP_ANSWER))
    client, _ = make_client(script)
    inner = client._client

    client.analyze_signal(setup_request(), idempotency_key="a")
    client.analyze_signal(setup_request(), idempotency_key="b")

    assert client._client is inner
    assert len(script.requests) == 2


# -- property: nothing but our error types escape -----------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
contract_keys = st.sampled_from(
    ["decision", "confidence", "trade_plan", "usage", "reasoning", "model", "trace_id"]
)
near_contract = st.dictionaries(contract_keys | st.text(max_size=8), json_values, max_size=7)
# A valid answer with one field replaced by anything: the bodies most likely to slip through.
one_field_off = st.builds(lambda key, value: {**SETUP_ANSWER, key: value}, contract_keys, json_values)


def _is_valid_setup(body: Any) -> bool:
    try:
        SetupAnswer.model_validate_json(json.dumps(body))
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | near_contract | one_field_off)
def test_any_non_contract_body_is_an_invalid_answer(body: Any) -> None:
    valid = _is_valid_setup(body)
    script = Script(httpx.Response(200, content=json.dumps(body).encode()))
    client, _ = make_client(script)
    try:
        result = client.analyze_signal(setup_request(), idempotency_key="k")
    except LlmProxyInvalidAnswer as e:
        assert not valid
        assert_no_secret(e)
    except LlmProxyError as e:  # pragma: no cover - would be a bug
        pytest.fail(f"unexpected {type(e).__name__}: {e}")
    else:
        assert valid
        assert isinstance(result.answer, SetupAnswer)
    finally:
        client.close()


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=64))
def test_any_bytes_are_an_answer_or_an_invalid_answer(content: bytes) -> None:
    client, _ = make_client(Script(httpx.Response(200, content=content)))
    try:
        client.manage_position(management_request(), idempotency_key="k")
    except LlmProxyInvalidAnswer:
        pass
    finally:
        client.close()


def test_satisfies_the_port() -> None:
    client, _ = make_client(Script(ok(SETUP_ANSWER)))
    port: LlmProxy = client  # mypy checks the protocol; the call checks the wiring

    assert isinstance(port.analyze_signal(setup_request(), idempotency_key="k"), LlmResult)
    client.close()
