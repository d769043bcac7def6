"""The claim under real concurrency: several workers, each with its own database
connection and its own llm-proxy client, released together on the same (workflow,
candle), round after round. Exactly one of them may call the LLM and record.

Checked against a scratch copy of the migrations with the row lock (`for update` in
`claim_candle`) removed: two workers then both claim the same candle within a few
rounds, both pay for an LLM call, and this test fails.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from functions.adapters.aws import InMemoryMetrics
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.postgres import Database
from functions.adapters.repository import PostgresRepository
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.handlers import wiring
from functions.services.analyse_setup import process_setup_job
from functions.services.jobs import JobOutcome, WorkerConfig
from functions.services.manage_position import process_position_job
from tests.support import factories as f
from tests.support.stack import Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")

WORKERS = 3
ROUNDS = 30


@dataclass
class Worker:
    db: Database
    llm: HttpLlmProxy
    metrics: InMemoryMetrics


def race(
    s: Stack, db_url: str, job_for: Callable[[CandleClosed], AnalysisJob], process: Callable[..., JobOutcome]
) -> list[list[JobOutcome]]:
    """ROUNDS candles, each processed by WORKERS threads released by one barrier."""
    workers = [
        Worker(Database(db_url), HttpLlmProxy.from_settings(s.settings), InMemoryMetrics())
        for _ in range(WORKERS)
    ]
    for w in workers:
        w.db.fetch_one("select 1")  # connected before the first race
    barrier = threading.Barrier(WORKERS)
    worker_config = wiring.container().worker_config  # the settings the stack's handlers use
    rounds: list[list[JobOutcome]] = []
    c = candle()
    try:
        for _ in range(ROUNDS):
            rounds.append(one_round(workers, barrier, job_for(c), process, worker_config))
            c = next_candle(c)
    finally:
        for w in workers:
            w.llm.close()
            w.db.close()
    return rounds


def one_round(
    workers: list[Worker],
    barrier: threading.Barrier,
    job: AnalysisJob,
    process: Callable[..., JobOutcome],
    config: WorkerConfig,
) -> list[JobOutcome]:
    outcomes: list[JobOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(w: Worker) -> None:
        try:
            barrier.wait()
            out = process(job, repo=PostgresRepository(w.db), llm=w.llm, metrics=w.metrics, config=config)
            with lock:
                outcomes.append(out)
        except BaseException as exc:  # reported by the assertion below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return outcomes


def assert_one_winner_per_round(s: Stack, rounds: list[list[JobOutcome]], path: str) -> None:
    for outcomes in rounds:
        assert sorted(o.status for o in outcomes) == ["done"] + ["skipped"] * (WORKERS - 1)
        assert sorted(o.detail for o in outcomes if o.status == "skipped") == ["duplicate"] * (WORKERS - 1)
    keys = Counter(c.idempotency_key for c in s.llm.calls if c.path == path)
    assert len(keys) == ROUNDS
    assert set(keys.values()) == {1}  # one LLM call per candle, never two


def test_two_workers_on_the_same_job_make_one_analysis(db_url: str) -> None:
    with running_stack(db_url, max_reanalyses=ROUNDS + 5) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader)
        registered = s.db.call(
            "register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=ROUNDS + 5
        )
        workflow = registered["workflow_id"]

        def job(c: CandleClosed) -> AnalysisJob:
            return AnalysisJob(
                kind=JobKind.CANDLE,
                workflow_id=workflow,
                workflow_type=WorkflowType.SETUP_MONITORING,
                candle=c,
            )

        rounds = race(s, db_url, job, process_setup_job)
        assert_one_winner_per_round(s, rounds, "/analyze-signal")
        per_candle = s.db.fetch_all(
            "select candle_time, count(*) as n from public.signal_analyses"
            " where signal_id = %(s)s and analysis_type = 'monitoring' group by candle_time",
            {"s": signal},
        )
        assert len(per_candle) == ROUNDS
        assert {r["n"] for r in per_candle} == {1}
        assert f.workflow(s.db, workflow)["reanalysis_count"] == ROUNDS


def test_racing_position_workers_make_one_decision_per_candle(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        position = f.position(s.db, trader)
        workflow = s.db.call("register_position_management", position_id=position, check_gate=True)[
            "workflow_id"
        ]

        def job(c: CandleClosed) -> AnalysisJob:
            return AnalysisJob(
                kind=JobKind.CANDLE,
                workflow_id=workflow,
                workflow_type=WorkflowType.POSITION_MANAGEMENT,
                candle=c,
            )

        rounds = race(s, db_url, job, process_position_job)
        assert_one_winner_per_round(s, rounds, "/manage-position")
        per_candle = s.db.fetch_all(
            "select candle_time, count(*) as n from public.management_decisions"
            " where position_id = %(p)s group by candle_time",
            {"p": position},
        )
        assert len(per_candle) == ROUNDS
        assert {r["n"] for r in per_candle} == {1}
