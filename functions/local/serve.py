"""`cmon local`: the whole serverless stack on one machine, until Ctrl-C.

What runs, and what it stands in for:
- Postgres: an embedded server (or `--database-url` / `DATABASE_URL`), migrated on start;
- the API Lambda: the real FastAPI `app` under uvicorn on localhost;
- Supabase database webhooks: a LISTEN/NOTIFY relay (`relay.py`) that POSTs the exact
  webhook body to the API after COMMIT, as pg_net does;
- EventBridge and SQS: moto's server, in a child process, with the template's bus, rule, queues
  and DLQs; the trigger runner plays the event-source mappings and calls the real
  fan-out and worker handlers with real event shapes;
- the reconciler schedule: the real handler, every `--reconcile-every` seconds;
- the feed: `feed_service`'s own `FeedApp` (live Binance by default, or the simulator,
  or a replay) publishing through its real `EventBridgePublisher` to the moto bus;
- llm-proxy: the loopback stub (scriptable over HTTP), or `--llm-proxy-url`; with
  `--llm-transport edge` (or `LLM_PROXY_TRANSPORT=edge`) it is called as a Supabase Edge
  Function through the `supabase` functions client: the stub serves that layout too, or
  a real project when `SUPABASE_URL` and `SUPABASE_KEY` are set.

This module is the command only (arguments, the loops, the banner); the stack itself is
`stack.local_services()`, shared with `cmon demo`, `cmon replay` and the e2e tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING, Any

from functions.local.api_server import ApiServer
from functions.local.console import Console, EventLines
from functions.local.serve_options import (
    LOCAL_ADMIN_KEY,
    LOCAL_WEBHOOK_SECRET,
    add_arguments,
    llm_transport_options,
)
from functions.local.stack import Services, handler_logs, local_services

__all__ = ["add_arguments", "llm_transport_options", "run"]  # the `cmon local` command

if TYPE_CHECKING:
    from feed_service.app import FeedApp
    from functions.local.relay import Delivery

log = logging.getLogger(__name__)


def _loop(name: str, halt: threading.Event, step: Callable[[], int], idle_s: float) -> threading.Thread:
    """A thread that calls `step` until `halt`; sleeps `idle_s` when it moved nothing.
    An exception is logged and retried after a second: one bad event must not stop the
    local stack (in AWS the message would be redelivered, then sent to its DLQ)."""

    def body() -> None:
        while not halt.is_set():
            try:
                moved = step()
            except Exception:
                log.exception("%s failed; retrying", name)
                halt.wait(1.0)
                continue
            if moved == 0:
                halt.wait(idle_s)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


def _feed(args: argparse.Namespace, services: Services, verbose: bool) -> FeedApp:
    """The feed as `cmon feed` builds it, publishing to the moto bus."""
    import boto3

    from feed_service.app import FeedApp, parse_market_option
    from feed_service.metrics import FeedMetrics
    from feed_service.publisher import EventBridgePublisher
    from feed_service.settings import FeedSettings
    from functions.local.aws_stack import REGION

    mode, market, replay = parse_market_option(args.market)
    overrides: dict[str, Any] = {"binance_market": market} if market else {}
    settings = FeedSettings(
        feed_streams=args.streams, database_url=services.database_url,
        event_bus_name=services.aws.bus_name, stage="local", feed_health_port=-1, **overrides,
    )  # fmt: skip
    metrics = FeedMetrics("local", out=sys.stderr if verbose else None)
    client = boto3.client("events", region_name=os.environ.get("AWS_DEFAULT_REGION", REGION))
    publisher = EventBridgePublisher(client, services.aws.bus_name, metrics=metrics)
    return FeedApp(
        settings,
        publisher,
        mode=mode,
        replay_path=replay,
        speed=args.speed,
        seed=args.seed,
        metrics=metrics,
    )


async def _serve(feed: FeedApp, console: Console, healthy: Callable[[], str | None]) -> int:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    feed_task = asyncio.create_task(feed.run(stop), name="feed")
    status = 0
    feed_reported = False
    try:
        while not stop.is_set():
            if feed_task.done() and not feed_reported:
                feed_reported = True
                failure = None if feed_task.cancelled() else feed_task.exception()
                if failure is not None:
                    console.say("error", f"the feed stopped: {type(failure).__name__}: {failure}")
                    status = 1
                    break
                console.say("feed", "finished (end of the replay or of the simulation); still serving")
            problem = healthy()
            if problem is not None:
                console.say("error", problem)
                status = 1
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.gather(feed_task, return_exceptions=True), 30)
        except TimeoutError:
            feed_task.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return status


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import asyncio

    console = Console()
    try:  # refuse bad input before anything starts
        from feed_service.app import parse_market_option
        from feed_service.streams import parse_streams

        _mode, _market, replay = parse_market_option(args.market)
        if not parse_streams(args.streams):
            raise ValueError("--streams needs at least one SYMBOL@INTERVAL")
        if replay is not None and not replay.is_file():
            raise ValueError(f"no such replay file: {replay}")
        llm_options = llm_transport_options(args)
    except ValueError as exc:
        print(f"cmon local: {exc}", file=sys.stderr)
        return 2
    database_url = args.database_url or os.environ.get("DATABASE_URL") or None
    webhook_secret = args.webhook_secret or os.environ.get("WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    admin_key = args.admin_api_key or os.environ.get("ADMIN_API_KEY") or LOCAL_ADMIN_KEY
    # SIGTERM during start-up must still tear down what started (an embedded server).
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    level = logging.INFO if args.verbose else logging.ERROR
    try:
        with ExitStack() as stack:
            services = stack.enter_context(local_services(
                database_url=database_url, llm_proxy_url=args.llm_proxy_url, webhook_secret=webhook_secret,
                admin_api_key=admin_key, migrate_db=not args.no_migrate,
                progress=lambda message: console.say("start", message),
                max_reanalyses=args.max_reanalyses, **llm_options,
            ))  # fmt: skip
            stack.enter_context(handler_logs(level, EventLines(console)))
            halt = threading.Event()
            threads: list[threading.Thread] = []

            def stop_threads() -> None:
                halt.set()
                for thread in threads:
                    thread.join(timeout=30)

            api = ApiServer(args.host, args.port)
            # LISTEN before the API answers /health: a row written once the API is up
            # must not be missed (the relay delivers only what it was listening for).
            relay_note, relay_thread = _prepare_relay(
                args, services, api.url, webhook_secret, console, halt, stack
            )
            api.start()
            stack.callback(api.stop)
            stack.callback(stop_threads)  # before the API stops: the relay posts to it
            if relay_thread is not None:
                relay_thread.start()
                threads.append(relay_thread)
            runner = services.runner()
            threads.append(
                _loop(
                    "trigger-runner",
                    halt,
                    lambda: runner.pump_fanout() + runner.pump_setup() + runner.pump_position(),
                    idle_s=0.2,
                )
            )
            if args.reconcile_every > 0:
                threads.append(_reconciler(halt, args.reconcile_every, console))
            feed = _feed(args, services, args.verbose)
            _banner(console, args, services, api.url, webhook_secret, admin_key, relay_note)

            def healthy() -> str | None:
                if not api.alive():
                    return "the API server stopped"
                dead = [t.name for t in threads if not t.is_alive()]
                return f"thread(s) stopped: {', '.join(dead)}" if dead else None

            signal.signal(signal.SIGTERM, previous_term)
            status = asyncio.run(_serve(feed, console, healthy))
            console.say("stop", "stopping: feed, relay, runner, API, llm stub, moto, database")
    except KeyboardInterrupt:
        console.say("stop", "interrupted during start-up; everything started was stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    console.say("stop", "stopped cleanly")
    return status


def _prepare_relay(
    args: argparse.Namespace,
    services: Services,
    api_url: str,
    secret: str,
    console: Console,
    halt: threading.Event,
    stack: ExitStack,
) -> tuple[str, threading.Thread | None]:
    """Install the triggers and LISTEN; the returned thread (not started) delivers."""
    from functions.local import relay

    if args.no_relay:
        return "off (--no-relay)", None
    if not relay.is_local_url(services.database_url):
        return "off: not a local database (point its own webhooks at this API)", None
    relay.install(services.database_url)
    if not services.embedded:
        stack.callback(relay.uninstall, services.database_url)
    deliver, close = relay.http_deliver(api_url, secret, timeout_s=args.webhook_timeout_ms / 1000)
    stack.callback(close)

    def show(delivery: Delivery) -> None:
        console.say("webhook", delivery.describe())

    webhooks = relay.WebhookRelay(services.database_url, deliver, on_delivery=show)
    webhooks.listen()
    stack.callback(webhooks.close)
    thread = threading.Thread(target=webhooks.run, args=(halt,), name="webhook-relay", daemon=True)
    return f"LISTEN {relay.CHANNEL} -> POST {relay.WEBHOOK_PATH}", thread


def _reconciler(halt: threading.Event, every_s: float, console: Console) -> threading.Thread:
    """The every-minute schedule: the real reconciler handler with a scheduled event."""
    from functions.handlers import reconciler
    from functions.local.runner import LambdaContext

    def body() -> None:
        while not halt.wait(every_s):
            try:
                event = {
                    "version": "0",
                    "id": "local",
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": "000000000000",
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "region": "us-east-1",
                    "resources": [],
                    "detail": {},
                }
                outcome = reconciler.handler(event, LambdaContext("reconciler"))
            except Exception:
                log.exception("reconciler failed")
                continue
            fixes = {k: v for k, v in outcome.items() if isinstance(v, list) and v}
            if fixes:
                console.say("reconcile", ", ".join(f"{k}: {len(v)}" for k, v in fixes.items()))

    thread = threading.Thread(target=body, name="reconciler", daemon=True)
    thread.start()
    return thread


def _banner(
    console: Console,
    args: argparse.Namespace,
    services: Services,
    api_url: str,
    secret: str,
    admin_key: str,
    relay_note: str,
) -> None:
    def shown(value: str, default: str) -> str:
        return value if value == default else "(as given)"

    market = args.market if args.market != "live" else "live Binance"
    speed = f" at {args.speed:g}x" if args.market == "simulate" else ""
    db_kind = "embedded, deleted on exit" if services.embedded else "given"
    lines = [
        "cmon local: the whole stack on this machine. Ctrl-C stops everything.",
        f"  API          {api_url}  (docs {api_url}/docs; admin key {shown(admin_key, LOCAL_ADMIN_KEY)})",
        f"  webhooks     secret {shown(secret, LOCAL_WEBHOOK_SECRET)}; relay {relay_note}",
        f"  database     {services.database_url}  ({db_kind})",
        f"  llm-proxy    {services.llm_proxy_url}"
        + ("  (stub: POST /_stub/queue, /_stub/fail, /_stub/config)" if services.stub else ""),
        f"  AWS (moto)   {services.moto_endpoint}  bus {services.aws.bus_name}",
        f"  market       {market} {args.streams}{speed}",
        f'  try          psql "{services.database_url}"  then insert a trader, a signal and a `wait`'
        " analysis (see docs/demo.md)",
    ]
    for line in lines:
        console.say("ready", line)
