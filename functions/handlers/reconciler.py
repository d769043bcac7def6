"""Reconciler Lambda (every minute): register what lost webhooks missed, stop what closed."""

from __future__ import annotations

from typing import Any

from functions.adapters.tracing import service_tracer
from functions.core.logs import service_logger
from functions.handlers import wiring
from functions.services.reconcile import reconcile

logger = service_logger()
tracer = service_tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    deps = wiring.container()
    try:
        outcome = reconcile(
            repo=deps.repo,
            metrics=deps.metrics,
            max_reanalyses=deps.settings.max_reanalyses,
            queue=deps.queue,
            initial_analysis_by=deps.settings.initial_analysis_by,
        )
    finally:
        deps.metrics.flush()
    return outcome.model_dump(mode="json")
