"""Brief 3.1 at real concurrency: 50 monitors on one stream, every job delivered twice,
10 worker threads each with its own Postgres connection (as Lambda containers have),
the stub llm-proxy over loopback HTTP (with latency, so the workers really overlap).

Exactly 50 analyses and 50 claims won; every duplicate is refused by the claim; no
deadlock (every job finishes within its bound). Timing is bench/bench_load.py's job.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from functions.adapters.aws import InMemoryMetrics
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.postgres import Database
from functions.adapters.repository import PostgresRepository
from functions.core.contracts import AnalysisJob
from functions.local.stub_llm import StubLlmProxy
from functions.services.analyse_setup import process_setup_job
from functions.services.fan_out import fan_out
from functions.services.jobs import JobOutcome, WorkerConfig
from functions.settings import Settings
from tests.support import factories as f
from tests.support.stack import candle

MONITORS = 50
WORKERS = 10


class CollectingQueue:
    """The JobQueue port, keeping what the real fan-out sends."""

    def __init__(self) -> None:
        self.jobs: list[AnalysisJob] = []

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        self.jobs.extend(jobs)
        return len(jobs)


def test_fifty_monitors_twice_delivered_to_ten_concurrent_workers_are_analysed_once(
    db: Database, db_url: str
) -> None:
    trader = f.trader(db, interval="1m")
    for _ in range(MONITORS):
        signal = f.signal(db, trader)
        db.call("register_setup_monitoring", analysis_id=f.analysis(db, signal), max_reanalyses=5)
    c = candle()
    queue = CollectingQueue()
    metrics = InMemoryMetrics()
    fanned = fan_out(
        c,
        repo=PostgresRepository(db),
        queue=queue,
        metrics=metrics,
        clock=lambda: datetime.now(UTC),
        stale_intervals=2,
    )
    assert fanned.jobs_sent == MONITORS
    deliveries = queue.jobs * 2  # SQS at least once: each job arrives twice, in any order
    random.Random(7).shuffle(deliveries)

    local = threading.local()
    opened: list[tuple[Database, HttpLlmProxy]] = []
    lock = threading.Lock()
    start = threading.Barrier(WORKERS)

    with StubLlmProxy() as llm:
        llm.configure(latency_ms=30)
        settings = Settings(llm_proxy_url=llm.url, llm_proxy_max_attempts=1, llm_proxy_timeout_s=10)

        def worker_parts() -> tuple[PostgresRepository, HttpLlmProxy]:
            if not hasattr(local, "parts"):
                database = Database(db_url, application_name=f"worker-{threading.get_ident()}")
                client = HttpLlmProxy.from_settings(settings)
                with lock:
                    opened.append((database, client))
                local.parts = (PostgresRepository(database), client)
                start.wait(timeout=30)  # every worker is up before the first job runs
            parts: tuple[PostgresRepository, HttpLlmProxy] = local.parts
            return parts

        def deliver(job: AnalysisJob) -> JobOutcome:
            repo, client = worker_parts()
            return process_setup_job(job, repo=repo, llm=client, metrics=metrics, config=WorkerConfig())

        try:
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                futures = [pool.submit(deliver, job) for job in deliveries]
                outcomes = [future.result(timeout=120) for future in futures]  # no deadlock
        finally:
            for database, client in opened:
                client.close()
                database.close()
        llm_calls = [call for call in llm.calls if call.path == "/analyze-signal"]

    assert len(opened) == WORKERS  # ten workers, ten connections
    statuses = Counter(o.status for o in outcomes)
    assert statuses == {"done": MONITORS, "skipped": MONITORS}
    done = [o.workflow_id for o in outcomes if o.status == "done"]
    assert len(set(done)) == MONITORS  # every workflow won exactly one claim
    assert len(llm_calls) == MONITORS
    rows = db.fetch_all(
        "select signal_id, count(*) as n from public.signal_analyses where candle_time = %(t)s group by 1",
        {"t": c.close_time},
    )
    assert len(rows) == MONITORS and {r["n"] for r in rows} == {1}
    claimed = db.fetch_one(
        "select count(*) as n from public.workflow_schedules where last_candle_time = %(t)s",
        {"t": c.close_time},
    )
    assert claimed == {"n": MONITORS}
    assert metrics.counts.get("DuplicateCandlesProcessed", 0) == 0
