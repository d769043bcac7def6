"""Benchmark: a job's prompt context, one SQL function call against the four reads it replaced.

Run: `.venv/bin/python -m bench.bench_context` (add `--reads 500`, `--history 50`,
`--rtt-ms 1` to put a network between client and server).

On a real (embedded) Postgres with the golden test's rows (`tests/support/context_rows`),
plus `--history` more analyses and decisions so the history query has rows to skip:
each context is read `--reads` times through `PostgresContexts` (one `Database.call`)
and through the old reads (four statements in four transactions), counting statements
and timing each read. Over a Unix socket the round trip is nearly free, so the time saved
there is a floor: against Supabase each statement saved is a network round trip (and, on
the transaction pooler, a pooled transaction) too. `--rtt-ms` measures that: the client
then connects over loopback TCP through a relay that holds every chunk for half the
round trip in each direction (a stand-in for the Lambda-to-database network).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit
from uuid import UUID

from functions.adapters.contexts import PostgresContexts
from functions.adapters.migrations import migrate
from functions.adapters.postgres import Database
from functions.local.embedded_db import EmbeddedPostgres
from tests.support.context_rows import SIGNAL, T0, legacy_position_context, legacy_setup_context, seed


class _CountingDatabase(Database):
    """Counts the statements run (each one a round trip to the server)."""

    statements = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as conn:
            owner = self

            class _Counted:
                def execute(self, query: Any, params: Any = None) -> Any:
                    owner.statements += 1
                    return conn.execute(query, params)

            yield _Counted()


class _DelayRelay:
    """Loopback TCP → the server's Unix socket, each chunk held `rtt_ms / 2` each way."""

    def __init__(self, unix_path: str, rtt_ms: float) -> None:
        self._unix_path = unix_path
        self._delay_s = rtt_ms / 2000
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self._unix_path)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(self._delay_s)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            target.close()

    def close(self) -> None:
        self._listener.close()


def _over_tcp(url: str, port: int) -> str:
    """The same database through the relay on 127.0.0.1:`port`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{port}", query=""))


def _unix_socket(url: str) -> str:
    host = parse_qs(urlsplit(url).query)["host"][0]
    return os.path.join(host, ".s.PGSQL.5432")


def _more_history(db: Database, position_wf: UUID, rows: int) -> None:
    for i in range(rows):
        at = T0 + timedelta(days=1, minutes=i)
        db.fetch_one(
            "insert into public.signal_analyses (signal_id, decision, confidence, analysis_type, candle_time,"
            " created_at) values (%(s)s, 'wait', 0.5, 'monitoring', %(at)s, %(at)s) returning id",
            {"s": SIGNAL, "at": at},
        )
        db.fetch_one(
            "insert into public.management_decisions (position_id, candle_time, action, status, price)"
            " select w.position_id, %(at)s, 'hold', 'applied', 64000 from public.workflow_schedules w"
            " where w.id = %(w)s returning id",
            {"w": position_wf, "at": at},
        )


def _time(db: _CountingDatabase, read: Callable[[], object], reads: int) -> dict[str, float]:
    read()  # warm the connection and the plans
    db.statements = 0
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        read()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "statements": db.statements / reads,
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=500, help="reads per context and path")
    parser.add_argument("--history", type=int, default=50, help="extra analyses and decisions")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="network round trip to emulate (0: none)")
    args = parser.parse_args(argv)
    with EmbeddedPostgres() as server:
        url = server.database_url("bench_context")
        with server_db(server, "bench_context"):
            migrate(url)
            rows_db = Database(url)
            try:
                setup_wf, position_wf = seed(rows_db)
                _more_history(rows_db, position_wf, args.history)
            finally:
                rows_db.close()
            relay = _DelayRelay(_unix_socket(url), args.rtt_ms) if args.rtt_ms > 0 else None
            db = _CountingDatabase(url if relay is None else _over_tcp(url, relay.port))
            try:
                new = PostgresContexts(db)
                rows = [
                    (
                        "setup",
                        "one call",
                        _time(db, lambda: new.setup_context(workflow_id=setup_wf), args.reads),
                    ),
                    (
                        "setup",
                        "four reads (before)",
                        _time(db, lambda: legacy_setup_context(db, workflow_id=setup_wf), args.reads),
                    ),
                    (
                        "position",
                        "one call",
                        _time(db, lambda: new.position_context(position_wf), args.reads),
                    ),
                    (
                        "position",
                        "two reads (before)",
                        _time(db, lambda: legacy_position_context(db, position_wf), args.reads),
                    ),
                ]
            finally:
                db.close()
                if relay is not None:
                    relay.close()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}"
    )
    print(
        f"{args.reads} reads each, {args.history} extra history rows, embedded Postgres over "
        + (f"loopback TCP with a {args.rtt_ms:g} ms round trip\n" if args.rtt_ms > 0 else "a Unix socket\n")
    )
    print("| context | path | statements | median | p95 |")
    print("|---|---|---:|---:|---:|")
    for kind, path, r in rows:
        print(f"| {kind} | {path} | {r['statements']:g} | {r['median_ms']:.2f} ms | {r['p95_ms']:.2f} ms |")
    return 0


@contextmanager
def server_db(server: EmbeddedPostgres, name: str) -> Iterator[None]:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    raise SystemExit(main())
