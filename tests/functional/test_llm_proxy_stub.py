"""The real HttpLlmProxy against the real StubLlmProxy over loopback TCP."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID, uuid4

import httpx
import pytest

from functions.adapters.llm_proxy import HttpLlmProxy
from functions.core.errors import LlmProxyInvalidAnswer, LlmProxyRejected, LlmProxyUnavailable
from functions.core.models import (
    AnalyzeSignalRequest,
    Decision,
    ManagementAnswer,
    ManagePositionRequest,
    SetupAnswer,
    TraceMetadata,
)
from functions.local.stub_llm import MODEL_NAME, StubLlmProxy, main

API_KEY = "stub-secret-key"
WORKFLOW_ID = UUID("44444444-4444-4444-8444-444444444444")


@pytest.fixture
def stub() -> Iterator[StubLlmProxy]:
    with StubLlmProxy(api_key=API_KEY) as server:
        yield server


def make_client(stub: StubLlmProxy, *, max_attempts: int = 1, timeout_s: float = 5.0) -> HttpLlmProxy:
    return HttpLlmProxy(
        stub.url,
        API_KEY,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )


@pytest.fixture
def client(stub: StubLlmProxy) -> Iterator[HttpLlmProxy]:
    with make_client(stub) as proxy:
        yield proxy


def setup_request(
    signal_id: UUID, open_: str = "100", close: str = "100.1", candle_time: str = "t1"
) -> AnalyzeSignalRequest:
    return AnalyzeSignalRequest(
        signal={"id": str(signal_id), "symbol": "BTCUSDT", "interval": "1m"},
        trader={"id": "trader-1"},
        candle={"open": open_, "high": "200", "low": "1", "close": close},
        analysis_type="monitoring",
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID,
            workflow_type="setup_monitoring",
            signal_id=signal_id,
            candle_time=candle_time,
            analysis_type="monitoring",
        ),
    )


def management_request(position_id: UUID) -> ManagePositionRequest:
    return ManagePositionRequest(
        position={"id": str(position_id), "side": "long", "entry_price": "50000"},
        candle={"open": "50000", "close": "50100"},
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID, position_id=position_id, analysis_type="position_management"
        ),
    )


def decision(result: object) -> Decision:
    answer = result.answer  # type: ignore[attr-defined]
    assert isinstance(answer, SetupAnswer)
    return answer.decision


# -- scripting ----------------------------------------------------------------------------


def test_queue_is_consumed_in_order_per_entity_then_heuristic(
    stub: StubLlmProxy, client: HttpLlmProxy
) -> None:
    first, second = uuid4(), uuid4()
    stub.queue_setup(first, "wait", "wait", "enter_trade")
    stub.queue_setup(second, {"decision": "bad_setup", "reasoning": "scripted"})
    flat = {"open_": "100", "close": "100.1"}  # +0.1 %: the heuristic says wait

    got_first = [
        decision(client.analyze_signal(setup_request(first, **flat), idempotency_key=f"a{i}"))
        for i in range(2)
    ]
    got_second = decision(client.analyze_signal(setup_request(second, **flat), idempotency_key="b"))
    got_first += [
        decision(client.analyze_signal(setup_request(first, **flat), idempotency_key=f"a{i}"))
        for i in range(2, 4)
    ]
    got_second_after = decision(client.analyze_signal(setup_request(second, **flat), idempotency_key="b2"))

    assert got_first == [Decision.WAIT, Decision.WAIT, Decision.ENTER_TRADE, Decision.WAIT]
    assert got_second == Decision.BAD_SETUP
    assert got_second_after == Decision.WAIT
    assert len(stub.calls_for(first)) == 4
    assert len(stub.calls_for(second)) == 2


def test_scripted_enter_trade_gets_a_plan_from_the_candle(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal = uuid4()
    stub.queue_setup(signal, "enter_trade")

    result = client.analyze_signal(setup_request(signal, close="64200"), idempotency_key="k")

    assert isinstance(result.answer, SetupAnswer)
    plan = result.answer.trade_plan
    assert plan is not None
    assert plan.entry == Decimal("64200")
    assert plan.stop_loss == Decimal("63558")
    assert plan.take_profit == Decimal("65484")
    assert result.answer.model == MODEL_NAME
    assert result.answer.usage.total_tokens == 1100


@pytest.mark.parametrize(
    ("open_", "close", "expected"),
    [
        ("100", "100.3", Decision.ENTER_TRADE),  # +0.3 %
        ("100", "100.2", Decision.WAIT),  # +0.2 % is not above the threshold
        ("100", "99.6", Decision.WAIT),  # -0.4 %
        ("100", "99.4", Decision.BAD_SETUP),  # -0.6 %
    ],
)
def test_default_heuristic(client: HttpLlmProxy, open_: str, close: str, expected: Decision) -> None:
    result = client.analyze_signal(setup_request(uuid4(), open_=open_, close=close), idempotency_key="k")

    assert isinstance(result.answer, SetupAnswer)
    assert result.answer.decision is expected
    if expected is Decision.ENTER_TRADE:
        plan = result.answer.trade_plan
        assert plan is not None
        assert (plan.side, plan.entry) == ("long", Decimal(close))
        assert plan.stop_loss == Decimal(close) * Decimal("0.99")
        assert plan.take_profit == Decimal(close) * Decimal("1.02")
    else:
        assert result.answer.trade_plan is None


def test_management_queue_then_hold(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    position = uuid4()
    stub.queue_management(position, {"action": "adjust_sl", "params": {"stop_loss": "49500"}}, "close")

    answers = []
    for i in range(3):
        result = client.manage_position(management_request(position), idempotency_key=f"p{i}")
        assert isinstance(result.answer, ManagementAnswer)
        answers.append((result.answer.action, result.answer.params))

    assert answers == [("adjust_sl", {"stop_loss": "49500"}), ("close", {}), ("hold", {})]
    assert [c.path for c in stub.calls_for(position)] == ["/manage-position"] * 3


def test_token_counts_are_configurable(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    stub.configure(prompt_tokens=10, completion_tokens=3)

    result = client.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    assert result.answer.usage.prompt_tokens == 10
    assert result.answer.usage.total_tokens == 13


def test_token_jitter_draws_seeded_counts_and_the_stub_sums_what_it_served(stub: StubLlmProxy) -> None:
    def draws(seed: int) -> list[tuple[int, int]]:
        stub.reset()
        stub.configure(token_jitter=0.25, seed=seed)
        with make_client(stub) as client:
            usages = [
                client.analyze_signal(setup_request(uuid4()), idempotency_key=f"k{i}").answer.usage
                for i in range(30)
            ]
        served = stub.served_usage()
        assert served == {
            "answers": 30,
            "prompt_tokens": sum(u.prompt_tokens for u in usages),
            "completion_tokens": sum(u.completion_tokens for u in usages),
            "total_tokens": sum(u.total_tokens for u in usages),
        }
        assert all(u.total_tokens == u.prompt_tokens + u.completion_tokens for u in usages)
        return [(u.prompt_tokens, u.completion_tokens) for u in usages]

    first = draws(7)
    assert len(set(first)) > 20  # a distribution, not a constant
    assert draws(7) == first  # seeded: the same run twice
    assert draws(8) != first
    assert 800 < sum(p for p, _ in first) / 30 < 1100  # around the configured 950
    with pytest.raises(ValueError, match="token_jitter"):
        stub.configure(token_jitter=-1)


def test_usage_endpoint_reports_the_tokens_served(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    stub.configure(prompt_tokens=10, completion_tokens=3)
    client.analyze_signal(setup_request(uuid4()), idempotency_key="a")
    stub.fail("*", 1, 500)
    with pytest.raises(LlmProxyUnavailable):
        client.analyze_signal(setup_request(uuid4()), idempotency_key="b")
    body = httpx.get(f"{stub.url}/_stub/usage").json()
    assert body == {"answers": 1, "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


# -- failures -----------------------------------------------------------------------------


def test_scripted_500s_then_success(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal, other = uuid4(), uuid4()
    stub.fail(signal, 5, 500)

    for _ in range(5):
        with pytest.raises(LlmProxyUnavailable):
            client.analyze_signal(setup_request(signal), idempotency_key="same")
    other_result = client.analyze_signal(setup_request(other), idempotency_key="other")
    result = client.analyze_signal(setup_request(signal), idempotency_key="same")

    assert result.attempts == 1
    assert other_result.attempts == 1
    assert [c.status for c in stub.calls_for(signal)] == [500] * 5 + [200]


def test_client_retries_against_the_stub_with_one_key(stub: StubLlmProxy) -> None:
    signal = uuid4()
    stub.fail(signal, 2, 503)

    with make_client(stub, max_attempts=3) as retrying:
        result = retrying.analyze_signal(setup_request(signal), idempotency_key="wf:t1")

    calls = stub.calls_for(signal)
    assert result.attempts == 3
    assert [c.status for c in calls] == [503, 503, 200]
    assert {c.idempotency_key for c in calls} == {"wf:t1"}


def test_wrong_key_is_rejected(stub: StubLlmProxy) -> None:
    with (
        HttpLlmProxy(stub.url, "wrong-key", max_attempts=3) as wrong,
        pytest.raises(LlmProxyRejected) as caught,
    ):
        wrong.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    assert "401" in str(caught.value)
    assert "wrong-key" not in str(caught.value)
    assert [c.status for c in stub.calls] == [401]  # rejected once, not retried


def test_timeout_mode_is_unavailable_then_recovers(stub: StubLlmProxy) -> None:
    signal = uuid4()
    stub.fail(signal, 1, "timeout")

    with make_client(stub, timeout_s=0.3) as impatient:
        with pytest.raises(LlmProxyUnavailable) as caught:
            impatient.analyze_signal(setup_request(signal), idempotency_key="k")
        result = impatient.analyze_signal(setup_request(signal), idempotency_key="k")

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert result.attempts == 1
    assert [c.status for c in stub.calls_for(signal)] == [None, 200]


def test_invalid_mode_is_an_invalid_answer(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    position = uuid4()
    stub.fail(position, 1, "invalid")

    with pytest.raises(LlmProxyInvalidAnswer):
        client.manage_position(management_request(position), idempotency_key="k")


def test_failure_rate_makes_random_500s(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    stub.configure(failure_rate=1.0, seed=7)
    with pytest.raises(LlmProxyUnavailable):
        client.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    stub.configure(failure_rate=0.0)
    client.analyze_signal(setup_request(uuid4()), idempotency_key="k2")

    assert [c.status for c in stub.calls] == [500, 200]


def test_a_stopped_stub_answers_nothing(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    client.analyze_signal(setup_request(uuid4()), idempotency_key="warm")  # keep-alive open
    stub.stop()

    with pytest.raises(LlmProxyUnavailable):
        client.analyze_signal(setup_request(uuid4()), idempotency_key="cold")


# -- idempotency and the call record ------------------------------------------------------


def test_repeated_idempotency_key_returns_the_first_answer(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal = uuid4()
    stub.queue_setup(signal, "enter_trade", "bad_setup")

    first = client.analyze_signal(setup_request(signal), idempotency_key="wf:t1")
    again = client.analyze_signal(setup_request(signal), idempotency_key="wf:t1")
    following = client.analyze_signal(setup_request(signal), idempotency_key="wf:t2")

    assert decision(first) == decision(again) == Decision.ENTER_TRADE
    assert first.answer.trace_id == again.answer.trace_id
    assert decision(following) == Decision.BAD_SETUP  # the queue was not consumed twice


def test_calls_record_key_headers_and_metadata(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal = uuid4()
    request = setup_request(signal, candle_time="2024-01-01T00:01:00.000Z")

    client.analyze_signal(request, idempotency_key=f"{WORKFLOW_ID}:2024-01-01T00:01:00.000Z")

    (call,) = stub.calls
    assert call.path == "/analyze-signal"
    assert call.status == 200
    assert call.entity_id == str(signal)
    assert call.idempotency_key == f"{WORKFLOW_ID}:2024-01-01T00:01:00.000Z"
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["x-cmon-workflow-id"] == str(WORKFLOW_ID)
    assert call.headers["x-cmon-analysis-type"] == "monitoring"
    assert call.body["metadata"]["signal_id"] == str(signal)
    assert call.body["metadata"]["candle_time"] == "2024-01-01T00:01:00.000Z"
    assert call.body == request.model_dump(mode="json")
    assert call.answer is not None
    assert call.answer["decision"] == "wait"


def test_reset_clears_everything(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal = uuid4()
    stub.queue_setup(signal, "bad_setup")
    stub.fail(signal, 3)
    client.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    stub.reset()
    result = client.analyze_signal(setup_request(signal), idempotency_key="k")

    assert decision(result) == Decision.WAIT
    assert len(stub.calls) == 1


def test_concurrent_callers_each_get_their_own_queue_in_order(stub: StubLlmProxy) -> None:
    script = ["wait", "wait", "bad_setup", "enter_trade", "wait"]
    signals = [uuid4() for _ in range(6)]
    for signal in signals:
        stub.queue_setup(signal, *script)
    results: dict[UUID, list[str]] = {}
    errors: list[BaseException] = []

    def run(signal: UUID, proxy: HttpLlmProxy) -> None:
        try:
            results[signal] = [
                decision(proxy.analyze_signal(setup_request(signal), idempotency_key=f"{signal}:{i}"))
                for i in range(len(script))
            ]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    with make_client(stub) as shared:
        threads = [threading.Thread(target=run, args=(s, shared)) for s in signals]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert errors == []
    assert results == dict.fromkeys(signals, script)
    assert len(stub.calls) == len(signals) * len(script)


# -- HTTP controls ------------------------------------------------------------------------


def test_http_control_endpoints(stub: StubLlmProxy, client: HttpLlmProxy) -> None:
    signal, position = uuid4(), uuid4()
    with httpx.Client(base_url=stub.url, timeout=5) as http:
        assert http.get("/health").json()["status"] == "ok"
        queued = http.post(
            "/_stub/queue",
            json={"kind": "setup", "entity_id": str(signal), "answers": ["bad_setup"]},
        )
        assert queued.status_code == 200
        assert queued.json() == {"queued": 1}
        http.post(
            "/_stub/queue",
            json={
                "kind": "management",
                "entity_id": str(position),
                "answers": [{"action": "adjust_tp", "params": {"take_profit": "52000"}}],
            },
        ).raise_for_status()
        http.post(
            "/_stub/fail", json={"entity_id": str(signal), "times": 1, "status": 502}
        ).raise_for_status()
        http.post("/_stub/config", json={"prompt_tokens": 1, "completion_tokens": 2})

        with pytest.raises(LlmProxyUnavailable):
            client.analyze_signal(setup_request(signal), idempotency_key="k1")
        setup = client.analyze_signal(setup_request(signal), idempotency_key="k2")
        managed = client.manage_position(management_request(position), idempotency_key="k3")

        calls = http.get("/_stub/calls").json()
        assert [(c["path"], c["status"]) for c in calls] == [
            ("/analyze-signal", 502),
            ("/analyze-signal", 200),
            ("/manage-position", 200),
        ]
        assert calls[1]["headers"]["idempotency-key"] == "k2"
        assert calls[2]["body"]["metadata"]["position_id"] == str(position)

        assert http.post("/_stub/queue", json={"kind": "nope"}).status_code == 400
        assert http.post("/_stub/config", json={"bogus": 1}).status_code == 400
        assert http.post("/_stub/fail", content=b"[").status_code == 400
        assert http.get("/nowhere").status_code == 404

        http.post("/_stub/reset").raise_for_status()
        assert http.get("/_stub/calls").json() == []

    assert decision(setup) == Decision.BAD_SETUP
    assert isinstance(managed.answer, ManagementAnswer)
    assert managed.answer.action == "adjust_tp"
    assert managed.answer.params == {"take_profit": "52000"}
    assert managed.answer.usage.total_tokens == 3


def test_bad_bodies_get_a_400(stub: StubLlmProxy) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=stub.url, timeout=5, headers=headers) as http:
        assert http.post("/analyze-signal", content=b"{not json").status_code == 400
        assert http.post("/analyze-signal", json=[1, 2]).status_code == 400


# -- standalone ---------------------------------------------------------------------------


def test_main_runs_standalone() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "functions.local.stub_llm", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("stub llm-proxy listening on http://127.0.0.1:")
            url = line.rsplit(" ", 1)[1].strip()
            assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_main_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["--port", "not-a-number"])
