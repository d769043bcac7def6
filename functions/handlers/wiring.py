"""Builds each function's dependencies once per container, on first use.

Nothing is read or connected at import (a cold start imports, then the first event
builds); tests and the local runner call `use()` to inject their own parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.guardrails import GuardrailConfig
from functions.core.logs import register_secret
from functions.services.jobs import WorkerConfig
from functions.services.ports import Clock, JobQueue, LlmProxy, Metrics, OperatorStore, Repository
from functions.settings import Settings, get_settings

if TYPE_CHECKING:
    from functions.adapters.llm_calls import LlmProxyBase


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
    queue: JobQueue | None = None
    llm: LlmProxy | None = None
    clock: Clock = system_clock
    extras: dict[str, Any] = field(default_factory=dict)
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
        )


_container: Container | None = None


def build(settings: Settings) -> Container:
    """The production wiring: Postgres, SQS, llm-proxy (HTTP or Edge Function), EMF metrics."""
    import boto3

    from functions.adapters.aws import PowertoolsMetrics, SqsJobQueue
    from functions.adapters.operator_db import PostgresOperatorStore
    from functions.adapters.postgres import Database
    from functions.adapters.repository import PostgresRepository

    register_secret(*settings.secret_values())
    if settings.database_url is None and settings.database_url_secret_id is None:
        raise RuntimeError("DATABASE_URL (or DATABASE_URL_SECRET_ID) is not set")

    def database_url() -> str:
        # Read at each (re)connect: a rotated password is used by the next connection.
        current = settings.secret("database_url")
        assert current is not None
        return current.get_secret_value()

    db = Database(database_url)
    repo = PostgresRepository(db)
    queue = None
    if settings.setup_queue_url and settings.position_queue_url:
        queue = SqsJobQueue(
            boto3.client("sqs"),
            setup_queue_url=settings.setup_queue_url,
            position_queue_url=settings.position_queue_url,
        )
    return Container(
        settings=settings,
        repo=repo,
        metrics=PowertoolsMetrics(
            settings.stage,
            function_name=settings.aws_lambda_function_name,
            function_version=settings.aws_lambda_function_version,
        ),
        queue=queue,
        llm=build_llm(settings),
        operator_store=PostgresOperatorStore(db),
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
