"""Concurrent `send_jobs` calls coalesced into shared SQS batches, for `cmon local`.

A Lambda container serves one request at a time, so the API function sends a signal's
initial-analysis job alone, and SQS answers that in milliseconds. `cmon local` serves a
whole burst of webhooks at once (pg_net sends up to 200) from one process, against moto,
which costs ~9 ms of CPU per request however few messages it carries: 100 signals would
be 100 requests, one after another. Here the calls that arrive while a send is in flight
wait for the next one and go together (the inner queue packs them 10 per
SendMessageBatch), so moto sees up to 10 times fewer requests. No timer: an idle queue sends a
call's jobs at once, as before; each caller still gets its own count or error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from functions.core.contracts import AnalysisJob
from functions.services.ports import JobQueue


@dataclass
class _Call:
    jobs: list[AnalysisJob]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class CoalescingJobQueue:
    """A `JobQueue` that sends, from one thread, everything queued since its last send."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner
        self._pending: list[_Call] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.sends = 0  # inner `send_jobs` calls made (the tests and the bench read it)

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        if not jobs:
            return 0
        call = _Call(list(jobs))
        with self._wake:
            if self._closed:
                raise RuntimeError("job queue is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sqs-coalesce", daemon=True)
                self._thread.start()
            self._pending.append(call)
            self._wake.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return len(call.jobs)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return  # closed and drained
                calls, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                self._inner.send_jobs([job for call in calls for job in call.jobs])
            except BaseException as exc:  # handed to every caller of this round, re-raised there
                error = exc
            self.sends += 1
            for call in calls:
                call.error = error
                call.done.set()

    def close(self) -> None:
        """Send what is pending, then stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
