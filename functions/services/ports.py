"""The ports the services need; adapters implement them, handlers wire them.

Services import only these protocols (import-linter forbids them from importing
adapters), so each use case can be driven in a test by a real adapter or a small fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from functions.core.contracts import AnalysisJob
from functions.core.models import (
    AnalyzeSignalRequest,
    LlmResult,
    ManagePositionRequest,
)
from functions.core.telemetry import MetricName


class LlmProxy(Protocol):
    """llm-proxy over HTTP. Raises `LlmProxyUnavailable`, `LlmProxyRejected` or
    `LlmProxyInvalidAnswer`; never an httpx error.

    `deadline` is a `time.monotonic()` instant after which no retry is started (the
    Lambda's remaining time), `None` for no limit beyond the client's own timeouts.
    """

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult: ...

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult: ...


class JobQueue(Protocol):
    """Sends analysis jobs to the queue of their workflow type."""

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        """Send every job (re-sending only failed entries); return how many were sent.
        Raises `PublishError` if some could not be sent after retries."""
        ...


class Metrics(Protocol):
    """Counts and timings under the project's namespace (EMF in Lambda)."""

    def count(self, name: MetricName, value: float = 1) -> None: ...

    def timing_ms(self, name: MetricName, value: float) -> None: ...
