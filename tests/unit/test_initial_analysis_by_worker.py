"""INITIAL_ANALYSIS_BY=platform reaches the worker too: an initial-analysis job queued
before the switch (or redelivered after it) is skipped before its claim, so the signal is
never analysed twice, once by the platform's trigger and once by cmon."""

from __future__ import annotations

from functions.core.contracts import AnalysisJob, JobKind
from functions.core.models import Decision
from functions.core.operator import InitialAnalysisBy
from functions.core.vocabulary import JobStatus, SkipReason
from functions.handlers.wiring import Container
from functions.services.analyse_setup import process_setup_job
from functions.services.jobs import JobOutcome, WorkerConfig
from functions.settings import Settings
from tests.unit.fakes import FakeLlm, FakeMetrics, FakeRepository
from tests.unit.test_services_with_fakes import SIGNAL, job, setup_ctx, setup_result

PLATFORM = WorkerConfig(initial_analysis_by=InitialAnalysisBy.PLATFORM)


def test_an_initial_job_is_skipped_when_the_platform_analyses_new_signals() -> None:
    repo, llm, metrics = (
        FakeRepository(setup_ctx=setup_ctx()),
        FakeLlm(setup_result(Decision.WAIT)),
        FakeMetrics(),
    )
    initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)
    outcome = process_setup_job(initial, repo=repo, llm=llm, metrics=metrics, config=PLATFORM)
    assert outcome == JobOutcome(JobStatus.SKIPPED, SkipReason.INITIAL_ANALYSIS_BY_PLATFORM)
    assert outcome.detail == "initial_analysis_by_platform"
    assert repo.calls == []  # not even claimed: the signal is left as the platform finds it
    assert llm.calls == []


def test_with_cmon_analysing_new_signals_the_initial_job_runs() -> None:
    repo, llm, metrics = (
        FakeRepository(setup_ctx=setup_ctx()),
        FakeLlm(setup_result(Decision.WAIT)),
        FakeMetrics(),
    )
    initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)
    outcome = process_setup_job(initial, repo=repo, llm=llm, metrics=metrics, config=WorkerConfig())
    assert outcome.status is JobStatus.DONE
    assert [c.name for c in repo.calls][:2] == ["claim_initial_analysis", "setup_context"]
    assert len(llm.calls) == 1


def test_monitoring_jobs_run_whoever_does_the_initial_analysis() -> None:
    repo, llm, metrics = (
        FakeRepository(setup_ctx=setup_ctx()),
        FakeLlm(setup_result(Decision.WAIT)),
        FakeMetrics(),
    )
    outcome = process_setup_job(job(), repo=repo, llm=llm, metrics=metrics, config=PLATFORM)
    assert outcome.status is JobStatus.DONE
    assert len(llm.calls) == 1


def test_the_handlers_worker_config_carries_the_setting() -> None:
    settings = Settings(initial_analysis_by=InitialAnalysisBy.PLATFORM)
    container = Container(
        settings=settings,
        repo=FakeRepository(),
        metrics=FakeMetrics(),  # type: ignore[arg-type]
        llm=FakeLlm(),
        reads=None,  # type: ignore[arg-type]
    )
    assert container.worker_config.initial_analysis_by is InitialAnalysisBy.PLATFORM
