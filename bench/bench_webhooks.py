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

import httpx
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


async def _burst(url: str, bodies: list[bytes], timeout_s: float) -> tuple[list[float], dict[str, int]]:
    headers = {"Content-type": "application/json", "x-supabase-webhook-source": SECRET}
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    errors: dict[str, int] = {}
    latencies: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        start = asyncio.Event()

        async def one(body: bytes) -> None:
            await start.wait()
            t0 = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                errors[f"HTTP {response.status_code}"] = errors.get(f"HTTP {response.status_code}", 0) + 1

        tasks = [asyncio.create_task(one(b)) for b in bodies]
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
            asyncio.run(_burst(url, _rows(s.database_url, 20), args.timeout_s))  # warm-up, not counted
            every: list[float] = []
            for i in range(args.bursts):
                bodies = _rows(s.database_url, args.burst, args.mix)
                t0, cpu0 = time.perf_counter(), time.process_time()
                latencies, errors = asyncio.run(_burst(url, bodies, args.timeout_s))
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                every += latencies
                print(
                    f"burst {i + 1}: p50 {_pct(latencies, 0.5) * 1000:.0f} ms, "
                    f"p95 {_pct(latencies, 0.95) * 1000:.0f} ms, "
                    f"p99 {_pct(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
                    f"all answered in {wall:.2f} s, errors {sum(errors.values())} {errors or ''}; "
                    f"CPU of this process (client, API, moto) {cpu:.2f} s"
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
