"""Reconciler Lambda (every minute): register what lost webhooks missed, stop what closed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from functions.core.telemetry import SERVICE
from functions.handlers import wiring
from functions.services.reconcile import reconcile

logger = Logger(service=SERVICE)


@logger.inject_lambda_context
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
