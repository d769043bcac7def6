"""`cmon local`'s job queue: concurrent sends share batches; every caller gets its own answer.

The inner queue here records what it is asked to send and can be held mid-send, so the
tests decide the interleaving (no sleeps, no timing): while one send is in flight, the
calls that arrive wait and then go together in the next one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest

from functions.core.contracts import AnalysisJob, JobKind
from functions.core.errors import PublishError
from functions.local.job_batcher import CoalescingJobQueue


def _job() -> AnalysisJob:
    return AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=uuid.uuid4())


class _HeldQueue:
    """Records each send; the first one blocks until `release` is set; can fail a round."""

    def __init__(self) -> None:
        self.sent: list[list[AnalysisJob]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_round: int | None = None

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        self.sent.append(list(jobs))
        if len(self.sent) == 1:
            self.entered.set()
            self.release.wait(10)
        if self.fail_round == len(self.sent):
            raise PublishError("SendMessageBatch failed: throttled")
        return len(jobs)


def _callers(
    queue: CoalescingJobQueue, batches: list[list[AnalysisJob]]
) -> tuple[list[threading.Thread], dict]:
    results: dict[int, object] = {}

    def call(index: int, jobs: list[AnalysisJob]) -> None:
        try:
            results[index] = queue.send_jobs(jobs)
        except PublishError as exc:
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i, jobs)) for i, jobs in enumerate(batches)]
    return threads, results


def _wait_pending(queue: CoalescingJobQueue, n: int) -> None:
    for _ in range(1000):
        with queue._wake:
            if len(queue._pending) >= n:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{n} calls never queued")


def test_calls_that_arrive_during_a_send_go_together_in_the_next() -> None:
    inner = _HeldQueue()
    queue = CoalescingJobQueue(inner)
    first = [_job()]
    threads, results = _callers(queue, [first])
    threads[0].start()
    assert inner.entered.wait(10)  # the first send is in flight
    later = [[_job(), _job()] for _ in range(5)]
    more, more_results = _callers(queue, later)
    for thread in more:
        thread.start()
    _wait_pending(queue, 5)
    inner.release.set()
    for thread in threads + more:
        thread.join(10)
    queue.close()
    assert results == {0: 1}
    assert more_results == dict.fromkeys(range(5), 2)  # each caller: its own count
    assert len(inner.sent) == 2 and queue.sends == 2  # 6 calls, 2 sends
    assert inner.sent[0] == first
    assert sorted(j.signal_id for j in inner.sent[1]) == sorted(j.signal_id for b in later for j in b)  # type: ignore[type-var]


def test_an_idle_queue_sends_a_call_at_once_and_alone() -> None:
    inner = _HeldQueue()
    inner.release.set()
    queue = CoalescingJobQueue(inner)
    try:
        for n in (1, 3, 2):
            assert queue.send_jobs([_job() for _ in range(n)]) == n
        assert [len(b) for b in inner.sent] == [1, 3, 2]
        assert queue.send_jobs([]) == 0 and len(inner.sent) == 3  # nothing to send: no send
    finally:
        queue.close()


def test_a_failed_send_fails_every_call_of_its_round_and_only_those() -> None:
    inner = _HeldQueue()
    inner.fail_round = 2
    queue = CoalescingJobQueue(inner)
    threads, results = _callers(queue, [[_job()]])
    threads[0].start()
    assert inner.entered.wait(10)
    more, more_results = _callers(queue, [[_job()], [_job()]])
    for thread in more:
        thread.start()
    _wait_pending(queue, 2)
    inner.release.set()
    for thread in threads + more:
        thread.join(10)
    assert results == {0: 1}
    assert all(isinstance(r, PublishError) for r in more_results.values()) and len(more_results) == 2
    assert queue.send_jobs([_job()]) == 1  # the next round is unaffected
    queue.close()


def test_close_sends_what_is_pending_then_refuses() -> None:
    inner = _HeldQueue()
    queue = CoalescingJobQueue(inner)
    threads, results = _callers(queue, [[_job()], [_job()]])
    threads[0].start()
    assert inner.entered.wait(10)
    threads[1].start()
    _wait_pending(queue, 1)
    closer = threading.Thread(target=queue.close)
    closer.start()
    inner.release.set()
    for thread in [*threads, closer]:
        thread.join(10)
    assert results == {0: 1, 1: 1}
    with pytest.raises(RuntimeError, match="closed"):
        queue.send_jobs([_job()])
