"""One llm-proxy contract, two transports: the plain HTTP adapter and the Supabase Edge
Function adapter pass the same tests against the real stub over loopback TCP.

The stub serves both layouts (`/<operation>` and `/functions/v1/<function>/<operation>`) and,
given a key, checks what each front door checks: `Authorization` for the HTTP service,
`Authorization` *and* `apikey` for the Edge Function (Supabase's gateway).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from functions.adapters.edge_llm import EdgeLlmProxy
from functions.adapters.llm_calls import LlmProxyBase
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.cli import main as cli_main
from functions.core.errors import (
    LlmProxyInvalidAnswer,
    LlmProxyRejected,
    LlmProxyUnavailable,
    PermanentError,
    TransientError,
)
from functions.core.models import (
    AnalyzeSignalRequest,
    Decision,
    ManagementAnswer,
    ManagePositionRequest,
    SetupAnswer,
    TraceMetadata,
)
from functions.handlers import wiring
from functions.local import serve
from functions.local.stub_llm import ANALYZE_PATH, MANAGE_PATH, StubLlmProxy
from functions.settings import Settings

KEY = "sk-contract-very-secret-4242"
WORKFLOW_ID = UUID("55555555-5555-4555-8555-555555555555")
TRANSPORTS = ("http", "edge")

Make = Callable[..., LlmProxyBase]


@pytest.fixture
def stub() -> Iterator[StubLlmProxy]:
    with StubLlmProxy(api_key=KEY) as server:
        yield server


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(stub: StubLlmProxy, transport: str) -> Iterator[Make]:
    """Builds the adapter under test against the stub; closes what it built."""
    built: list[LlmProxyBase] = []

    def factory(
        *, key: str = KEY, max_attempts: int = 1, timeout_s: float = 5.0, function_name: str = "llm-proxy"
    ) -> LlmProxyBase:
        options: dict[str, Any] = {
            "timeout_s": timeout_s, "max_attempts": max_attempts,
            "backoff_base_s": 0.01, "backoff_cap_s": 0.02,
        }  # fmt: skip
        client: LlmProxyBase
        if transport == "edge":
            client = EdgeLlmProxy(stub.url, key, function_name=function_name, **options)
        else:
            client = HttpLlmProxy(stub.url, key, **options)
        built.append(client)
        return client

    yield factory
    for client in built:
        client.close()


def setup_request(
    signal_id: UUID, close: str = "100.1", candle_time: str = "2026-12-01T10:00:59.999Z"
) -> AnalyzeSignalRequest:
    return AnalyzeSignalRequest(
        signal={"id": str(signal_id), "symbol": "BTCUSDT", "interval": "1m"},
        trader={"id": "trader-1"},
        candle={"open": "100", "high": "200", "low": "1", "close": close},
        analysis_type="monitoring",
        metadata=TraceMetadata(
            workflow_id=WORKFLOW_ID,
            workflow_type="setup_monitoring",
            signal_id=signal_id,
            candle_time=candle_time,
            analysis_type="monitoring",
            stage="test",
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


# -- answers, body and headers --------------------------------------------------------------


def test_setup_answer_round_trip_with_the_http_body(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    stub.queue_setup(signal, "enter_trade")
    request = setup_request(signal, close="64200")

    result = make().analyze_signal(request, idempotency_key=f"{WORKFLOW_ID}:t1")

    assert isinstance(result.answer, SetupAnswer)
    assert result.answer.decision is Decision.ENTER_TRADE
    plan = result.answer.trade_plan
    assert plan is not None and plan.entry == Decimal("64200")
    assert result.answer.usage.total_tokens == 1100
    assert result.attempts == 1
    [call] = stub.calls
    assert call.path == ANALYZE_PATH
    assert call.status == 200
    assert call.body == request.model_dump(mode="json")


def test_management_answer_round_trip(stub: StubLlmProxy, make: Make) -> None:
    position = uuid4()
    stub.queue_management(position, {"action": "adjust_sl", "params": {"stop_loss": "49500"}})

    result = make().manage_position(management_request(position), idempotency_key="k")

    assert isinstance(result.answer, ManagementAnswer)
    assert result.answer.action == "adjust_sl"
    assert Decimal(str(result.answer.params["stop_loss"])) == Decimal("49500")
    assert [c.path for c in stub.calls] == [MANAGE_PATH]


def test_idempotency_key_and_trace_headers(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    key = f"{WORKFLOW_ID}:2026-12-01T10:00:59.999Z"

    make().analyze_signal(setup_request(signal), idempotency_key=key)

    [call] = stub.calls
    assert call.idempotency_key == key
    assert call.headers["x-cmon-workflow-id"] == str(WORKFLOW_ID)
    assert call.headers["x-cmon-workflow-type"] == "setup_monitoring"
    assert call.headers["x-cmon-signal-id"] == str(signal)
    assert call.headers["x-cmon-candle-time"] == "2026-12-01T10:00:59.999Z"
    assert call.headers["x-cmon-analysis-type"] == "monitoring"
    assert call.headers["x-cmon-stage"] == "test"
    assert call.body["metadata"]["signal_id"] == str(signal)


def test_a_repeated_key_is_answered_from_the_proxy_cache(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    stub.queue_setup(signal, "bad_setup", "enter_trade")
    client = make()

    first = client.analyze_signal(setup_request(signal), idempotency_key="same")
    second = client.analyze_signal(setup_request(signal), idempotency_key="same")

    assert isinstance(first.answer, SetupAnswer) and isinstance(second.answer, SetupAnswer)
    assert first.answer.decision is second.answer.decision is Decision.BAD_SETUP
    assert first.answer.trace_id == second.answer.trace_id


# -- authentication ------------------------------------------------------------------------


def test_a_wrong_key_is_rejected_and_never_shown(stub: StubLlmProxy, make: Make) -> None:
    wrong = "sk-wrong-key-0000"

    with pytest.raises(LlmProxyRejected) as caught:
        make(key=wrong, max_attempts=3).analyze_signal(setup_request(uuid4()), idempotency_key="k")

    assert isinstance(caught.value, PermanentError)
    assert "401" in str(caught.value)
    assert wrong not in str(caught.value)
    assert [c.status for c in stub.calls] == [401]  # a 4xx is never retried


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": f"Bearer {KEY}", "apikey": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 401),
        ({"Authorization": f"Bearer {KEY}", "apikey": "other"}, 401),
        ({"apikey": KEY}, 401),
        ({"Authorization": "Bearer other", "apikey": KEY}, 401),
    ],
)
def test_the_stub_edge_layout_checks_authorization_and_apikey(
    stub: StubLlmProxy, headers: dict[str, str], status: int
) -> None:
    body = setup_request(uuid4()).model_dump(mode="json")

    response = httpx.post(f"{stub.url}/functions/v1/llm-proxy/analyze-signal", json=body, headers=headers)

    assert response.status_code == status


def test_the_stub_edge_layout_knows_only_its_function(stub: StubLlmProxy) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "apikey": KEY}
    for path in ("/functions/v1/other/analyze-signal", "/functions/v1/llm-proxy/nothing"):
        response = httpx.post(f"{stub.url}{path}", json={}, headers=headers)
        assert response.status_code == 404
    assert stub.calls == []


# -- the status mapping and the one retry policy ---------------------------------------------


def test_a_5xx_is_retried_with_the_same_key(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    stub.fail(signal, times=1, status=500)

    result = make(max_attempts=3).analyze_signal(setup_request(signal), idempotency_key="retry-key")

    assert result.attempts == 2
    calls = stub.calls_for(signal)
    assert [c.status for c in calls] == [500, 200]
    assert {c.idempotency_key for c in calls} == {"retry-key"}


@pytest.mark.parametrize("status", [429, 502, 503])
def test_throttling_and_outages_end_transient_after_the_attempts(
    stub: StubLlmProxy, make: Make, status: int
) -> None:
    signal = uuid4()
    stub.fail(signal, times=3, status=status)

    with pytest.raises(LlmProxyUnavailable) as caught:
        make(max_attempts=3).analyze_signal(setup_request(signal), idempotency_key="k")

    assert isinstance(caught.value, TransientError)
    assert f"HTTP {status} after 3 attempt(s)" in str(caught.value)
    assert [c.status for c in stub.calls_for(signal)] == [status] * 3


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_are_rejected_without_retry(stub: StubLlmProxy, make: Make, status: int) -> None:
    signal = uuid4()
    stub.fail(signal, times=3, status=status)

    with pytest.raises(LlmProxyRejected) as caught:
        make(max_attempts=3).analyze_signal(setup_request(signal), idempotency_key="k")

    assert f"HTTP {status}" in str(caught.value)
    assert "scripted failure" in str(caught.value)  # the body's error, for debugging
    assert len(stub.calls_for(signal)) == 1


def test_an_answer_that_breaks_the_contract_is_invalid(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    stub.fail(signal, times=1, status="invalid")

    with pytest.raises(LlmProxyInvalidAnswer, match="decision"):
        make(max_attempts=3).analyze_signal(setup_request(signal), idempotency_key="k")

    assert len(stub.calls_for(signal)) == 1


def test_a_timeout_is_transient(stub: StubLlmProxy, make: Make) -> None:
    signal = uuid4()
    stub.configure(timeout_sleep_s=5.0)
    stub.fail(signal, times=2, status="timeout")

    with pytest.raises(LlmProxyUnavailable) as caught:
        make(max_attempts=2, timeout_s=0.3).analyze_signal(setup_request(signal), idempotency_key="k")

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert len(stub.calls_for(signal)) == 2


# -- the Lambda deadline --------------------------------------------------------------------


def test_the_attempt_timeout_is_cut_to_the_deadline(stub: StubLlmProxy, make: Make) -> None:
    """The stub holds the request 2.5 s, then hangs up. A client whose 20 s timeout is cut
    to the 0.5 s left times out (ReadTimeout); an uncut one would see the hang-up."""
    signal = uuid4()
    stub.configure(timeout_sleep_s=2.5)
    stub.fail(signal, times=3, status="timeout")

    with pytest.raises(LlmProxyUnavailable) as caught:
        make(max_attempts=3, timeout_s=20.0).analyze_signal(
            setup_request(signal), idempotency_key="k", deadline=time.monotonic() + 0.5
        )

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert "no time left before the deadline" in str(caught.value)
    assert len(stub.calls_for(signal)) == 1


def test_nothing_is_sent_once_the_deadline_has_passed(stub: StubLlmProxy, make: Make) -> None:
    with pytest.raises(LlmProxyUnavailable, match="deadline reached before attempt 1"):
        make().analyze_signal(setup_request(uuid4()), idempotency_key="k", deadline=time.monotonic() - 1)

    assert stub.calls == []


# -- secrets ----------------------------------------------------------------------------------


def test_the_key_is_in_no_repr_message_or_log(
    stub: StubLlmProxy, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    signal = uuid4()
    stub.fail(signal, times=2, status=503)
    client = make(max_attempts=2)

    with caplog.at_level(logging.DEBUG), pytest.raises(LlmProxyUnavailable) as caught:
        client.analyze_signal(setup_request(signal), idempotency_key="k")

    assert "retrying" in caplog.text  # the retry was logged...
    assert KEY not in caplog.text  # ...without the key
    assert KEY not in str(caught.value)
    assert KEY not in repr(client)


# -- Edge Function only: the relay, the function name ----------------------------------------


@pytest.fixture
def edge(stub: StubLlmProxy) -> Iterator[EdgeLlmProxy]:
    with EdgeLlmProxy(stub.url, KEY, max_attempts=2, backoff_base_s=0.01, backoff_cap_s=0.02) as client:
        yield client


def test_a_relay_error_is_retried_and_the_function_runs_once(stub: StubLlmProxy, edge: EdgeLlmProxy) -> None:
    stub.fail_relay(1)

    result = edge.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    assert result.attempts == 2
    assert [c.status for c in stub.calls] == [200]


def test_relay_errors_end_transient(stub: StubLlmProxy, edge: EdgeLlmProxy) -> None:
    stub.fail_relay(2)

    with pytest.raises(LlmProxyUnavailable, match="relay error HTTP 502 after 2 attempt"):
        edge.analyze_signal(setup_request(uuid4()), idempotency_key="k")

    assert stub.calls == []


def test_the_function_name_is_the_path(stub: StubLlmProxy) -> None:
    stub.function_name = "cmon-llm"
    with EdgeLlmProxy(stub.url, KEY, function_name="cmon-llm") as named:
        assert named.analyze_signal(setup_request(uuid4()), idempotency_key="k").attempts == 1
    with EdgeLlmProxy(stub.url, KEY) as default, pytest.raises(LlmProxyRejected, match="HTTP 404"):
        default.analyze_signal(setup_request(uuid4()), idempotency_key="k")


def test_the_edge_adapter_refuses_a_bad_configuration() -> None:
    with pytest.raises(ValueError, match="SUPABASE_KEY"):
        EdgeLlmProxy("http://127.0.0.1:1", "")
    with pytest.raises(ValueError, match="function name"):
        EdgeLlmProxy("http://127.0.0.1:1", KEY, function_name="llm-proxy/analyze-signal")


# -- the setting that selects the adapter -----------------------------------------------------


def test_the_transport_setting_selects_the_adapter(stub: StubLlmProxy) -> None:
    edge_settings = Settings(
        llm_proxy_transport="edge", supabase_url=stub.url, supabase_key=KEY, llm_proxy_max_attempts=1
    )
    default = wiring.build_llm(Settings(llm_proxy_url=stub.url, llm_proxy_api_key=KEY))
    chosen = wiring.build_llm(edge_settings)
    try:
        assert isinstance(default, HttpLlmProxy)
        assert isinstance(chosen, EdgeLlmProxy)
        chosen.analyze_signal(setup_request(uuid4()), idempotency_key="k")
        assert stub.calls[0].headers["apikey"] == KEY
        assert KEY not in repr(edge_settings)
    finally:
        default.close()
        chosen.close()
    with pytest.raises(ValueError, match="SUPABASE_URL"):
        wiring.build_llm(Settings(llm_proxy_transport="edge", supabase_key=KEY))


_LAZY_IMPORT = """
import json, sys
from functions.handlers import fanout, position_management, setup_analysis, wiring
from functions.settings import Settings
seen = {"after_import": "supabase_functions" in sys.modules}
wiring.build_llm(Settings()).close()
seen["after_http"] = "supabase_functions" in sys.modules
edge = Settings(llm_proxy_transport="edge", supabase_url="http://127.0.0.1:9", supabase_key="k")
wiring.build_llm(edge).close()
seen["after_edge"] = "supabase_functions" in sys.modules
print(json.dumps(seen))
"""


def test_the_supabase_client_is_imported_only_for_the_edge_transport() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _LAZY_IMPORT], capture_output=True, text=True, timeout=120, check=False
    )

    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"after_import": False, "after_http": False, "after_edge": True}


# -- `cmon local` / `cmon demo`: the flag or the env var ----------------------------------------


def _args(flag: str | None) -> argparse.Namespace:
    return argparse.Namespace(llm_transport=flag)


def test_local_transport_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLM_PROXY_TRANSPORT", "SUPABASE_URL", "SUPABASE_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert serve.llm_transport_options(_args(None)) == {"llm_transport": "http"}
    monkeypatch.setenv("LLM_PROXY_TRANSPORT", "edge")
    assert serve.llm_transport_options(_args(None)) == {"llm_transport": "edge"}  # the stub's layout
    assert serve.llm_transport_options(_args("http")) == {"llm_transport": "http"}
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.test")
    with pytest.raises(ValueError, match="SUPABASE_KEY"):
        serve.llm_transport_options(_args(None))
    monkeypatch.setenv("SUPABASE_KEY", KEY)
    assert serve.llm_transport_options(_args(None)) == {
        "llm_transport": "edge", "supabase_url": "https://project.supabase.test", "supabase_key": KEY,
    }  # fmt: skip


def test_cmon_local_refuses_an_unknown_transport_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_PROXY_TRANSPORT", "carrier-pigeon")

    assert cli_main(["local", "--market", "simulate"]) == 2
    assert "LLM_PROXY_TRANSPORT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli_main(["local", "--llm-transport", "carrier-pigeon"])
    assert exited.value.code == 2
