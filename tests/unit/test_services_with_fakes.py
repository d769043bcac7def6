"""Use cases driven through in-memory fakes of their ports (no network, no database)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core import intervals
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.core.errors import InvalidInput, LlmProxyInvalidAnswer, LlmProxyRejected, LlmProxyUnavailable
from functions.core.guardrails import GuardrailConfig, Verdict
from functions.core.models import (
    ClaimResult,
    Decision,
    DecisionOutcome,
    FailureOutcome,
    LlmResult,
    ManagementAnswer,
    PositionContext,
    PositionSnapshot,
    ReconcileOutcome,
    Registration,
    SetupAnswer,
    SetupContext,
    SetupOutcome,
    Side,
    TradePlan,
    Usage,
)
from functions.core.telemetry import MetricName
from functions.core.vocabulary import JobStatus, RejectionReason
from functions.services.analyse_setup import process_setup_job
from functions.services.fan_out import fan_out, is_stale
from functions.services.jobs import JobOutcome, WorkerConfig
from functions.services.manage_position import process_position_job
from functions.services.register import handle_webhook
from tests.unit.fakes import FakeLlm, FakeMetrics, FakeQueue, FakeRepository

WF = UUID("aaaaaaaa-0000-4000-8000-000000000001")
WF2 = UUID("aaaaaaaa-0000-4000-8000-000000000002")
SIGNAL = UUID("bbbbbbbb-0000-4000-8000-000000000001")
TRADER = UUID("cccccccc-0000-4000-8000-000000000001")
POSITION = UUID("dddddddd-0000-4000-8000-000000000001")


def candle(
    *,
    interval: str = "1m",
    opened: datetime = datetime(2025, 10, 25, 10, 29),
    low: str = "64190.00",
    high: str = "64250.00",
    close: str = "64231.50",
) -> CandleClosed:
    open_ms = intervals.to_ms(opened)
    return CandleClosed(
        symbol="BTCUSDT",
        interval=interval,
        open_time=intervals.from_ms(open_ms),
        close_time=intervals.from_ms(intervals.close_ms(open_ms, interval)),
        open=Decimal(low),
        high=Decimal(high),
        low=Decimal(low),
        close=Decimal(close),
        volume=Decimal("12.345"),
        trades=812,
    )


def job(wf_type: WorkflowType = WorkflowType.SETUP_MONITORING, c: CandleClosed | None = None) -> AnalysisJob:
    return AnalysisJob(workflow_id=WF, workflow_type=wf_type, candle=c or candle())


def setup_ctx() -> SetupContext:
    return SetupContext(
        workflow_id=WF,
        signal_id=SIGNAL,
        signal={"id": str(SIGNAL), "symbol": "BTCUSDT"},
        trader={"id": str(TRADER)},
        previous_analyses=[],
    )


def position_ctx(
    *, side: Side = Side.LONG, sl: str | None = "64000", tp: str | None = "65000"
) -> PositionContext:
    snapshot = PositionSnapshot(
        id=POSITION,
        side=side,
        entry_price=Decimal("64100"),
        contracts=Decimal("0.0015"),
        stop_loss=None if sl is None else Decimal(sl),
        take_profit=None if tp is None else Decimal(tp),
    )
    return PositionContext(
        workflow_id=WF,
        trader_id=TRADER,
        position=snapshot,
        position_row={"id": str(POSITION), "side": side.value},
        recent_decisions=[],
    )


def setup_result(decision: Decision, plan: TradePlan | None = None) -> LlmResult:
    answer = SetupAnswer(
        decision=decision, confidence=0.6, reasoning="r", trade_plan=plan, usage=Usage(total_tokens=1100)
    )
    return LlmResult(answer=answer, latency_ms=420)


def management_result(action: str, params: dict[str, Any]) -> LlmResult:
    answer = ManagementAnswer(action=action, params=params, confidence=0.7, usage=Usage(total_tokens=900))
    return LlmResult(answer=answer, latency_ms=310)


# --- fan-out ----------------------------------------------------------------------------


@pytest.mark.parametrize("interval", ["1m", "1h", "1w", "1M"])
def test_fan_out_skips_a_stale_candle_and_counts_it(interval: str) -> None:
    c = candle(interval=interval, opened=datetime(2025, 10, 1))
    repo = FakeRepository(workflows=[(WF, WorkflowType.SETUP_MONITORING)])
    queue, metrics = FakeQueue(), FakeMetrics()
    now = c.close_time + timedelta(milliseconds=3 * intervals.interval_ms(interval) + 1)

    result = fan_out(c, repo=repo, queue=queue, metrics=metrics, clock=lambda: now, stale_intervals=3)

    assert result.stale is True
    assert (result.workflows, result.jobs_sent) == (0, 0)
    assert queue.batches == []
    assert repo.calls == []
    assert metrics.counts[MetricName.STALE_CANDLES_SKIPPED] == 1
    assert metrics.counts[MetricName.CANDLES_RECEIVED] == 1


def test_fan_out_enqueues_one_job_per_workflow() -> None:
    c = candle()
    workflows = [(WF, WorkflowType.SETUP_MONITORING), (WF2, WorkflowType.POSITION_MANAGEMENT)]
    repo = FakeRepository(workflows=workflows)
    queue, metrics = FakeQueue(), FakeMetrics()
    now = c.close_time + timedelta(seconds=2)

    result = fan_out(c, repo=repo, queue=queue, metrics=metrics, clock=lambda: now, stale_intervals=3)

    assert result.stale is False
    assert (result.workflows, result.jobs_sent) == (2, 2)
    assert [(j.workflow_id, j.workflow_type) for j in queue.jobs] == workflows
    assert all(j.kind is JobKind.CANDLE and j.candle == c for j in queue.jobs)
    assert [j.dedup_key for j in queue.jobs] == [
        f"{WF}:2025-10-25T10:29:59.999Z",
        f"{WF2}:2025-10-25T10:29:59.999Z",
    ]
    assert metrics.counts[MetricName.JOBS_ENQUEUED] == 2
    assert MetricName.STALE_CANDLES_SKIPPED not in metrics.counts


def test_fan_out_with_no_workflow_sends_nothing() -> None:
    c = candle()
    queue, metrics = FakeQueue(), FakeMetrics()
    result = fan_out(
        c, repo=FakeRepository(), queue=queue, metrics=metrics, clock=lambda: c.close_time, stale_intervals=3
    )
    assert (result.workflows, result.jobs_sent, result.stale) == (0, 0, False)
    assert queue.batches == []


@settings(max_examples=100, deadline=None)
@given(
    interval=st.sampled_from(intervals.SUPPORTED),
    stale_intervals=st.integers(min_value=1, max_value=10),
    delay_ms=st.integers(min_value=-60_000, max_value=12 * 31 * 86_400_000),
)
def test_is_stale_means_older_than_n_intervals(interval: str, stale_intervals: int, delay_ms: int) -> None:
    c = candle(interval=interval, opened=datetime(2025, 1, 1))
    now = c.close_time + timedelta(milliseconds=delay_ms)
    assert is_stale(c, now, stale_intervals) == (delay_ms > stale_intervals * intervals.interval_ms(interval))


def test_is_stale_boundary() -> None:
    c = candle()
    limit = c.close_time + timedelta(minutes=3)
    assert not is_stale(c, limit, 3)
    assert is_stale(c, limit + timedelta(milliseconds=1), 3)


# --- setup analysis ---------------------------------------------------------------------


def test_setup_job_records_a_failure_when_the_llm_is_unavailable() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    llm = FakeLlm(error=LlmProxyUnavailable("timed out after 3 attempts"))
    metrics = FakeMetrics()
    c = candle()
    j = job(c=c)

    outcome = process_setup_job(
        j, repo=repo, llm=llm, metrics=metrics, config=WorkerConfig(max_consecutive_errors=5)
    )

    assert outcome == JobOutcome(JobStatus.FAILED, "llm_unavailable", WF)
    assert repo.called("record_setup_analysis") == []
    [failure] = repo.called("record_workflow_failure")
    assert failure.args == (WF, c.close_time, "llm_unavailable", "timed out after 3 attempts", 5)
    assert metrics.counts[MetricName.ANALYSIS_ERRORS] == 1
    assert MetricName.ANALYSES_COMPLETED not in metrics.counts
    assert len(llm.calls) == 1
    assert llm.calls[0].kwargs["idempotency_key"] == j.dedup_key


def test_setup_job_failure_that_disables_the_workflow_is_counted() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx(), failure=FailureOutcome(consecutive_errors=5, disabled=True))
    metrics = FakeMetrics()
    outcome = process_setup_job(
        job(), repo=repo, llm=FakeLlm(error=LlmProxyRejected("400")), metrics=metrics, config=WorkerConfig()
    )
    assert outcome == JobOutcome(JobStatus.FAILED, "llm_rejected", WF)
    assert metrics.counts[MetricName.WORKFLOWS_AUTO_DISABLED] == 1


def test_enter_trade_without_a_trade_plan_is_an_invalid_answer() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    llm = FakeLlm(result=setup_result(Decision.ENTER_TRADE, plan=None))
    metrics = FakeMetrics()

    outcome = process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())

    assert outcome == JobOutcome(JobStatus.FAILED, "llm_invalid_answer", WF)
    assert repo.called("record_setup_analysis") == []
    [failure] = repo.called("record_workflow_failure")
    assert failure.args[2] == "llm_invalid_answer"
    assert MetricName.ANALYSES_COMPLETED not in metrics.counts


def test_setup_job_skips_when_the_claim_is_refused_without_calling_the_llm() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx(), claim=ClaimResult(claimed=False, reason="duplicate"))
    llm = FakeLlm(result=setup_result(Decision.WAIT))
    metrics = FakeMetrics()

    outcome = process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())

    assert outcome == JobOutcome(JobStatus.SKIPPED, "duplicate", WF)
    assert llm.calls == []
    assert [c.name for c in repo.calls] == ["claim_candle"]
    assert metrics.counts[MetricName.DUPLICATE_CLAIMS_SKIPPED] == 1


def test_setup_job_records_the_analysis_once() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx(), setup_outcome=SetupOutcome(outcome="continued"))
    llm = FakeLlm(result=setup_result(Decision.WAIT))
    metrics = FakeMetrics()
    c = candle()
    j = job(c=c)

    outcome = process_setup_job(
        j, repo=repo, llm=llm, metrics=metrics, config=WorkerConfig(claim_lease_s=120)
    )

    assert outcome == JobOutcome(JobStatus.DONE, "continued", WF, 420, 1100)
    assert [c.name for c in repo.calls] == ["claim_candle", "setup_context", "record_setup_analysis"]
    assert repo.calls[0].args == (WF, c.close_time, 120)
    recorded = repo.called("record_setup_analysis")[0]
    assert recorded.args[0] == WF and recorded.args[1] == c
    assert recorded.args[2].decision is Decision.WAIT
    assert llm.calls[0].kwargs["idempotency_key"] == f"{WF}:2025-10-25T10:29:59.999Z"
    assert metrics.counts[MetricName.ANALYSES_COMPLETED] == 1
    assert metrics.counts[MetricName.TOKENS_USED] == 1100


def test_initial_analysis_failure_is_recorded_against_the_signal() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    llm = FakeLlm(error=LlmProxyUnavailable("down"))
    j = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)

    outcome = process_setup_job(j, repo=repo, llm=llm, metrics=FakeMetrics(), config=WorkerConfig())

    assert outcome == JobOutcome(JobStatus.FAILED, "llm_unavailable")
    # A transient failure releases the claim (True), so the reconciler queues it again.
    assert [c.args for c in repo.called("record_initial_failure")] == [
        (SIGNAL, "llm_unavailable", "down", True)
    ]
    assert repo.called("record_initial_analysis") == []
    assert llm.calls[0].kwargs["idempotency_key"] == f"initial:{SIGNAL}"


# --- position management ----------------------------------------------------------------


def test_paper_execution_closes_on_a_crossed_stop_without_asking_the_llm() -> None:
    repo = FakeRepository(
        position_ctx=position_ctx(sl="64200", tp="66000"),
        decision_outcome=DecisionOutcome(outcome="applied", workflow_stopped=True),
    )
    llm = FakeLlm(result=management_result("hold", {}))
    metrics = FakeMetrics()
    c = candle(low="64190.00")  # crosses the stop at 64200
    j = job(WorkflowType.POSITION_MANAGEMENT, c)

    outcome = process_position_job(
        j, repo=repo, llm=llm, metrics=metrics, config=WorkerConfig(paper_execution=True)
    )

    assert outcome == JobOutcome(JobStatus.DONE, "paper_stop_loss", WF)
    assert llm.calls == []
    [decision] = repo.called("record_management_decision")
    assert decision.args[0] == WF and decision.args[1] == c
    assert decision.args[3] == Verdict(action="close", apply=True)
    assert decision.kwargs["source"] == "paper"
    assert decision.kwargs["exit_price"] == Decimal("64200")
    assert decision.kwargs["answer"] is None
    assert decision.kwargs["params"] == {"reason": "stop_loss", "level": "64200"}
    assert metrics.counts[MetricName.PAPER_FILLS] == 1
    assert metrics.counts[MetricName.WORKFLOWS_STOPPED] == 1


def test_paper_execution_asks_the_llm_when_nothing_was_crossed() -> None:
    repo = FakeRepository(position_ctx=position_ctx(sl="64000", tp="66000"))
    llm = FakeLlm(result=management_result("hold", {}))
    outcome = process_position_job(
        job(WorkflowType.POSITION_MANAGEMENT),
        repo=repo,
        llm=llm,
        metrics=FakeMetrics(),
        config=WorkerConfig(paper_execution=True),
    )
    assert outcome.status == "done"
    assert len(llm.calls) == 1
    [decision] = repo.called("record_management_decision")
    assert decision.args[3] == Verdict(action="hold", apply=True)
    assert decision.kwargs["source"] == "llm"


def test_a_crossed_stop_is_not_filled_without_paper_execution() -> None:
    repo = FakeRepository(position_ctx=position_ctx(sl="64200"))
    llm = FakeLlm(result=management_result("hold", {}))
    process_position_job(
        job(WorkflowType.POSITION_MANAGEMENT, candle(low="64190.00")),
        repo=repo,
        llm=llm,
        metrics=FakeMetrics(),
        config=WorkerConfig(paper_execution=False),
    )
    assert len(llm.calls) == 1
    assert repo.called("record_management_decision")[0].kwargs["source"] == "llm"


@pytest.mark.parametrize(
    ("action", "params", "reason"),
    [
        ("adjust_sl", {"stop_loss": "63900"}, "stop_loss_loosened"),  # long SL 64000 moved down
        ("adjust_sl", {"stop_loss": "64300"}, "stop_loss_on_wrong_side_of_price"),  # above close 64231.50
        ("adjust_tp", {"take_profit": "64000"}, "take_profit_on_wrong_side_of_price"),
        ("reduce", {"fraction": 1.5}, "reduce_fraction_out_of_range"),
        ("reduce", {"fraction": "abc"}, "reduce_fraction_out_of_range"),
        ("sell_everything", {}, "unknown_action"),
    ],
)
def test_guardrail_rejections_reach_the_repository_as_rejected_verdicts(
    action: str, params: dict[str, Any], reason: str
) -> None:
    ctx = position_ctx(sl="64000", tp="65000")
    repo = FakeRepository(
        position_ctx=ctx, decision_outcome=DecisionOutcome(outcome="rejected", reason=reason)
    )
    llm = FakeLlm(result=management_result(action, params))
    metrics = FakeMetrics()
    j = job(WorkflowType.POSITION_MANAGEMENT)

    outcome = process_position_job(j, repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())

    [decision] = repo.called("record_management_decision")
    verdict = decision.args[3]
    assert verdict == Verdict(action=action, apply=False, reason=RejectionReason(reason))
    assert decision.args[2] == ctx.position
    assert decision.kwargs["params"] == params
    assert llm.result is not None and decision.kwargs["answer"] == llm.result.answer
    assert decision.kwargs["source"] == "llm"
    assert decision.kwargs["latency_ms"] == 310
    assert outcome == JobOutcome(JobStatus.DONE, f"rejected:{reason}", WF, 310, 900)
    assert metrics.counts[MetricName.GUARDRAIL_REJECTIONS] == 1


def test_guardrail_config_is_passed_to_the_check() -> None:
    repo = FakeRepository(position_ctx=position_ctx(sl="64000"))
    llm = FakeLlm(result=management_result("adjust_sl", {"stop_loss": "63900"}))
    config = WorkerConfig(guardrails=GuardrailConfig(allow_sl_loosening=True))
    process_position_job(
        job(WorkflowType.POSITION_MANAGEMENT), repo=repo, llm=llm, metrics=FakeMetrics(), config=config
    )
    verdict = repo.called("record_management_decision")[0].args[3]
    assert verdict == Verdict(action="adjust_sl", apply=True, stop_loss=Decimal("63900"))


def test_position_job_records_a_failure_when_the_llm_answers_a_setup_decision() -> None:
    repo = FakeRepository(position_ctx=position_ctx())
    llm = FakeLlm(result=setup_result(Decision.WAIT))
    outcome = process_position_job(
        job(WorkflowType.POSITION_MANAGEMENT),
        repo=repo,
        llm=llm,
        metrics=FakeMetrics(),
        config=WorkerConfig(),
    )
    assert outcome == JobOutcome(JobStatus.FAILED, "llm_invalid_answer", WF)
    assert repo.called("record_management_decision") == []


def test_position_job_skips_a_refused_claim() -> None:
    repo = FakeRepository(
        position_ctx=position_ctx(), claim=ClaimResult(claimed=False, reason="older_candle")
    )
    llm = FakeLlm(error=LlmProxyInvalidAnswer("must not be called"))
    outcome = process_position_job(
        job(WorkflowType.POSITION_MANAGEMENT),
        repo=repo,
        llm=llm,
        metrics=FakeMetrics(),
        config=WorkerConfig(),
    )
    assert outcome == JobOutcome(JobStatus.SKIPPED, "older_candle", WF)
    assert llm.calls == []
    assert [c.name for c in repo.calls] == ["claim_candle"]


# --- webhooks ---------------------------------------------------------------------------


def body(kind: str, table: str, row: dict[str, Any] | None, schema: str = "public") -> dict[str, Any]:
    return {
        "type": kind,
        "table": table,
        "record": None if kind == "DELETE" else row,
        "schema": schema,
        "old_record": row if kind != "INSERT" else None,
    }


@pytest.mark.parametrize(
    "payload",
    [
        body("INSERT", "traders", {"id": str(TRADER)}),
        body("INSERT", "user_profiles", {"id": 1}),
        body("INSERT", "positions", {"id": str(POSITION), "status": "open"}, schema="auth"),
        body("INSERT", "signal_analyses", {"id": str(SIGNAL), "decision": "bad_setup"}),
    ],
)
def test_handle_webhook_ignores_rows_that_start_nothing_without_touching_the_repository(
    payload: dict[str, Any],
) -> None:
    repo, queue = FakeRepository(), FakeQueue()
    answer = handle_webhook(payload, repo=repo, queue=queue, metrics=FakeMetrics(), max_reanalyses=10)
    assert answer["action"] == "ignored"
    assert answer["table"] == payload["table"]
    assert repo.calls == []
    assert queue.batches == []


def test_handle_webhook_reports_other_table() -> None:
    answer = handle_webhook(
        body("INSERT", "traders", {"id": str(TRADER)}),
        repo=FakeRepository(),
        queue=FakeQueue(),
        metrics=FakeMetrics(),
        max_reanalyses=10,
    )
    assert answer == {"action": "ignored", "reason": "other_table", "table": "traders"}


def test_handle_webhook_registers_a_wait_analysis() -> None:
    repo = FakeRepository(registration=Registration(action="registered", workflow_id=WF))
    metrics = FakeMetrics()
    answer = handle_webhook(
        body("INSERT", "signal_analyses", {"id": str(SIGNAL), "decision": "wait"}),
        repo=repo,
        queue=FakeQueue(),
        metrics=metrics,
        max_reanalyses=7,
    )
    assert answer == {"action": "registered", "table": "signal_analyses", "workflow_id": str(WF)}
    assert [(c.name, c.args) for c in repo.calls] == [("register_setup_monitoring", (SIGNAL, 7))]
    assert metrics.counts[MetricName.WORKFLOWS_STARTED] == 1


def test_handle_webhook_stops_a_deleted_position() -> None:
    repo = FakeRepository(registration=Registration(action="stopped", workflow_id=WF))
    answer = handle_webhook(
        body("DELETE", "positions", {"id": str(POSITION), "status": "open"}),
        repo=repo,
        queue=FakeQueue(),
        metrics=FakeMetrics(),
        max_reanalyses=10,
    )
    assert answer["action"] == "stopped"
    assert [(c.name, c.args) for c in repo.calls] == [
        ("stop_position_management", (POSITION, "position_deleted"))
    ]


def test_handle_webhook_queues_an_initial_analysis_for_a_new_signal() -> None:
    repo, queue = FakeRepository(initial_wanted=(True, "auto_analyze")), FakeQueue()
    answer = handle_webhook(
        body("INSERT", "signals", {"id": str(SIGNAL)}),
        repo=repo,
        queue=queue,
        metrics=FakeMetrics(),
        max_reanalyses=10,
    )
    assert answer == {"action": "queued", "signal_id": str(SIGNAL), "table": "signals"}
    assert [(j.kind, j.signal_id) for j in queue.jobs] == [(JobKind.INITIAL_ANALYSIS, SIGNAL)]


def test_handle_webhook_invalid_body_raises_before_writing_anything() -> None:
    repo, queue = FakeRepository(), FakeQueue()
    with pytest.raises(InvalidInput) as caught:
        handle_webhook(
            body("INSERT", "positions", {"id": 1, "status": "open"}),
            repo=repo,
            queue=queue,
            metrics=FakeMetrics(),
            max_reanalyses=10,
        )
    assert caught.value.field == "record.id"
    assert repo.calls == [] and queue.batches == []


def test_an_enter_trade_plan_that_does_not_bracket_the_close_is_a_recorded_failure() -> None:
    repo = FakeRepository(setup_ctx=setup_ctx())
    inverted = TradePlan(side=Side.LONG, stop_loss=Decimal("70000"), take_profit=Decimal("60000"))
    outcome = process_setup_job(
        job(),
        repo=repo,
        llm=FakeLlm(result=setup_result(Decision.ENTER_TRADE, inverted)),
        metrics=FakeMetrics(),
        config=WorkerConfig(),
    )
    assert outcome == JobOutcome(JobStatus.FAILED, "llm_invalid_answer", WF)
    assert repo.called("record_setup_analysis") == []
    [failure] = repo.called("record_workflow_failure")
    assert "does not bracket its entry 64231.50" in failure.args[3]


def test_a_database_refusal_of_the_record_counts_as_a_failure_not_a_redelivery() -> None:
    from functions.core.errors import DatabaseError

    repo = FakeRepository(setup_ctx=setup_ctx(), record_error=DatabaseError("NumericValueOutOfRange [22003]"))
    metrics = FakeMetrics()
    outcome = process_setup_job(
        job(),
        repo=repo,
        llm=FakeLlm(result=setup_result(Decision.WAIT)),
        metrics=metrics,
        config=WorkerConfig(),
    )
    assert outcome == JobOutcome(JobStatus.FAILED, "record_rejected", WF)
    [failure] = repo.called("record_workflow_failure")
    assert failure.args[2] == "record_rejected"
    assert metrics.counts[MetricName.ANALYSIS_ERRORS] == 1


def test_a_database_outage_during_the_record_still_raises_for_redelivery() -> None:
    from functions.core.errors import DatabaseUnavailable

    repo = FakeRepository(setup_ctx=setup_ctx(), record_error=DatabaseUnavailable("connection lost"))
    with pytest.raises(DatabaseUnavailable):
        process_setup_job(
            job(),
            repo=repo,
            llm=FakeLlm(result=setup_result(Decision.WAIT)),
            metrics=FakeMetrics(),
            config=WorkerConfig(),
        )
    assert repo.called("record_workflow_failure") == []


def test_the_reconciler_queues_the_initial_analyses_lost_webhooks_missed() -> None:
    from functions.services.reconcile import reconcile

    lost = [UUID(int=7), UUID(int=8)]
    repo = FakeRepository(reconciled=ReconcileOutcome(registered_setup=[UUID(int=1)]), missing_initial=lost)
    queue, metrics = FakeQueue(), FakeMetrics()

    outcome = reconcile(repo=repo, metrics=metrics, max_reanalyses=3, queue=queue)

    assert [c.args for c in repo.called("reconcile")] == [(3,)]
    assert [(j.kind, j.signal_id) for j in queue.jobs] == [(JobKind.INITIAL_ANALYSIS, s) for s in lost]
    assert outcome.initial_queued == lost
    assert metrics.counts[MetricName.RECONCILER_FIXES] == 3
