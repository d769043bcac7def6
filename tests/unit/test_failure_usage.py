"""A failed call's usage travels to the ledger; claim refusals and answer errors are counted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core.contracts import AnalysisJob, JobKind, WorkflowType
from functions.core.errors import CallUsage, DatabaseError, LlmProxyInvalidAnswer, LlmProxyUnavailable
from functions.core.models import ClaimResult, Decision
from functions.core.telemetry import MetricName
from functions.core.vocabulary import JobStatus
from functions.services.analyse_setup import process_setup_job
from functions.services.jobs import JobOutcome, WorkerConfig
from functions.services.manage_position import process_position_job
from tests.unit.fakes import FakeLlm, FakeMetrics, FakeRepository
from tests.unit.test_llm_proxy_client import Script, make_client, ok, setup_request
from tests.unit.test_services_with_fakes import (
    SIGNAL,
    WF,
    job,
    position_ctx,
    setup_ctx,
    setup_result,
)

USAGE = {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}


def test_an_invalid_answer_carries_the_usage_it_reported() -> None:
    client, _ = make_client(Script(ok({"decision": "maybe", "usage": USAGE, "model": "m", "trace_id": "t"})))
    with pytest.raises(LlmProxyInvalidAnswer) as exc:
        client.analyze_signal(setup_request(), idempotency_key="k")
    assert exc.value.usage is not None
    assert (exc.value.usage.total_tokens, exc.value.usage.model, exc.value.usage.trace_id) == (1000, "m", "t")
    assert exc.value.usage.latency_ms is not None


@given(
    st.one_of(
        st.just(b"not json"),
        st.just(b'{"decision": "maybe"}'),
        st.just(b'{"decision": "maybe", "usage": {"total_tokens": -5}}'),
        st.just(b'{"decision": "maybe", "usage": "lots"}'),
        st.just(b"[1, 2]"),
        st.binary(max_size=64),
    )
)
def test_an_invalid_answer_without_valid_usage_carries_none(body: bytes) -> None:
    client, _ = make_client(Script(httpx.Response(200, content=body)))
    with pytest.raises(LlmProxyInvalidAnswer) as exc:
        client.analyze_signal(setup_request(), idempotency_key="k")
    assert exc.value.usage is None


def _failure(repo: FakeRepository) -> Any:
    [failure] = repo.called("record_workflow_failure")
    return failure.kwargs["usage"]


def test_an_answer_judged_invalid_is_recorded_with_its_usage_and_counts_as_an_answer_error() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    metrics = FakeMetrics()
    llm = FakeLlm(result=setup_result(Decision.ENTER_TRADE, plan=None))
    outcome = process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())
    assert outcome == JobOutcome(JobStatus.FAILED, "llm_invalid_answer", WF)
    assert _failure(repo) == CallUsage(total_tokens=1100, latency_ms=420)
    assert metrics.counts[MetricName.ANSWER_ERRORS] == 1
    assert MetricName.ANSWERS_RECORDED not in metrics.counts


def test_an_answer_the_database_refused_is_recorded_with_its_usage() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx(), record_error=DatabaseError("refused"))
    metrics = FakeMetrics()
    llm = FakeLlm(result=setup_result(Decision.WAIT))
    outcome = process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())
    assert outcome == JobOutcome(JobStatus.FAILED, "record_rejected", WF)
    assert _failure(repo) == CallUsage(total_tokens=1100, latency_ms=420)
    assert metrics.counts[MetricName.ANSWER_ERRORS] == 1


def test_an_outage_has_no_usage_and_is_not_the_versions_fault() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    metrics = FakeMetrics()
    llm = FakeLlm(error=LlmProxyUnavailable("down"))
    process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())
    assert _failure(repo) is None
    assert metrics.counts[MetricName.ANALYSIS_ERRORS] == 1
    assert MetricName.ANSWER_ERRORS not in metrics.counts


def test_an_initial_analysis_failure_carries_the_usage_of_its_invalid_answer() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    metrics = FakeMetrics()
    error = LlmProxyInvalidAnswer("bad", usage=CallUsage(total_tokens=700))
    initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)
    process_setup_job(initial, repo=repo, llm=FakeLlm(error=error), metrics=metrics, config=WorkerConfig())
    [failure] = repo.called("record_initial_failure")
    assert failure.kwargs["usage"] == CallUsage(total_tokens=700)
    assert metrics.counts[MetricName.ANSWER_ERRORS] == 1


def test_a_successful_answer_counts_for_the_canary() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    metrics = FakeMetrics()
    process_setup_job(
        job(),
        repo=repo,
        llm=FakeLlm(result=setup_result(Decision.WAIT)),
        metrics=metrics,
        config=WorkerConfig(),
    )
    assert metrics.counts[MetricName.ANSWERS_RECORDED] == 1


@pytest.mark.parametrize(
    ("reason", "metric"),
    [("stale", MetricName.STALE_JOBS_SKIPPED), ("token_cap", MetricName.TOKEN_CAP_SKIPPED)],
)
@pytest.mark.parametrize("kind", [WorkflowType.SETUP_MONITORING, WorkflowType.POSITION_MANAGEMENT])
def test_claim_refusals_skip_without_the_llm_or_a_failure(
    reason: str, metric: MetricName, kind: WorkflowType
) -> None:
    repo = FakeRepository(
        setup_ctx=setup_ctx(), position_ctx=position_ctx(), claim=ClaimResult(claimed=False, reason=reason)
    )
    metrics = FakeMetrics()
    llm = FakeLlm(result=setup_result(Decision.WAIT))
    process = process_setup_job if kind is WorkflowType.SETUP_MONITORING else process_position_job
    outcome = process(
        job(kind), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig(stale_candle_intervals=3)
    )
    assert outcome == JobOutcome(JobStatus.SKIPPED, reason, WF)
    assert llm.calls == []
    assert [c.name for c in repo.calls] == ["claim_candle"]
    assert repo.calls[0].kwargs["stale_intervals"] == 3  # the setting reaches the claim
    assert metrics.counts[metric] == 1
    assert MetricName.ANALYSIS_ERRORS not in metrics.counts
