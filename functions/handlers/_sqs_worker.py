"""The shape both SQS workers share: Powertools BatchProcessor with partial failures.

A record that raises (a database outage, a malformed body) is reported in
`batchItemFailures` and SQS redelivers only that one; after the queue's
maxReceiveCount it lands in the DLQ. Everything else is recorded in Postgres.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.core.contracts import AnalysisJob
from functions.core.logs import candle_key, service_logger
from functions.handlers import wiring
from functions.services.jobs import JobOutcome

Process = Callable[..., JobOutcome]


def job_log_keys(job: AnalysisJob, message_id: str) -> dict[str, str | None]:
    """The correlation ids of one job: its workflow, its candle, its SQS message."""
    candle = job.candle
    return {
        "workflow_id": str(job.workflow_id) if job.workflow_id else None,
        "signal_id": str(job.signal_id) if job.signal_id else None,
        "candle": candle_key(candle.symbol, candle.interval, candle.close_time) if candle else None,
        "sqs_message_id": message_id,
    }


def handle_batch(event: dict[str, Any], context: Any, process: Process) -> dict[str, Any]:
    deps = wiring.container()
    llm = deps.llm
    deadline = wiring.deadline_from(context)
    processor = BatchProcessor(event_type=EventType.SQS)

    logger = service_logger()

    def record_handler(record: SQSRecord) -> str:
        job = AnalysisJob.model_validate_json(record.body)
        # Every line logged for this job (ours, the services', the adapters') carries these.
        keys = job_log_keys(job, record.message_id)
        logger.append_keys(**keys)
        try:
            outcome = process(
                job,
                repo=deps.repo,
                llm=llm,
                metrics=deps.metrics,
                config=deps.worker_config,
                deadline=deadline,
            )
        finally:
            logger.remove_keys(list(keys))
        return outcome.status

    try:
        return dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
    finally:
        deps.metrics.flush()
