"""Benchmark: a burst of concurrent Supabase webhooks into the real API over HTTP.

Run: `.venv/bin/python -m bench.bench_webhooks` (add `--burst 200 --bursts 3`).

pg_net sends up to 200 requests at once and gives up after the trigger's timeout, never
retrying. This starts what `cmon local` starts -- an embedded, migrated Postgres, moto
(SQS), the real FastAPI app under uvicorn on loopback -- creates fresh rows, and POSTs
one burst of exact webhook bodies (built by Postgres with the expression of
`supabase_functions.http_request`): half `signal_analyses` INSERTs of `wait` analyses
(each registers setup monitoring), half `signals` INSERTs of auto-analysing traders
(each queues an initial analysis on SQS). All requests of a burst start together; the
latency of each is from its send to its answer. Prints p50/p95/p99/max and errors, and
the CPU time this process used per burst: on a busy shared machine the wall times
mostly measure the wait for a core, the CPU time what a quiet one would need.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import psycopg

SECRET = "bench-webhook-secret"  # noqa: S105 - a local, throw-away stack


def _rows(database_url: str, n: int, mix: str = "both") -> list[bytes]:
    """n webhook bodies for fresh rows: n//2 `wait` analyses, the rest new signals
    (`mix`: only one kind)."""
    n_waits = {"both": n // 2, "waits": n, "signals": 0}[mix]
    user, trader = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        conn.execute("insert into public.user_profiles (id, subscription_tier) values (%s, 'elite')", (user,))
        conn.execute(
            "insert into public.traders (id, user_id, auto_analyze_signals, filter) "
            'values (%s, %s, true, \'{"interval": "1m"}\')',
            (trader, user),
        )
        waits = conn.execute(
            """
            with s as (
                insert into public.signals (trader_id, symbol, status)
                select %s, 'BTCUSDT', 'new' from generate_series(1, %s) returning id
            ), a as (
                insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type)
                select id, 'wait', 0.5, 'bench', 'initial' from s returning *
            )
            select jsonb_build_object('old_record', null, 'record', to_jsonb(a), 'type', 'INSERT',
                                      'table', 'signal_analyses', 'schema', 'public')::text from a
            """,
            (trader, n_waits),
        ).fetchall()
        signals = conn.execute(
            """
            with s as (
                insert into public.signals (trader_id, symbol, status)
                select %s, 'ETHUSDT', 'new' from generate_series(1, %s) returning *
            )
            select jsonb_build_object('old_record', null, 'record', to_jsonb(s), 'type', 'INSERT',
                                      'table', 'signals', 'schema', 'public')::text from s
            """,
            (trader, n - n_waits),
        ).fetchall()
    return [r[0].encode() for r in waits + signals]


async def _post(host: str, port: int, request: bytes, timeout_s: float) -> int:
    """One POST on a new connection, as pg_net's libcurl sends it; returns the status.

    Raw asyncio streams, not an HTTP client library: pg_net's side of a burst costs next
    to nothing (C, in Postgres), so ours must not either, or the bench measures itself."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await asyncio.wait_for(reader.readexactly(length), timeout_s)
        return status
    finally:
        writer.close()


async def _burst(url: str, bodies: list[bytes], timeout_s: float) -> tuple[list[float], dict[str, int]]:
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    requests = [
        (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"x-supabase-webhook-source: {SECRET}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    errors: dict[str, int] = {}
    latencies: list[float] = []
    start = asyncio.Event()

    async def one(request: bytes) -> None:
        await start.wait()
        t0 = time.perf_counter()
        try:
            status = await _post(host, port, request, timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1

    tasks = [asyncio.create_task(one(r)) for r in requests]
    await asyncio.sleep(0.05)  # every task is waiting on the event
    start.set()
    await asyncio.gather(*tasks)
    return latencies, errors


# A fresh interpreter, as a new Lambda environment: import the API handler, then answer
# one webhook (container built, settings read, first Postgres connection) through Mangum.
_COLD = """
import json, sys, time
t0 = time.perf_counter()
from functions.handlers import api
t1 = time.perf_counter()
event = json.loads(open(sys.argv[1]).read())
event.update(rawPath="/webhooks/supabase", routeKey="POST /webhooks/supabase", rawQueryString="",
             cookies=[], queryStringParameters={}, body=sys.argv[2], isBase64Encoded=False)
event["headers"] = {"content-type": "application/json", "x-supabase-webhook-source": sys.argv[3]}
event["requestContext"]["http"].update(method="POST", path="/webhooks/supabase")
response = api.handler(event, None)
t2 = time.perf_counter()
response2 = api.handler(event, None)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_s": t2 - t1, "second_s": t3 - t2,
                  "status": [response["statusCode"], response2["statusCode"]]}))
"""


def _cold_starts(runs: int) -> None:
    """Import and first-request time of the API function in fresh interpreters."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from functions.adapters.migrations import migrate
    from functions.local.embedded_db import EmbeddedPostgres

    event = (
        Path(__file__).resolve().parents[1]
        / "tests"
        / "events"
        / "aws"
        / "powertools_apiGatewayProxyV2Event.json"
    )
    with EmbeddedPostgres() as server:
        migrate(server.url)
        env = {**os.environ, "DATABASE_URL": server.url, "WEBHOOK_SECRET": SECRET, "STAGE": "dev"}
        print(f"API function cold start, {runs} fresh interpreters (import, first webhook, second webhook):")
        for _ in range(runs):
            body = _rows(server.url, 2, "waits")[0].decode()
            out = (
                subprocess.run(
                    [sys.executable, "-c", _COLD, str(event), body, SECRET],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(
                f"  import {r['import_s'] * 1000:.0f} ms, first request {r['first_s'] * 1000:.0f} ms, "
                f"second {r['second_s'] * 1000:.0f} ms, status {r['status']}"
            )


def _client(url: str, bodies_path: str, timeout_s: float) -> None:
    """Child process: send one burst, print latencies, errors and the client's own CPU."""
    import json

    with open(bodies_path, encoding="utf-8") as file:
        bodies = [line.encode() for line in file.read().splitlines()]
    t0, cpu0 = time.perf_counter(), time.process_time()
    latencies, errors = asyncio.run(_burst(url, bodies, timeout_s))
    print(
        json.dumps(
            {
                "latencies": latencies,
                "errors": errors,
                "wall_s": time.perf_counter() - t0,
                "client_cpu_s": time.process_time() - cpu0,
            }
        )
    )


def _burst_from_another_process(url: str, bodies: list[bytes], timeout_s: float) -> dict[str, Any]:
    """pg_net is Postgres's background worker, not a thread of our API: the burst comes from
    its own process, so its HTTP client's CPU does not count against the server."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as file:
        file.write("\n".join(body.decode() for body in bodies))
        file.flush()
        code = f"from bench.bench_webhooks import _client; _client({url!r}, {file.name!r}, {timeout_s!r})"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _cpu_of_tree(root_pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children (Linux /proc; 0
    elsewhere): the Postgres postmaster and its backends, or moto's process."""
    if not os.path.isdir("/proc"):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if int(entry) == root_pid or int(fields[1]) == root_pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        return int(file.read().rsplit(")", 1)[1].split()[1])


def _drain(sqs: Any, url: str) -> int:
    """Receive and delete everything on the queue (what the runner does with each job)."""
    drained = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        drained += len(messages)
    return drained


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_webhooks", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=200, help="concurrent webhooks per burst (pg_net: 200)")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--mix", choices=["both", "waits", "signals"], default="both")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="client timeout (the trigger's)")
    parser.add_argument(
        "--cold-starts", type=int, default=0, metavar="N", help="measure N API cold starts instead of bursts"
    )
    args = parser.parse_args(argv)
    if args.cold_starts:
        _cold_starts(args.cold_starts)
        return 0

    import logging
    from contextlib import ExitStack

    from functions.local.api_server import ApiServer
    from functions.local.stack import handler_logs, local_services

    with ExitStack() as stack:
        stack.enter_context(handler_logs(logging.WARNING))  # one log line per webhook is not the point
        s = stack.enter_context(
            local_services(database_url=None, llm_proxy_url=None, webhook_secret=SECRET, admin_api_key="x")
        )
        api = ApiServer("127.0.0.1", 0)
        api.start()
        try:
            url = f"{api.url}/webhooks/supabase"
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            )
            print(
                f"burst of {args.burst} concurrent webhooks (half wait analyses, half signals), loopback HTTP"
            )
            # Warm-up, not counted: every API thread opens its connection and its backend
            # parses the SQL functions once (a server in use is warm; ~20 ms each cold).
            asyncio.run(_burst(url, _rows(s.database_url, args.burst, args.mix), args.timeout_s))
            postmaster = 0
            with psycopg.connect(s.database_url) as conn:  # a backend's parent is the postmaster
                row = conn.execute("select pg_backend_pid()").fetchone()
                if row and os.path.isdir("/proc"):
                    postmaster = _parent_pid(int(row[0]))
            moto_pid = s.moto_pid or 0
            every: list[float] = []
            for i in range(args.bursts):
                bodies = _rows(s.database_url, args.burst, args.mix)
                # `cmon local`'s runner drains the queue as jobs arrive; here nothing
                # does, and moto's SendMessage costs O(messages queued) (it recounts the
                # queue's attributes per message), so empty it as the runner would have.
                _drain(s.sqs, s.aws.setup_queue_url)
                cpu0, pg0, moto0 = time.process_time(), _cpu_of_tree(postmaster), _cpu_of_tree(moto_pid)
                result = _burst_from_another_process(url, bodies, args.timeout_s)
                cpu = time.process_time() - cpu0
                pg_cpu, moto_cpu = _cpu_of_tree(postmaster) - pg0, _cpu_of_tree(moto_pid) - moto0
                latencies, errors, wall = result["latencies"], result["errors"], result["wall_s"]
                every += latencies
                print(
                    f"burst {i + 1}: p50 {_pct(latencies, 0.5) * 1000:.0f} ms, "
                    f"p95 {_pct(latencies, 0.95) * 1000:.0f} ms, "
                    f"p99 {_pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
                    f"all answered in {wall:.2f} s, errors {sum(errors.values())} {errors or ''}; "
                    f"CPU: cmon local's process {cpu:.2f} s, Postgres {pg_cpu:.2f} s, moto {moto_cpu:.2f} s, "
                    f"the client {result['client_cpu_s']:.2f} s"
                )
            print(f"API database connections used: {getattr(s.db, 'connections', 1)}")
            print(
                f"all {len(every)}: p50 {statistics.median(every) * 1000:.0f} ms, "
                f"p95 {_pct(every, 0.95) * 1000:.0f} ms, p99 {_pct(every, 0.99) * 1000:.0f} ms"
            )
        finally:
            api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
