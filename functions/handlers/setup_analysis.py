"""Setup-analysis Lambda: SQS jobs → claim, llm-proxy, record + apply (partial batch failures)."""

from __future__ import annotations

from typing import Any

from functions.adapters.tracing import service_tracer
from functions.core.logs import service_logger
from functions.handlers._sqs_worker import handle_batch
from functions.services.analyse_setup import process_setup_job

logger = service_logger()
tracer = service_tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_batch(event, context, process_setup_job)
