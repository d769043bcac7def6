"""Position-management Lambda: SQS jobs → claim, llm-proxy, guardrails, record + apply."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from functions.core.telemetry import SERVICE
from functions.handlers._sqs_worker import handle_batch
from functions.services.manage_position import process_position_job

logger = Logger(service=SERVICE)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, process_position_job)
