"""AWS adapters: the SQS job queue and the metrics sink.

boto3 honours `AWS_ENDPOINT_URL` itself, which is how local runs and tests point it at
moto. botocore's errors stop here: a batch that still has failed entries after the
retries raises `PublishError`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.core.batches import chunks
from functions.core.contracts import AnalysisJob, JobKind, WorkflowType
from functions.core.errors import PublishError
from functions.core.retry import BackoffPolicy
from functions.core.telemetry import (
    FUNCTION_DIMENSION,
    NAMESPACE,
    SERVICE,
    STAGE_DIMENSION,
    VERSION_DIMENSION,
    VERSIONED,
    MetricName,
)

log = logging.getLogger(__name__)

SQS_BATCH = 10  # SendMessageBatch's limit


# The retry of entries SendMessageBatch reported failed: the shared full-jitter policy,
# 0.1 s after the first attempt doubling to at most 2 s (four attempts stay under 4 s).
SQS_BATCH_BACKOFF = BackoffPolicy(base_s=0.1, cap_s=2.0)


def _body(job: AnalysisJob, candle_json: dict[int, str]) -> str:
    """The job's JSON; a fan-out sends one candle to thousands of workflows, so each
    distinct candle is serialised once and spliced in (same bytes as model_dump_json)."""
    if job.candle is None:
        return job.model_dump_json()
    key = id(job.candle)
    if key not in candle_json:
        candle_json[key] = job.candle.model_dump_json()
    head = job.model_dump_json(exclude={"candle"})
    return f'{head[:-1]},"candle":{candle_json[key]}}}'


class SqsJobQueue:
    """Routes each job to its workflow type's queue, 10 per call, batches in parallel.

    Only the entries SQS reports as failed are re-sent, with capped, jittered backoff.
    """

    def __init__(
        self,
        client: Any,
        *,
        setup_queue_url: str,
        position_queue_url: str,
        max_attempts: int = 4,
        parallelism: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._urls = {
            WorkflowType.SETUP_MONITORING: setup_queue_url,
            WorkflowType.POSITION_MANAGEMENT: position_queue_url,
        }
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="sqs-send")

    def _queue_for(self, job: AnalysisJob) -> str:
        if job.kind is JobKind.INITIAL_ANALYSIS:
            return self._urls[WorkflowType.SETUP_MONITORING]
        assert job.workflow_type is not None
        return self._urls[job.workflow_type]

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        by_queue: dict[str, list[str]] = defaultdict(list)
        candle_json: dict[int, str] = {}
        for job in jobs:
            by_queue[self._queue_for(job)].append(_body(job, candle_json))
        batches = [(url, chunk) for url, queued in by_queue.items() for chunk in chunks(queued, SQS_BATCH)]
        if len(batches) == 1:
            return self._send_batch(*batches[0])
        return sum(self._pool.map(lambda b: self._send_batch(*b), batches))

    def _send_batch(self, url: str, jobs: Sequence[str]) -> int:
        pending = {str(i): body for i, body in enumerate(jobs)}
        for attempt in range(1, self._max_attempts + 1):
            entries = [{"Id": key, "MessageBody": body} for key, body in pending.items()]
            try:
                response = self._client.send_message_batch(QueueUrl=url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                if attempt == self._max_attempts:
                    raise PublishError(f"SendMessageBatch failed: {exc}") from exc
                self._backoff(attempt)
                continue
            for ok in response.get("Successful", []):
                pending.pop(ok["Id"], None)
            if not pending:
                return len(jobs)
            failed = response.get("Failed", [])
            if any(f.get("SenderFault") for f in failed):
                raise PublishError(f"SQS rejected jobs as malformed: {failed[:3]}")
            log.warning(
                "SendMessageBatch partial failure", extra={"failed": len(pending), "attempt": attempt}
            )
            self._backoff(attempt)
        raise PublishError(f"{len(pending)} of {len(jobs)} jobs not sent after {self._max_attempts} attempts")

    def _backoff(self, attempt: int) -> None:
        self._sleep(SQS_BATCH_BACKOFF.delay(attempt, random.random()))


class PowertoolsMetrics:
    """EMF through Powertools: one JSON line per flush on stdout, read by CloudWatch."""

    def __init__(
        self, stage: str, *, function_name: str = "local", function_version: str = "$LATEST"
    ) -> None:
        from aws_lambda_powertools import Metrics as _Metrics

        self.metrics = _Metrics(namespace=NAMESPACE, service=SERVICE)
        self.metrics.set_default_dimensions(**{STAGE_DIMENSION: stage})
        self._stage = stage
        self._function_name = function_name
        self._function_version = function_version

    def count(self, name: MetricName, value: float = 1) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        self.metrics.add_metric(name=name.value, unit=MetricUnit.Count, value=value)
        if name in VERSIONED:
            self._count_versioned(name, value)

    def _count_versioned(self, name: MetricName, value: float) -> None:
        """The same count under (service, stage, function, version): a CodeDeploy canary
        alarm selects the new version alone, as the `live` alias mixes both."""
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        with single_metric(
            name=name.value,
            unit=MetricUnit.Count,
            value=value,
            namespace=NAMESPACE,
            default_dimensions={
                "service": SERVICE,
                STAGE_DIMENSION: self._stage,
                FUNCTION_DIMENSION: self._function_name,
                VERSION_DIMENSION: self._function_version,
            },
        ):
            pass

    def timing_ms(self, name: MetricName, value: float) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        self.metrics.add_metric(name=name.value, unit=MetricUnit.Milliseconds, value=value)

    def flush(self) -> None:
        self.metrics.flush_metrics()


class InMemoryMetrics:
    """Sums and samples in memory: the local runner's summary and tests read them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, float] = defaultdict(float)
        self.timings: dict[str, list[float]] = defaultdict(list)

    def count(self, name: MetricName, value: float = 1) -> None:
        with self._lock:
            self.counts[name.value] += value

    def timing_ms(self, name: MetricName, value: float) -> None:
        with self._lock:
            self.timings[name.value].append(value)

    def flush(self) -> None:
        """Nothing to ship: the numbers stay readable."""
