"""Builds each function's dependencies once per container, on first use.

Nothing is read or connected at import (a cold start imports, then the first event
builds); tests and the local runner call `use()` to inject their own parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.guardrails import GuardrailConfig
from functions.core.logs import register_secret
from functions.services.jobs import WorkerConfig
from functions.services.ports import AdminReads, Clock, JobQueue, LlmProxy, Metrics, OperatorStore, Repository
from functions.settings import Settings, get_settings

if TYPE_CHECKING:
    from functions.adapters.llm_calls import LlmProxyBase
    from functions.adapters.postgres import Database


class FlushableMetrics(Metrics, Protocol):
    def flush(self) -> None: ...


def system_clock() -> datetime:
    """The wall clock (UTC): what every deployed function uses."""
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    repo: Repository
    metrics: FlushableMetrics
    llm: LlmProxy
    reads: AdminReads
    queue: JobQueue | None = None
    clock: Clock = system_clock
    # The operator's recording SQL functions (admin API: resume).
    operator_store: OperatorStore | None = None

    @property
    def worker_config(self) -> WorkerConfig:
        s = self.settings
        return WorkerConfig(
            max_consecutive_errors=s.max_consecutive_errors,
            claim_lease_s=s.claim_lease_s,
            stale_candle_intervals=s.stale_candle_intervals,
            max_reanalyses=s.max_reanalyses,
            stage=s.stage,
            paper_execution=s.paper_execution,
            guardrails=GuardrailConfig(allow_sl_loosening=s.allow_sl_loosening),
            initial_analysis_by=s.initial_analysis_by,
        )


_container: Container | None = None


def build(
    settings: Settings,
    *,
    db: Database | None = None,
    queue: JobQueue | None = None,
    llm: LlmProxy | None = None,
    metrics: FlushableMetrics | None = None,
    clock: Clock | None = None,
) -> Container:
    """The one place the handlers' container is built. Production passes only `settings`
    (Postgres, SQS, llm-proxy over HTTP or the Edge Function, EMF metrics); `cmon local`,
    the demo, replay and the tests pass the parts they own (a per-thread database, a moto
    queue, a timed or stub-backed LLM client, in-memory metrics, a replay clock) and get
    everything else exactly as deployed."""
    from functions.adapters.operations import OperatorReads
    from functions.adapters.operator_db import PostgresOperatorStore
    from functions.adapters.repository import PostgresRepository

    register_secret(*settings.secret_values())
    if db is None:
        db = _database(settings)
    if queue is None:
        queue = _sqs_queue(settings)
    if metrics is None:
        from functions.adapters.aws import PowertoolsMetrics

        metrics = PowertoolsMetrics(
            settings.stage,
            function_name=settings.aws_lambda_function_name,
            function_version=settings.aws_lambda_function_version,
        )
    return Container(
        settings=settings,
        repo=PostgresRepository(db),
        metrics=metrics,
        queue=queue,
        llm=build_llm(settings) if llm is None else llm,
        clock=system_clock if clock is None else clock,
        reads=OperatorReads(db),
        operator_store=PostgresOperatorStore(db),
    )


def _database(settings: Settings) -> Database:
    from functions.adapters.postgres import Database

    if settings.database_url is None and settings.database_url_secret_id is None:
        raise RuntimeError("DATABASE_URL (or DATABASE_URL_SECRET_ID) is not set")

    def database_url() -> str:
        # Read at each (re)connect: a rotated password is used by the next connection.
        current = settings.secret("database_url")
        if current is None:  # the secret was deleted after start-up
            raise RuntimeError("the database URL secret has no value")
        return current.get_secret_value()

    return Database(database_url)


def _sqs_queue(settings: Settings) -> JobQueue | None:
    if not (settings.setup_queue_url and settings.position_queue_url):
        return None
    import boto3

    from functions.adapters.aws import SqsJobQueue

    return SqsJobQueue(
        boto3.client("sqs"),
        setup_queue_url=settings.setup_queue_url,
        position_queue_url=settings.position_queue_url,
    )


def build_llm(settings: Settings) -> LlmProxyBase:
    """The llm-proxy adapter `LLM_PROXY_TRANSPORT` names. The Edge Function's client
    (`supabase_functions`, yarl) is imported only when it is chosen: the HTTP transport's
    cold start does not pay for it."""
    if settings.llm_proxy_transport == "edge":
        from functions.adapters.edge_llm import EdgeLlmProxy

        return EdgeLlmProxy.from_settings(settings)
    from functions.adapters.llm_proxy import HttpLlmProxy

    return HttpLlmProxy.from_settings(settings)


def container() -> Container:
    global _container
    if _container is None:
        _container = build(get_settings())
    return _container


def use(replacement: Container | None) -> None:
    """Inject a container (tests, the local runner); `None` resets to lazy production wiring."""
    global _container
    _container = replacement


def deadline_from(context: Any, safety_s: float = 3.0) -> float | None:
    """A monotonic instant a few seconds before the Lambda's own timeout."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    left_ms: float = remaining()
    return time.monotonic() + max(0.0, left_ms / 1000 - safety_s)


def current() -> Container | None:
    """The container if one was built or injected (no side effects)."""
    return _container
