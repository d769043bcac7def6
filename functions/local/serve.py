"""`cmon local`: the whole serverless stack on one machine, until Ctrl-C.

What runs, and what it stands in for:
- Postgres: an embedded server (or `--database-url` / `DATABASE_URL`), migrated on start;
- the API Lambda: the real FastAPI `app` under uvicorn on localhost;
- Supabase database webhooks: a LISTEN/NOTIFY relay (`relay.py`) that POSTs the exact
  webhook body to the API after COMMIT, as pg_net does;
- EventBridge and SQS: moto's in-process server with the template's bus, rule, queues
  and DLQs; the trigger runner plays the event-source mappings and calls the real
  fan-out and worker handlers with real event shapes;
- the reconciler schedule: the real handler, every `--reconcile-every` seconds;
- the feed: `feed_service`'s own `FeedApp` (live Binance by default, or the simulator,
  or a replay) publishing through its real `EventBridgePublisher` to the moto bus;
- llm-proxy: the loopback stub (scriptable over HTTP), or `--llm-proxy-url`; with
  `--llm-transport edge` (or `LLM_PROXY_TRANSPORT=edge`) it is called as a Supabase Edge
  Function through the `supabase` functions client: the stub serves that layout too, or
  a real project when `SUPABASE_URL` and `SUPABASE_KEY` are set.

`local_services()` (the stack without the API server, relay and feed loops) is shared
with `cmon demo`, so both run the same wiring as the e2e tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from feed_service.app import FeedApp
    from functions.adapters.aws import InMemoryMetrics
    from functions.adapters.postgres import Database
    from functions.core.models import AnalyzeSignalRequest, LlmResult, ManagePositionRequest
    from functions.handlers.wiring import Container
    from functions.local.aws_stack import LocalStack
    from functions.local.relay import Delivery
    from functions.local.runner import TriggerRunner
    from functions.local.stub_llm import StubLlmProxy
    from functions.services.ports import LlmProxy
    from functions.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - a documented local default
LOCAL_ADMIN_KEY = "local-admin-key"
# The key the stub checks (`Authorization` and `apikey`) when it plays the Edge Function.
LOCAL_SUPABASE_KEY = "local-supabase-key"
LLM_TRANSPORTS = ("http", "edge")
Handler = Callable[[dict[str, Any], Any], Any]


# -- timing: how long a job takes apart from the LLM call ------------------------------


class TimedLlm:
    """The llm-proxy port, timed: the demo reports job time *minus* LLM time, so it
    needs to know how long each thread spent waiting on the proxy."""

    def __init__(self, inner: LlmProxy) -> None:
        self.inner = inner
        self.samples_ms: list[float] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def spent_s(self) -> float:
        """Seconds this thread has spent in LLM calls so far."""
        return float(getattr(self._local, "spent", 0.0))

    def _add(self, seconds: float) -> None:
        self._local.spent = self.spent_s() + seconds
        with self._lock:
            self.samples_ms.append(seconds * 1000)

    def analyze_signal(
        self, request: AnalyzeSignalRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        started = time.perf_counter()
        try:
            return self.inner.analyze_signal(request, idempotency_key=idempotency_key, deadline=deadline)
        finally:
            self._add(time.perf_counter() - started)

    def manage_position(
        self, request: ManagePositionRequest, *, idempotency_key: str, deadline: float | None = None
    ) -> LlmResult:
        started = time.perf_counter()
        try:
            return self.inner.manage_position(request, idempotency_key=idempotency_key, deadline=deadline)
        finally:
            self._add(time.perf_counter() - started)


@dataclass
class TimedHandler:
    """A Lambda handler, timed per invocation; each record is charged the invocation's
    time minus its LLM time, divided by the records in the batch."""

    handler: Handler
    llm: TimedLlm | None = None
    samples_ms: list[float] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = len(event.get("Records") or []) or 1
        llm_before = self.llm.spent_s() if self.llm else 0.0
        started = time.perf_counter()
        try:
            return self.handler(event, context)
        finally:
            elapsed = time.perf_counter() - started
            llm = (self.llm.spent_s() - llm_before) if self.llm else 0.0
            self.samples_ms.extend([max(0.0, elapsed - llm) * 1000 / records] * records)


# -- the stack ----------------------------------------------------------------------------


@dataclass
class Services:
    """Everything `local_services()` started, and the container the handlers use."""

    database_url: str
    embedded: bool
    moto_endpoint: str
    llm_proxy_url: str
    stub: StubLlmProxy | None
    aws: LocalStack
    sqs: Any
    events: Any
    settings: Settings
    metrics: InMemoryMetrics
    llm: TimedLlm
    db: Database
    container: Container
    timers: dict[str, TimedHandler] = field(default_factory=dict)
    llm_transport: str = "http"

    def runner(self, batch_size: int = 10) -> TriggerRunner:
        """A trigger runner over the real handlers, each timed."""
        from functions.handlers import fanout, position_management, setup_analysis
        from functions.local.runner import TriggerRunner

        self.timers = {
            "fanout": TimedHandler(fanout.handler),
            "setup": TimedHandler(setup_analysis.handler, self.llm),
            "position": TimedHandler(position_management.handler, self.llm),
        }
        return TriggerRunner(
            self.sqs, self.aws, fanout=self.timers["fanout"], setup=self.timers["setup"],
            position=self.timers["position"], batch_size=batch_size,
        )  # fmt: skip


@contextmanager
def _embedded_postgres(progress: Callable[[str], None]) -> Iterator[Callable[[], str]]:
    """Start the embedded server in a thread (initdb takes seconds; the caller starts
    moto and the stub meanwhile). Yields a function that waits for the URL. The whole
    temporary folder is removed on exit, the server stopped first."""
    from functions.local.embedded_db import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="cmon-local-pg-"))
    server = EmbeddedPostgres(data_dir=folder)
    outcome: dict[str, Any] = {}

    def start() -> None:
        try:
            outcome["url"] = server.start()
        except BaseException as exc:  # surfaced by wait() in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=start, name="embedded-postgres", daemon=True)
    progress("starting embedded Postgres")
    thread.start()

    def wait() -> str:
        thread.join()
        if "error" in outcome:
            raise RuntimeError(f"embedded Postgres did not start: {outcome['error']}") from outcome["error"]
        return str(outcome["url"])

    try:
        yield wait
    finally:
        thread.join(timeout=60)
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_services(
    *,
    database_url: str | None,
    llm_proxy_url: str | None,
    webhook_secret: str,
    admin_api_key: str,
    migrate_db: bool = True,
    progress: Callable[[str], None] = lambda _message: None,
    llm_transport: str = "http",
    supabase_url: str | None = None,
    supabase_key: str | None = None,
    clock: Callable[[], datetime] | None = None,
    **settings: Any,
) -> Iterator[Services]:
    """Postgres (embedded unless a URL is given), moto, the stub llm-proxy, the AWS
    resources, and the handlers' container injected with `wiring.use`. Everything is
    stopped and removed on exit, in reverse order, also on Ctrl-C. `clock` (`cmon
    replay`) is the time the handlers and every database transaction see.

    `llm_transport="edge"` calls llm-proxy as the Edge Function at `supabase_url` (with
    `supabase_key`), or, without a URL, the stub's Edge Function layout with its own key."""
    if llm_transport not in LLM_TRANSPORTS:
        raise ValueError(f"llm transport must be one of {', '.join(LLM_TRANSPORTS)}: {llm_transport!r}")
    edge = llm_transport == "edge"
    with ExitStack() as stack:
        wait_for_db: Callable[[], str] | None = None
        if database_url is None:
            wait_for_db = stack.enter_context(_embedded_postgres(progress))

        from moto.server import ThreadedMotoServer

        from functions.local.aws_stack import clients, create_stack, local_aws_env

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        stack.enter_context(_environment(local_aws_env(endpoint)))
        progress(f"moto (EventBridge, SQS) on {endpoint}")

        stub: StubLlmProxy | None = None
        if (edge and supabase_url is None) or (not edge and llm_proxy_url is None):
            from functions.local.stub_llm import StubLlmProxy

            stub = stack.enter_context(StubLlmProxy(api_key=LOCAL_SUPABASE_KEY if edge else None))
            if edge:
                supabase_url, supabase_key = stub.url, LOCAL_SUPABASE_KEY
            else:
                llm_proxy_url = stub.url
            progress(f"stub llm-proxy on {stub.url}" + (" (Edge Function layout)" if edge else ""))

        # Import the handlers while Postgres starts: they are the slow imports.
        from pydantic import SecretStr

        from functions.adapters.aws import InMemoryMetrics, SqsJobQueue
        from functions.adapters.migrations import migrate
        from functions.adapters.operator_db import PostgresOperatorStore
        from functions.adapters.repository import PostgresRepository
        from functions.handlers import api, fanout, position_management, reconciler, setup_analysis, wiring
        from functions.local.db_pool import PerThreadDatabase
        from functions.settings import Settings

        del api, fanout, position_management, reconciler, setup_analysis  # imported for their cost only

        sqs, events = clients()
        aws = create_stack(sqs, events)

        embedded = wait_for_db is not None
        if wait_for_db is not None:
            database_url = wait_for_db()
            progress(f"embedded Postgres on {database_url}")
        assert database_url is not None
        if migrate_db:
            result = migrate(database_url)
            applied, present = len(result.applied), len(result.already_applied)
            progress(f"migrations: {applied} applied, {present} already there")

        llm_url: dict[str, Any] = {"llm_proxy_url": llm_proxy_url} if llm_proxy_url else {}
        config = Settings(
            stage="local",
            database_url=SecretStr(database_url),
            llm_proxy_transport=llm_transport,
            supabase_url=supabase_url,
            supabase_key=SecretStr(supabase_key or ""),
            webhook_secret=SecretStr(webhook_secret),
            admin_api_key=SecretStr(admin_api_key),
            event_bus_name=aws.bus_name,
            setup_queue_url=aws.setup_queue_url,
            position_queue_url=aws.position_queue_url,
            **{"paper_execution": True, **llm_url, **settings},
        )
        if stub is not None:
            stub.function_name = config.llm_proxy_function
        client = wiring.build_llm(config)
        stack.callback(client.close)
        endpoint_shown = (
            f"{supabase_url}/functions/v1/{config.llm_proxy_function}/<operation>  (Edge Function)"
            if edge
            else str(llm_proxy_url)
        )
        db = PerThreadDatabase(
            database_url, application_name="cmon-local", clock=clock
        )  # uvicorn serves in threads
        stack.callback(db.close)
        metrics = InMemoryMetrics()
        llm = TimedLlm(client)
        container = wiring.Container(
            settings=config,
            repo=PostgresRepository(db),
            metrics=metrics,
            queue=SqsJobQueue(
                sqs, setup_queue_url=aws.setup_queue_url, position_queue_url=aws.position_queue_url
            ),
            llm=llm,
            operator_store=PostgresOperatorStore(db),
        )
        if clock is not None:
            container.clock = clock
        wiring.use(container)
        stack.callback(wiring.use, None)
        yield Services(
            database_url=database_url, embedded=embedded, moto_endpoint=endpoint,
            llm_proxy_url=endpoint_shown, stub=stub, aws=aws, sqs=sqs, events=events,
            settings=config, metrics=metrics, llm=llm, db=db, container=container,
            llm_transport=config.llm_proxy_transport,
        )  # fmt: skip


@contextmanager
def handler_logs(level: int, extra: logging.Handler | None = None) -> Iterator[None]:
    """Powertools' Logger prints JSON on stdout (right for CloudWatch). Locally it goes to
    stderr at `level`, so stdout stays for the view or `--json`; `extra` sees every
    record at INFO (the `cmon local` event lines). Restored on exit (the demo also runs
    in-process in tests)."""
    from functions.core.telemetry import SERVICE
    from functions.handlers import fanout, position_management, reconciler, setup_analysis

    del fanout, position_management, reconciler, setup_analysis  # they configure the logger
    logger = logging.getLogger(SERVICE)
    saved_level = logger.level
    saved: list[tuple[logging.StreamHandler[TextIO], TextIO, int]] = []
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            saved.append((handler, handler.stream, handler.level))
            _set_stream(handler, sys.stderr)
            handler.setLevel(level)
    if extra is not None:
        logger.addHandler(extra)
        logger.setLevel(min(logging.INFO, logger.level or logging.INFO))
    try:
        yield
    finally:
        if extra is not None:
            logger.removeHandler(extra)
        logger.setLevel(saved_level)
        for handler, stream, handler_level in saved:
            _set_stream(handler, stream)
            handler.setLevel(handler_level)


def _set_stream(handler: logging.StreamHandler[TextIO], stream: TextIO) -> None:
    """`setStream` without flushing a stream that is already closed: a logger created
    while a test captured stdout keeps that (closed) stream, and the demo runs
    in-process more than once in one test session."""
    if getattr(handler.stream, "closed", False):
        with handler.lock or nullcontext():
            handler.stream = stream
    else:
        handler.setStream(stream)


# -- cmon local ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT}; 0 = any free port)"
    )
    parser.add_argument(
        "--database-url",
        help="use this Postgres instead of an embedded one (default: $DATABASE_URL, else embedded)",
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations on start")
    parser.add_argument(
        "--market",
        default="live",
        metavar="live|spot|usdm|simulate|replay:FILE",
        help="candle source: live Binance (default), the simulator, or a recording",
    )
    parser.add_argument(
        "--streams",
        default="BTCUSDT@1m",
        help="SYMBOL@INTERVAL,... always subscribed (default BTCUSDT@1m); live mode "
        "adds the active workflows' pairs",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulate: simulated seconds per real second (60: a 1m candle a second)",
    )
    parser.add_argument("--seed", type=int, default=None, help="simulate: random seed")
    parser.add_argument(
        "--llm-proxy-url", help="a real llm-proxy (key from $LLM_PROXY_API_KEY); default: the loopback stub"
    )
    add_llm_transport_argument(parser)
    parser.add_argument("--webhook-secret", help=f"default: $WEBHOOK_SECRET, else {LOCAL_WEBHOOK_SECRET!r}")
    parser.add_argument("--admin-api-key", help=f"default: $ADMIN_API_KEY, else {LOCAL_ADMIN_KEY!r}")
    parser.add_argument(
        "--max-reanalyses", type=int, default=10, help="re-analyses of a wait before it expires (default 10)"
    )
    parser.add_argument(
        "--reconcile-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="run the reconciler this often (default 60; 0 = never)",
    )
    parser.add_argument(
        "--no-relay", action="store_true", help="do not install the NOTIFY triggers nor relay webhooks"
    )
    parser.add_argument(
        "--webhook-timeout-ms",
        type=int,
        default=5000,
        help="relay's POST timeout (pg_net's default is 1000; default 5000)",
    )
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


def add_llm_transport_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-transport",
        choices=LLM_TRANSPORTS,
        default=None,
        help="call llm-proxy over plain HTTP or as a Supabase Edge Function (default: "
        "$LLM_PROXY_TRANSPORT, else http); edge uses $SUPABASE_URL/$SUPABASE_KEY if set, else the stub",
    )


def llm_transport_options(args: argparse.Namespace) -> dict[str, Any]:
    """`local_services` keywords for `--llm-transport` / `LLM_PROXY_TRANSPORT` (checked)."""
    transport = args.llm_transport or os.environ.get("LLM_PROXY_TRANSPORT") or "http"
    if transport not in LLM_TRANSPORTS:
        raise ValueError(f"LLM_PROXY_TRANSPORT must be one of {', '.join(LLM_TRANSPORTS)}: {transport!r}")
    options: dict[str, Any] = {"llm_transport": transport}
    if transport == "edge" and os.environ.get("SUPABASE_URL"):
        if not os.environ.get("SUPABASE_KEY"):
            raise ValueError("SUPABASE_URL is set but SUPABASE_KEY is not (needed by the edge transport)")
        options["supabase_url"] = os.environ["SUPABASE_URL"]
        options["supabase_key"] = os.environ["SUPABASE_KEY"]
    return options


class _Console:
    """One line per event on stdout, from any thread."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()

    def say(self, kind: str, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')}  {kind:<9} {text}"
        with self._lock:
            print(line, file=self._out, flush=True)


class _EventLines(logging.Handler):
    """Turns the services' structured log records (telemetry.LogEvent) into short lines."""

    def __init__(self, console: _Console) -> None:
        super().__init__(logging.INFO)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._format(record)
        except Exception:  # a display problem must never break a handler
            return
        if text is not None:
            self._console.say(*text)

    @staticmethod
    def _format(record: logging.LogRecord) -> tuple[str, str] | None:
        from functions.core.telemetry import LogEvent

        def get(name: str) -> str:
            value = getattr(record, name, None)
            return "" if value is None else str(value)

        message = record.getMessage()
        short = get("workflow_id")[:8]
        if message == LogEvent.CANDLE_CLOSED:
            count, close = get("monitors_count"), get("close_time")
            return "candle", f"{get('stream')} closed {close[:10]} {close[11:19]} -> {count} workflow(s)"
        if message == LogEvent.ANALYSIS_COMPLETE:
            return "analysis", (
                f"workflow {short} {get('decision')} (confidence {get('confidence')}, "
                f"{get('tokens')} tokens, llm {get('latency_ms')} ms) -> {get('outcome')}"
            )
        if message == LogEvent.DECISION_APPLIED:
            reason = f" ({get('reason')})" if get("reason") else ""
            source = " [paper]" if get("source") == "paper" else ""
            return "position", f"workflow {short} {get('action')}{source} -> {get('outcome')}{reason}"
        if message == LogEvent.WORKFLOW_STARTED:
            return "started", f"workflow {short} (via {get('via')})"
        if message == LogEvent.WORKFLOW_STOPPED:
            return "stopped", f"workflow {short}: {get('reason')}"
        if message == LogEvent.ERROR:
            who = short or get("signal_id")[:8]
            streak = f", {get('consecutive_errors')} in a row" if get("consecutive_errors") else ""
            return "error", f"{who} {get('error_kind')}{streak}: {get('error_message')[:120]}"
        if record.levelno >= logging.WARNING:
            return "warning", message
        return None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class _ApiServer:
    """uvicorn in a thread, on a socket bound here (so `--port 0` has a known port)."""

    def __init__(self, host: str, port: int) -> None:
        import uvicorn

        from functions.handlers.api import app

        self._socket = _bind(host, port)
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="api", daemon=True
        )

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


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


def _parse_market(value: str) -> tuple[str, str | None, Path | None]:
    """(mode, forced market, replay file), as `cmon feed --market` reads it."""
    if value in ("live", ""):
        return "live", None, None
    if value in ("spot", "usdm"):
        return "live", value, None
    if value == "simulate":
        return "simulate", None, None
    if value.startswith("replay:") and len(value) > len("replay:"):
        return "replay", None, Path(value.removeprefix("replay:"))
    raise ValueError(f"unknown --market {value!r} (live, spot, usdm, simulate or replay:FILE)")


def _feed(args: argparse.Namespace, services: Services, verbose: bool) -> FeedApp:
    """The feed as `cmon feed` builds it, publishing to the moto bus."""
    import boto3

    from feed_service.app import FeedApp, Mode
    from feed_service.metrics import FeedMetrics
    from feed_service.publisher import EventBridgePublisher
    from feed_service.settings import FeedSettings
    from functions.local.aws_stack import REGION

    mode, market, replay = _parse_market(args.market)
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
        mode=Mode(mode),
        replay_path=replay,
        speed=args.speed,
        seed=args.seed,
        metrics=metrics,
    )


async def _serve(feed: FeedApp, console: _Console, healthy: Callable[[], str | None]) -> int:
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

    console = _Console()
    try:  # refuse bad input before anything starts
        from feed_service.streams import parse_streams

        _mode, _market, replay = _parse_market(args.market)
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
            stack.enter_context(handler_logs(level, _EventLines(console)))
            halt = threading.Event()
            threads: list[threading.Thread] = []

            def stop_threads() -> None:
                halt.set()
                for thread in threads:
                    thread.join(timeout=30)

            api = _ApiServer(args.host, args.port)
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
    console: _Console,
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


def _reconciler(halt: threading.Event, every_s: float, console: _Console) -> threading.Thread:
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
    console: _Console,
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
