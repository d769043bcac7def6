"""Benchmark: fan-out cost per workflow, and the non-LLM overhead of one analysis.

Run: `.venv/bin/python -m bench.bench_workflows` (add `--sizes 1000 10000 --jobs 200`).

- Fan-out: N active workflows on one stream in a real (embedded) Postgres; one candle is
  fanned out through the real service and `SqsJobQueue` with a stub SQS client that
  accepts every batch instantly, so the time is our code: the SQL query, building and
  serialising the jobs, batching by 10 and the thread pool.
- Analysis overhead: one setup-analysis job end to end (claim, load context, record +
  apply) with an LLM that answers instantly, in-process; then the same through the real
  httpx client and the stub llm-proxy over loopback HTTP with zero latency. What remains
  is the cost we add around the LLM.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from functions.adapters.aws import InMemoryMetrics, SqsJobQueue
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.migrations import migrate
from functions.adapters.postgres import Database
from functions.adapters.repository import PostgresRepository
from functions.core import intervals
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.core.models import Decision, LlmResult, SetupAnswer
from functions.local.embedded_db import EmbeddedPostgres
from functions.local.stub_llm import StubLlmProxy
from functions.services.analyse_setup import process_setup_job
from functions.services.fan_out import fan_out
from functions.services.jobs import WorkerConfig


class _AcceptAllSqs:
    def __init__(self) -> None:
        self.messages = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.messages += len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


class _InstantLlm:
    def analyze_signal(
        self, request: Any, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        return LlmResult(answer=SetupAnswer(decision=Decision.WAIT, confidence=0.5), latency_ms=0)

    def manage_position(
        self, request: Any, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        raise NotImplementedError("setup jobs only")


def _candle(close_time: datetime, symbol: str = "BTCUSDT") -> CandleClosed:
    open_ms = intervals.to_ms(close_time) + 1 - 60_000
    return CandleClosed(
        symbol=symbol,
        interval="1m",
        open_time=intervals.from_ms(open_ms),
        close_time=close_time,
        open=Decimal("64210.1"),
        high=Decimal("64250"),
        low=Decimal("64190"),
        close=Decimal("64231.5"),
        volume=Decimal("12.3"),
        trades=812,
    )


def _seed(db: Database, n: int, symbol: str = "BTCUSDT", per_user: int = 10) -> list[uuid.UUID]:
    """N waiting signals on `symbol`, each with a registered setup workflow, in bulk SQL,
    `per_user` to a user (a busy trader: the claim's token-cap check reads the user's
    own day in the ledger, so one user holding all N would measure an account no one has)."""
    users = max(1, math.ceil(n / per_user))
    with db.transaction() as conn:
        row = conn.execute(
            """
            with u as (
                insert into public.user_profiles (id, subscription_tier)
                select gen_random_uuid(), 'elite' from generate_series(1, %(users)s) returning id
            ), t as (
                insert into public.traders (user_id, filter)
                select id, '{"interval":"1m"}' from u returning id
            )
            select array_agg(id) as traders from t
            """,
            {"users": users},
        ).fetchone()
        assert row is not None
        traders = row["traders"]
        conn.execute(
            "insert into public.signals (trader_id, symbol)"
            " select (%(traders)s::uuid[])[1 + g %% %(users)s], %(symbol)s"
            " from generate_series(0, %(n)s - 1) g",
            {"traders": traders, "users": users, "symbol": symbol, "n": n},
        )
        conn.execute(
            "insert into public.signal_analyses (signal_id, decision, analysis_type)"
            " select s.id, 'wait', 'initial' from public.signals s where s.trader_id = any(%(traders)s)",
            {"traders": traders},
        )
        conn.execute(
            "select public.register_setup_monitoring(a.id, 1000000) from public.signal_analyses a"
            " join public.signals s on s.id = a.signal_id where s.trader_id = any(%(traders)s)",
            {"traders": traders},
        )
        rows = conn.execute(
            "select id from public.workflow_schedules where trader_id = any(%(traders)s) order by created_at",
            {"traders": traders},
        ).fetchall()
    return [r["id"] for r in rows]


def bench_fanout(admin: EmbeddedPostgres, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    results = []
    for n in sizes:
        url = admin.create_database(f"bench_fanout_{n}")
        migrate(url)
        db = Database(url)
        _seed(db, n)
        repo = PostgresRepository(db)
        sqs = _AcceptAllSqs()
        queue = SqsJobQueue(sqs, setup_queue_url="setup", position_queue_url="position")
        timings = []
        start = datetime(2025, 10, 25, 10, 0, 59, 999000, tzinfo=UTC)
        for i in range(repeats):
            candle = _candle(start + timedelta(minutes=i))
            now = candle.close_time
            t0 = time.perf_counter()
            result = fan_out(
                candle,
                repo=repo,
                queue=queue,
                metrics=InMemoryMetrics(),
                clock=lambda: now,  # noqa: B023 - called before the loop moves on
                stale_intervals=2,
            )
            timings.append(time.perf_counter() - t0)
            assert result.jobs_sent == n
        median = statistics.median(timings)
        results.append(
            {
                "workflows": n,
                "median_ms": median * 1000,
                "per_workflow_us": median / n * 1e6,
                "jobs_per_s": n / median,
                "messages": sqs.messages,
            }
        )
        db.close()
    return results


def bench_analysis(admin: EmbeddedPostgres, jobs: int) -> list[dict[str, Any]]:
    url = admin.create_database("bench_analysis")
    migrate(url)
    db = Database(url)
    workflows = _seed(db, jobs)
    repo = PostgresRepository(db)
    config = WorkerConfig(max_reanalyses=1_000_000)
    rows = []
    with StubLlmProxy() as stub:
        http_llm = HttpLlmProxy(stub.url, "bench-key", max_attempts=1)
        for label, llm in (
            ("in-process LLM (0 ms)", _InstantLlm()),
            ("stub llm-proxy over HTTP (0 ms)", http_llm),
        ):
            candle = _candle(
                datetime(2025, 10, 25, 10, 0, 59, 999000, tzinfo=UTC)
                + timedelta(minutes=1 if label.startswith("in") else 2)
            )
            timings = []
            for wf in workflows:
                job = AnalysisJob(
                    kind=JobKind.CANDLE,
                    workflow_id=wf,
                    workflow_type=WorkflowType.SETUP_MONITORING,
                    candle=candle,
                )
                t0 = time.perf_counter()
                outcome = process_setup_job(job, repo=repo, llm=llm, metrics=InMemoryMetrics(), config=config)
                timings.append(time.perf_counter() - t0)
                assert outcome.status == "done", outcome
            timings.sort()
            rows.append(
                {
                    "path": label,
                    "jobs": len(timings),
                    "median_ms": statistics.median(timings) * 1000,
                    "p95_ms": timings[int(len(timings) * 0.95) - 1] * 1000,
                }
            )
        http_llm.close()
    db.close()
    return rows


def _machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, Postgres (embedded, unix socket)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=5, help="fan-outs per size (median reported)")
    parser.add_argument("--jobs", type=int, default=200, help="analysis jobs per path")
    args = parser.parse_args(argv)
    print(f"machine: {_machine()}\n")
    with EmbeddedPostgres() as admin:
        fan = bench_fanout(admin, args.sizes, args.repeats)
        print("fan-out of one candle (SQS stubbed)")
        print(f"{'workflows':>10} {'median ms':>10} {'us/workflow':>12} {'jobs/s':>10}")
        for r in fan:
            row = (r["workflows"], r["median_ms"], r["per_workflow_us"], r["jobs_per_s"])
            print("{:>10} {:>10.1f} {:>12.1f} {:>10.0f}".format(*row))
        analysis = bench_analysis(admin, args.jobs)
        print("\nnon-LLM overhead of one setup analysis (claim + context + record/apply)")
        print(f"{'path':<34} {'jobs':>5} {'median ms':>10} {'p95 ms':>8}")
        for r in analysis:
            print(f"{r['path']:<34} {r['jobs']:>5} {r['median_ms']:>10.2f} {r['p95_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
