"""Plays the Lambda event-source mappings locally: queue → handler, with real event shapes.

moto stores messages but runs no Lambda, so this drains each queue, wraps what it
received in the exact event a Lambda would get (an EventBridge envelope for the
fan-out, an SQS batch for the workers), calls the real handler, and deletes only the
records the handler did not report in `batchItemFailures` — the rest come back after
their visibility timeout, as in AWS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from functions.local.aws_stack import REGION, LocalStack

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a real Lambda context."""

    function_name: str
    timeout_s: float = 60.0
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event an SQS event-source mapping hands to Lambda for these messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": m.get("Attributes", {}).get(
                        "SentTimestamp", str(int(time.time() * 1000))
                    ),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


@dataclass
class PumpStats:
    fanout_events: int = 0
    setup_records: int = 0
    position_records: int = 0
    failed_records: int = 0

    @property
    def total(self) -> int:
        return self.fanout_events + self.setup_records + self.position_records


class TriggerRunner:
    def __init__(
        self,
        sqs: Any,
        stack: LocalStack,
        *,
        fanout: Handler | None = None,
        setup: Handler | None = None,
        position: Handler | None = None,
        batch_size: int = 10,
    ) -> None:
        from functions.handlers import fanout as fanout_mod
        from functions.handlers import position_management, setup_analysis

        self.sqs = sqs
        self.stack = stack
        self.batch_size = batch_size
        self.fanout = fanout or fanout_mod.handler
        self.setup = setup or setup_analysis.handler
        self.position = position or position_management.handler
        self.stats = PumpStats()
        self._arns: dict[str, str] = {}

    def _arn(self, url: str) -> str:
        if url not in self._arns:
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            self._arns[url] = attrs["Attributes"]["QueueArn"]
        return self._arns[url]

    def _receive(self, url: str, wait_s: int = 0) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=wait_s, AttributeNames=["All"]
        )
        return list(response.get("Messages", []))

    def pump_fanout(self) -> int:
        """Deliver pending EventBridge events to the fan-out, one invocation each."""
        delivered = 0
        while messages := self._receive(self.stack.fanout_queue_url):
            for message in messages:
                self.fanout(json.loads(message["Body"]), LambdaContext("fanout"))
                self.sqs.delete_message(
                    QueueUrl=self.stack.fanout_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                delivered += 1
        self.stats.fanout_events += delivered
        return delivered

    def _pump_worker(self, url: str, handler: Handler, name: str) -> int:
        handled = 0
        while messages := self._receive(url):
            try:
                response = handler(sqs_event(messages, self._arn(url)), LambdaContext(name))
                failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
            except Exception:  # an invocation error: Lambda returns the whole batch to the queue
                log.exception("%s invocation failed; %d records go back to the queue", name, len(messages))
                failed = {m["MessageId"] for m in messages}
            for message in messages:
                if message["MessageId"] in failed:
                    # Back on the queue at once (AWS would wait for the visibility timeout).
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            self.stats.failed_records += len(failed)
            handled += len(messages) - len(failed)
            if len(failed) == len(messages):
                break  # everything failed: stop instead of spinning; the caller decides when to retry
        return handled

    def pump_setup(self) -> int:
        n = self._pump_worker(self.stack.setup_queue_url, self.setup, "setup-analysis")
        self.stats.setup_records += n
        return n

    def pump_position(self) -> int:
        n = self._pump_worker(self.stack.position_queue_url, self.position, "position-management")
        self.stats.position_records += n
        return n

    def run_until_idle(self, max_rounds: int = 20) -> PumpStats:
        """Pump every trigger until a full round moves nothing (bounded)."""
        for _ in range(max_rounds):
            moved = self.pump_fanout() + self.pump_setup() + self.pump_position()
            if moved == 0:
                break
        return self.stats
