"""SqsJobQueue: batching by 10, routing by workflow type, re-sending only failed entries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from functions.adapters.aws import SqsJobQueue
from functions.core.contracts import AnalysisJob, JobKind, WorkflowType
from functions.core.errors import PublishError
from functions.local.aws_stack import clients, create_stack
from tests.support.stack import candle


def jobs(n: int, kind: WorkflowType) -> list[AnalysisJob]:
    c = candle()
    return [
        AnalysisJob(kind=JobKind.CANDLE, workflow_id=uuid.uuid4(), workflow_type=kind, candle=c)
        for _ in range(n)
    ]


def drain(sqs: Any, url: str) -> list[AnalysisJob]:
    out: list[AnalysisJob] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        out += [AnalysisJob.model_validate_json(m["Body"]) for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


@pytest.mark.usefixtures("moto_endpoint")
def test_jobs_reach_their_queue_intact_in_batches() -> None:
    sqs, events = clients()
    stack = create_stack(sqs, events)
    queue = SqsJobQueue(
        sqs, setup_queue_url=stack.setup_queue_url, position_queue_url=stack.position_queue_url
    )
    setup, position = jobs(23, WorkflowType.SETUP_MONITORING), jobs(7, WorkflowType.POSITION_MANAGEMENT)
    initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=uuid.uuid4())

    assert queue.send_jobs([*setup, initial, *position]) == 31

    got_setup = drain(sqs, stack.setup_queue_url)
    assert sorted(str(j.workflow_id) for j in got_setup if j.workflow_id) == sorted(
        str(j.workflow_id) for j in setup
    )
    assert initial in got_setup
    assert got_setup[0].candle == setup[0].candle  # the spliced candle JSON parses back equal
    assert {j.workflow_id for j in drain(sqs, stack.position_queue_url)} == {j.workflow_id for j in position}


class FlakySqs:
    """Fails the first `fail_first` entries of the first call, like a throttled SQS."""

    def __init__(self, fail_first: int, sender_fault: bool = False, always: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail_first = fail_first
        self.sender_fault = sender_fault
        self.always = always

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [e["Id"] for e in Entries]
        self.calls.append(ids)
        failing = ids[: self.fail_first] if (len(self.calls) == 1 or self.always) else []
        return {
            "Successful": [{"Id": i} for i in ids if i not in failing],
            "Failed": [{"Id": i, "SenderFault": self.sender_fault, "Code": "X"} for i in failing],
        }


def test_only_failed_entries_are_resent() -> None:
    sqs = FlakySqs(fail_first=3)
    queue = SqsJobQueue(sqs, setup_queue_url="s", position_queue_url="p", sleep=lambda _s: None)
    assert queue.send_jobs(jobs(10, WorkflowType.SETUP_MONITORING)) == 10
    assert sqs.calls == [[str(i) for i in range(10)], ["0", "1", "2"]]


def test_sender_fault_and_exhausted_retries_raise_publish_error() -> None:
    with pytest.raises(PublishError, match="malformed"):
        SqsJobQueue(
            FlakySqs(1, sender_fault=True), setup_queue_url="s", position_queue_url="p", sleep=lambda _s: None
        ).send_jobs(jobs(2, WorkflowType.SETUP_MONITORING))
    stubborn = FlakySqs(1, always=True)
    with pytest.raises(PublishError, match="not sent after 4 attempts"):
        SqsJobQueue(
            stubborn, setup_queue_url="s", position_queue_url="p", max_attempts=4, sleep=lambda _s: None
        ).send_jobs(jobs(2, WorkflowType.SETUP_MONITORING))
    assert len(stubborn.calls) == 4
