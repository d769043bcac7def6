"""schemathesis against the API's own OpenAPI, served by uvicorn over a migrated Postgres.

    python -m tests.support.api_fuzz [--max-examples N]        # what .ci/schemathesis.sh runs

Two runs against one server that has the secrets configured: one that sends them (every
check, zero failures allowed) and one that does not (every answer must be a 401 and not
one row of any table may change: the row counts of every `public` table are compared).
The suite runs the same function with a handful of examples (tests/functional/test_openapi_fuzz.py).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fuzz-secret-0123456789"


@dataclass(frozen=True)
class FuzzRun:
    name: str
    returncode: int
    output: str
    counts_before: dict[str, str]
    counts_after: dict[str, str]


def row_counts(database_url: str) -> dict[str, str]:
    """Row count and a digest of the contents of every `public` table (so updates show too)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = 'public' and table_type = 'BASE TABLE' order by 1"
            )
        ]
        counts: dict[str, str] = {}
        for table in tables:
            row = conn.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, ',' order by t::text), ''))"
                f' from public."{table}" t'
            ).fetchone()
            counts[table] = f"{row[0]} rows, md5 {row[1]}" if row else "?"
        return counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(database_url: str) -> Iterator[str]:
    """`uvicorn functions.handlers.api:app` in its own process, with the production wiring."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEBHOOK_SECRET": SECRET,
        "ADMIN_API_KEY": SECRET,
        "STAGE": "local",
        "POWERTOOLS_METRICS_NAMESPACE": "Cmon",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for key in ("SETUP_QUEUE_URL", "POSITION_QUEUE_URL"):
        env.pop(key, None)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "functions.handlers.api:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"API did not start: {log.read().decode(errors='replace')}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def schemathesis(
    url: str, *, with_secrets: bool, max_examples: int, phases: str, seed: int = 15
) -> tuple[int, str]:
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--phases",
        phases,
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--no-color",
        "--suppress-health-check",
        "all",
    ]
    if with_secrets:
        cmd += ["-H", f"Authorization: Bearer {SECRET}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=600)
    return done.returncode, done.stdout + done.stderr


def seed(database_url: str) -> None:
    """One workflow of each kind, so that the listing's answers are checked on real rows."""
    from functions.adapters.postgres import Database
    from tests.support import factories as f

    db = Database(database_url)
    try:
        trader = f.trader(db)
        analysis = f.analysis(db, f.signal(db, trader), "wait")
        db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=5)
        db.call("register_position_management", position_id=f.position(db, trader))
    finally:
        db.close()


def run(
    database_url: str, *, max_examples: int, phases: str = "examples,coverage,fuzzing,stateful"
) -> list[FuzzRun]:
    runs: list[FuzzRun] = []
    seed(database_url)
    with api_server(database_url) as url:
        for name, with_secrets in (("without secrets", False), ("with secrets", True)):
            before = row_counts(database_url)
            code, output = schemathesis(
                url, with_secrets=with_secrets, max_examples=max_examples, phases=phases
            )
            runs.append(FuzzRun(name, code, output, before, row_counts(database_url)))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--database-url", help="a migrated database (default: an embedded one)")
    args = parser.parse_args(argv)

    from functions.adapters.migrations import migrate
    from functions.local.embedded_db import EmbeddedPostgres

    def report(runs: list[FuzzRun]) -> int:
        failed = 0
        for r in runs:
            print(f"== schemathesis {r.name}: exit {r.returncode}")
            print(r.output[-6000:])
            if r.returncode != 0:
                failed += 1
        unauth = runs[0]
        if unauth.counts_before != unauth.counts_after:
            print(f"rows changed without the secrets: {unauth.counts_before} -> {unauth.counts_after}")
            failed += 1
        return 1 if failed else 0

    if args.database_url:
        return report(run(args.database_url, max_examples=args.max_examples))
    with EmbeddedPostgres() as server:
        url = server.create_database("cmon_fuzz")
        migrate(url)
        return report(run(url, max_examples=args.max_examples))


if __name__ == "__main__":
    raise SystemExit(main())
