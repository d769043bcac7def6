"""The AWS resources of `template.yaml`, created in moto for local runs and tests.

Same wiring as the deployed stack: a custom bus with a `CandleClosed` rule, two work
queues each with a DLQ. Lambda triggers are not run by moto (no Docker), so the rule
targets a queue that the trigger runner drains into the fan-out handler; the target
keeps the full EventBridge envelope (moto's default envelope lacks `account`, which
Powertools' `EventBridgeModel` requires, hence the InputTransformer).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE

REGION = "us-east-1"


def local_aws_env(endpoint_url: str) -> dict[str, str]:
    """Environment that points boto3 at a local endpoint with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@dataclass(frozen=True)
class LocalStack:
    bus_name: str
    fanout_queue_url: str
    setup_queue_url: str
    setup_dlq_url: str
    position_queue_url: str
    position_dlq_url: str


def _queue(sqs: Any, name: str, dlq_arn: str | None = None, max_receive: int = 5) -> str:
    attributes = {"VisibilityTimeout": "360"}
    if dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}
        )
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def create_stack(sqs: Any, events: Any, prefix: str | None = None) -> LocalStack:
    prefix = prefix or f"cmon-{uuid.uuid4().hex[:8]}"
    bus = f"{prefix}-bus"
    events.create_event_bus(Name=bus)

    fanout_dlq = _queue(sqs, f"{prefix}-fanout-dlq")
    fanout = _queue(sqs, f"{prefix}-fanout", _arn(sqs, fanout_dlq))
    setup_dlq = _queue(sqs, f"{prefix}-setup-dlq")
    setup = _queue(sqs, f"{prefix}-setup", _arn(sqs, setup_dlq))
    position_dlq = _queue(sqs, f"{prefix}-position-dlq")
    position = _queue(sqs, f"{prefix}-position", _arn(sqs, position_dlq))

    events.put_rule(
        Name=f"{prefix}-candle-closed",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]}),
        State="ENABLED",
    )
    events.put_targets(
        Rule=f"{prefix}-candle-closed",
        EventBusName=bus,
        Targets=[
            {
                "Id": "fanout",
                "Arn": _arn(sqs, fanout),
                "InputTransformer": {"InputPathsMap": {}, "InputTemplate": "<aws.events.event.json>"},
            }
        ],
    )
    return LocalStack(bus, fanout, setup, setup_dlq, position, position_dlq)


def clients() -> tuple[Any, Any]:
    """SQS and EventBridge clients; the endpoint comes from AWS_ENDPOINT_URL."""
    import boto3

    region = os.environ.get("AWS_DEFAULT_REGION", REGION)
    return boto3.client("sqs", region_name=region), boto3.client("events", region_name=region)
