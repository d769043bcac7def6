"""Fan-out Lambda: EventBridge `CandleClosed` → one SQS job per active workflow.

A database outage is raised, never caught: the failed invocation is what makes Lambda
retry the event (template: `EventInvokeConfig`, within the staleness window), and a
stale retry is dropped by the service before it touches the database.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from functions.adapters.tracing import service_tracer
from functions.core.contracts import CandleClosed
from functions.core.logs import candle_key, service_logger
from functions.handlers import wiring
from functions.services.fan_out import fan_out

logger = service_logger()
tracer = service_tracer()


class CandleClosedEvent(EventBridgeModel):
    detail: CandleClosed


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    deps = wiring.container()
    candle = parse(event=event, model=CandleClosedEvent).detail
    logger.append_keys(candle=candle_key(candle.symbol, candle.interval, candle.close_time))
    assert deps.queue is not None, "SETUP_QUEUE_URL and POSITION_QUEUE_URL must be set"
    try:
        result = fan_out(
            candle,
            repo=deps.repo,
            queue=deps.queue,
            metrics=deps.metrics,
            clock=deps.clock,
            stale_intervals=deps.settings.stale_candle_intervals,
        )
    finally:
        deps.metrics.flush()
    return {"workflows": result.workflows, "jobs_sent": result.jobs_sent, "stale": result.stale}
