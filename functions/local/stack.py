"""The local stack that `cmon local`, `cmon demo`, `cmon replay` and the e2e tests run.

Postgres (embedded unless a URL is given, migrated on start), moto's EventBridge and SQS
(in a child process, `moto_process`) with the template's bus, rule, queues and DLQs, the
stub llm-proxy on loopback (or a real URL / Edge Function), and the handlers' container
built by `functions.handlers.wiring.build`, the same function a deployed Lambda uses, with
the local parts passed in (a per-thread database, the moto queues behind the send
coalescer of `job_batcher`, a timed LLM client, in-memory metrics, a replay clock).

The timers here (`TimedLlm`, `TimedHandler`) are what the demo and replay report as
"job time minus LLM time".
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from functions.adapters.aws import InMemoryMetrics
    from functions.adapters.postgres import Database
    from functions.core.models import AnalyzeSignalRequest, LlmResult, ManagePositionRequest
    from functions.handlers.wiring import Container
    from functions.local.aws_stack import LocalStack
    from functions.local.runner import TriggerRunner
    from functions.local.stub_llm import StubLlmProxy
    from functions.services.ports import LlmProxy
    from functions.settings import Settings

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
    moto_pid: int | None
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

        from functions.local.aws_stack import clients, create_stack, local_aws_env
        from functions.local.moto_process import moto_process

        moto = stack.enter_context(moto_process())  # starts while the handlers import

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

        from functions.adapters.aws import InMemoryMetrics
        from functions.adapters.migrations import migrate
        from functions.handlers import api, fanout, position_management, reconciler, setup_analysis, wiring
        from functions.local.db_pool import PerThreadDatabase
        from functions.settings import Settings

        del api, fanout, position_management, reconciler, setup_analysis  # imported for their cost only

        endpoint = moto.endpoint()
        stack.enter_context(_environment(local_aws_env(endpoint)))
        progress(f"moto (EventBridge, SQS) on {endpoint}, in its own process")

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
        container = use_local_container(
            config, db=db, sqs=sqs, aws=aws, llm=llm, metrics=metrics, clock=clock
        )
        stack.callback(wiring.use, None)
        from functions.local.job_batcher import CoalescingJobQueue

        if isinstance(container.queue, CoalescingJobQueue):
            stack.callback(container.queue.close)
        yield Services(
            database_url=database_url, embedded=embedded, moto_endpoint=endpoint, moto_pid=moto.pid,
            llm_proxy_url=endpoint_shown, stub=stub, aws=aws, sqs=sqs, events=events,
            settings=config, metrics=metrics, llm=llm, db=db, container=container,
            llm_transport=config.llm_proxy_transport,
        )  # fmt: skip


def use_local_container(
    settings: Settings,
    *,
    db: Database,
    sqs: Any,
    aws: LocalStack,
    llm: LlmProxy,
    metrics: InMemoryMetrics,
    clock: Callable[[], datetime] | None = None,
) -> Container:
    """`wiring.build` with the local parts (moto's queues, the given database, LLM client and
    metrics), injected for the handlers with `wiring.use`; the caller resets with
    `wiring.use(None)`. The e2e tests' stack calls this too: one container recipe."""
    from functions.adapters.aws import SqsJobQueue
    from functions.handlers import wiring
    from functions.local.job_batcher import CoalescingJobQueue

    # One process serves every request here (one per container in Lambda): concurrent
    # sends share SendMessageBatch calls (see job_batcher).
    queue = CoalescingJobQueue(
        SqsJobQueue(sqs, setup_queue_url=aws.setup_queue_url, position_queue_url=aws.position_queue_url)
    )
    container = wiring.build(settings, db=db, queue=queue, llm=llm, metrics=metrics, clock=clock)
    wiring.use(container)
    return container


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
