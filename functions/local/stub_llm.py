"""A stand-in llm-proxy on loopback, so tests, `cmon demo` and `cmon local` drive the
real httpx client over real TCP (timeouts, keep-alive, headers) instead of a mock.

Scripting mirrors the brief's `mockNextAnalysisDecision` / `mockNextManagementDecision`:
answers are queued per entity (the request's `metadata.signal_id` / `metadata.position_id`)
and consumed in order; an empty queue falls back to a deterministic heuristic so a demo
still makes progress on its own.

Default heuristic (pure function of the request body):
- setups: the candle's change `(close - open) / open`; above +0.2 % → `enter_trade` with
  a long plan (entry = close, stop-loss 1 % below, take-profit 2 % above); below -0.5 %
  → `bad_setup`; otherwise (or no candle) → `wait`;
- positions: `hold`.

Idempotency, as the real proxy: the first 2xx answer for an `Idempotency-Key` (per path)
is cached; a repeat returns it without consuming a scripted answer. Scripted failures are
checked before the cache (an outage hits every request) and are never cached, so a retry
after a failure gets a fresh answer.

HTTP controls for `cmon local` users (no auth; the server binds to loopback):
`POST /_stub/queue` `{"kind": "setup"|"management", "entity_id": ..., "answers": [...]}`,
`POST /_stub/fail` `{"entity_id": ..., "times": 1, "status": 500|"timeout"|"invalid"}`,
`POST /_stub/config` `{"latency_ms": ..., "failure_rate": ..., "seed": ..., ...}`,
`GET /_stub/calls`, `GET /_stub/usage` (tokens served), `POST /_stub/reset`, `GET /health`.

The Edge Function layout too (`LLM_PROXY_TRANSPORT=edge`): `POST /functions/v1/<function>/
analyze-signal` and `.../manage-position` answer as the plain paths do (and are recorded
under them), after the checks Supabase's gateway makes: with a key, both `Authorization:
Bearer <key>` and `apikey: <key>` must match (else 401); another function name is a 404.
`fail_relay(times)` makes the relay fail (502 with `x-relay-error: true`, the function never
runs, nothing recorded) as Supabase's does when it cannot reach a function.

Token counts: `prompt_tokens`/`completion_tokens` (950/150) per answer, or, with
`token_jitter` > 0, drawn around them from a seeded normal distribution.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from uuid import UUID

logger = logging.getLogger(__name__)

ANALYZE_PATH = "/analyze-signal"
MANAGE_PATH = "/manage-position"
MODEL_NAME = "stub-llm"
ANY_ENTITY = "*"
EDGE_PREFIX = "/functions/v1/"

Kind = Literal["setup", "management"]
FailStatus = int | Literal["timeout", "invalid"]
Answer = str | dict[str, Any]

# The heuristic's thresholds, as fractions of the open.
ENTER_ABOVE = Decimal("0.002")
BAD_BELOW = Decimal("-0.005")
STOP_LOSS_FACTOR = Decimal("0.99")
TAKE_PROFIT_FACTOR = Decimal("1.02")

_INVALID_BODY = b'{"reasoning": "stub: scripted invalid answer"}'


@dataclass(frozen=True)
class StubCall:
    """One request to an llm endpoint, as the stub saw and answered it.

    `headers` keys are lower-case; `status` is None when no answer was sent (timeout mode).
    """

    path: str
    headers: dict[str, str]
    body: Any
    status: int | None
    answer: dict[str, Any] | None
    entity_id: str | None = None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class _Config:
    latency_ms: int = 0
    failure_rate: float = 0.0
    seed: int | None = 0
    prompt_tokens: int = 950
    completion_tokens: int = 150
    # Relative standard deviation of the token counts: 0 serves exactly the counts above;
    # 0.25 draws each answer's prompt and completion counts from a normal distribution
    # around them (seeded by `seed`, at least 1 token each), as a real model varies.
    token_jitter: float = 0.0
    # How long "timeout" mode holds a request: longer than any sane client timeout; the
    # wait is cut short by `stop()` so the server never lingers.
    timeout_sleep_s: float = 30.0


@dataclass
class _Failure:
    remaining: int
    status: FailStatus


@dataclass
class _Reply:
    status: int | None
    body: bytes
    answer: dict[str, Any] | None
    delay_s: float = 0.0


@dataclass
class _State:
    queues: dict[tuple[Kind, str], deque[Answer]] = field(default_factory=dict)
    failures: dict[str, deque[_Failure]] = field(default_factory=dict)
    cache: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[StubCall] = field(default_factory=list)
    sequence: int = 0


class StubLlmProxy:
    """The stub server; thread-safe: the HTTP threads and the test share one lock."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        function_name: str = "llm-proxy",
    ) -> None:
        self.function_name = function_name  # the Edge Function layout's name
        self._relay_failures = 0
        self._host = host
        self._port = port
        self._api_key = api_key or None
        self._lock = threading.Lock()
        self._state = _State()
        self._config = _Config()
        self._rng = random.Random(self._config.seed)
        self._token_rng = random.Random(self._config.seed)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> StubLlmProxy:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"stub-llm:{server.server_address[1]}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        logger.info("stub llm-proxy listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes requests held in "timeout" mode
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> StubLlmProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub is not started")
        host, port = self._server.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        return f"http://{shown}:{port}"

    # -- scripting --------------------------------------------------------------------

    def queue_setup(self, signal_id: str | UUID, *answers: Answer) -> None:
        """Queue the next answers for a signal: `"wait"` or `{"decision": ..., ...}`."""
        self._queue("setup", signal_id, answers)

    def queue_management(self, position_id: str | UUID, *answers: Answer) -> None:
        """Queue the next answers for a position: `"hold"` or `{"action": ..., "params": {}}`."""
        self._queue("management", position_id, answers)

    def fail(self, entity_id: str | UUID, times: int = 1, status: FailStatus = 500) -> None:
        """Make the next `times` calls for the entity (`"*"`: any) fail with `status`,
        `"timeout"` (hold the request past the client's timeout) or `"invalid"` (200 with
        a body that breaks the contract)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        if not (status in ("timeout", "invalid") or (isinstance(status, int) and status >= 400)):
            raise ValueError("status must be an HTTP error code, 'timeout' or 'invalid'")
        with self._lock:
            failures = self._state.failures.setdefault(str(entity_id), deque())
            failures.append(_Failure(times, status))

    def configure(self, **options: Any) -> None:
        """Set `latency_ms`, `failure_rate` (random 500s), `seed`, `prompt_tokens`,
        `completion_tokens`, `token_jitter` or `timeout_sleep_s`; the others keep their values."""
        with self._lock:
            for name, value in options.items():
                if not hasattr(self._config, name):
                    raise ValueError(f"unknown stub option {name!r}")
                current = getattr(self._config, name)
                if name == "seed":
                    value = None if value is None else int(value)
                    self._rng = random.Random(value)
                    self._token_rng = random.Random(value)
                elif isinstance(current, bool) or current is None:
                    pass
                elif isinstance(current, int):
                    value = int(value)
                elif isinstance(current, float):
                    value = float(value)
                setattr(self._config, name, value)
            if not 0.0 <= self._config.failure_rate <= 1.0:
                self._config.failure_rate = min(max(self._config.failure_rate, 0.0), 1.0)
            if self._config.token_jitter < 0:
                self._config.token_jitter = 0.0
                raise ValueError("token_jitter must not be negative")

    def reset(self) -> None:
        """Back to as-constructed: queues, failures, idempotency cache, calls and config."""
        with self._lock:
            self._state = _State()
            self._config = _Config()
            self._rng = random.Random(self._config.seed)
            self._relay_failures = 0
            self._token_rng = random.Random(self._config.seed)

    @property
    def calls(self) -> list[StubCall]:
        with self._lock:
            return list(self._state.calls)

    def served_usage(self) -> dict[str, int]:
        """The tokens of every answer the stub sent (HTTP 200 with a usage), summed: what
        a test compares with what the system recorded."""
        totals = {"answers": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for call in self.calls:
            usage = (call.answer or {}).get("usage") if call.status == 200 else None
            if isinstance(usage, dict):
                totals["answers"] += 1
                for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                    totals[key] += int(usage[key])
        return totals

    def calls_for(self, entity_id: str | UUID) -> list[StubCall]:
        wanted = str(entity_id)
        with self._lock:
            return [call for call in self._state.calls if call.entity_id == wanted]

    def _queue(self, kind: Kind, entity_id: str | UUID, answers: Sequence[Answer]) -> None:
        for answer in answers:
            if not isinstance(answer, str | dict):
                raise TypeError("an answer is a decision/action string or a dict")
        with self._lock:
            self._state.queues.setdefault((kind, str(entity_id)), deque()).extend(answers)

    def fail_relay(self, times: int = 1) -> None:
        """Make the next `times` Edge Function calls fail in the relay (502, `x-relay-error`)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._relay_failures += times

    def _answer_edge(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[_Reply, dict[str, str]]:
        """The Edge Function layout: the gateway's checks, the relay, then `_answer`."""
        name, _, operation = path[len(EDGE_PREFIX) :].partition("?")[0].partition("/")
        plain = f"/{operation}"
        if name != self.function_name or plain not in (ANALYZE_PATH, MANAGE_PATH):
            return _error(404, "Requested function was not found"), {}
        key = self._api_key
        if key is not None and (
            headers.get("authorization") != f"Bearer {key}" or headers.get("apikey") != key
        ):
            return self._record(plain, headers, None, None, _error(401, "Invalid JWT")), {}
        with self._lock:
            relay_fails = self._relay_failures > 0
            if relay_fails:
                self._relay_failures -= 1
        if relay_fails:
            return _error(502, "relay error: the function could not be reached"), {"x-relay-error": "true"}
        return self._answer(plain, headers, raw), {}

    # -- answering (called from the HTTP threads) -------------------------------------

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        if self._api_key is not None and headers.get("authorization") != f"Bearer {self._api_key}":
            return self._record(path, headers, None, None, _error(401, "unauthorized"))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return self._record(path, headers, None, None, _error(400, "body is not JSON"))
        if not isinstance(body, dict):
            return self._record(path, headers, body, None, _error(400, "body is not an object"))
        kind: Kind = "setup" if path == ANALYZE_PATH else "management"
        entity = _entity_of(body, kind)
        key = headers.get("idempotency-key")
        with self._lock:
            config = self._config
            delay_s = config.latency_ms / 1000
            failure = self._take_failure(entity)
            if failure is None and config.failure_rate > 0 and self._rng.random() < config.failure_rate:
                failure = 500
            if failure == "timeout":
                reply = _Reply(None, b"", None, delay_s=config.timeout_sleep_s)
            elif failure == "invalid":
                reply = _Reply(200, _INVALID_BODY, None, delay_s)
            elif failure is not None:
                reply = _error(int(failure), "scripted failure")
                reply.delay_s = delay_s
            elif key is not None and (path, key) in self._state.cache:
                answer = self._state.cache[(path, key)]
                reply = _Reply(200, _dump(answer), answer, delay_s)
            else:
                answer = self._next_answer(kind, entity, body)
                if key is not None:
                    self._state.cache[(path, key)] = answer
                reply = _Reply(200, _dump(answer), answer, delay_s)
            self._state.calls.append(StubCall(path, headers, body, reply.status, reply.answer, entity))
        return reply

    def _record(
        self, path: str, headers: dict[str, str], body: Any, entity: str | None, reply: _Reply
    ) -> _Reply:
        with self._lock:
            self._state.calls.append(StubCall(path, headers, body, reply.status, None, entity))
        return reply

    def _take_failure(self, entity: str | None) -> FailStatus | None:
        for candidate in (entity, ANY_ENTITY):
            if candidate is None:
                continue
            pending = self._state.failures.get(candidate)
            if pending:
                head = pending[0]
                head.remaining -= 1
                if head.remaining <= 0:
                    pending.popleft()
                return head.status
        return None

    def _next_answer(self, kind: Kind, entity: str | None, body: dict[str, Any]) -> dict[str, Any]:
        scripted: Answer | None = None
        queue = self._state.queues.get((kind, entity)) if entity is not None else None
        if queue:
            scripted = queue.popleft()
        self._state.sequence += 1
        config = self._config
        prompt, completion = self._draw(config.prompt_tokens), self._draw(config.completion_tokens)
        base: dict[str, Any] = {
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "model": MODEL_NAME,
            "trace_id": f"stub-trace-{self._state.sequence:06d}",
        }
        if kind == "setup":
            return {**base, **_setup_answer(body, scripted)}
        return {**base, **_management_answer(scripted)}

    def _draw(self, mean: int) -> int:
        jitter = self._config.token_jitter
        if jitter == 0:
            return mean
        return max(1, round(self._token_rng.gauss(mean, mean * jitter)))


# -- the default heuristic and the scripted answers --------------------------------------


def _setup_answer(body: dict[str, Any], scripted: Answer | None) -> dict[str, Any]:
    heuristic = _setup_heuristic(body)
    if scripted is None:
        return heuristic
    if isinstance(scripted, str):
        scripted = {"decision": scripted}
    answer = {
        "confidence": 0.8,
        "reasoning": f"stub: scripted {scripted.get('decision', heuristic['decision'])}",
        "decision": heuristic["decision"],
        **scripted,
    }
    if answer["decision"] == "enter_trade" and "trade_plan" not in answer:
        answer["trade_plan"] = _long_plan(_candle(body)[1])
    return answer


def _setup_heuristic(body: dict[str, Any]) -> dict[str, Any]:
    open_, close = _candle(body)
    if open_ is None or close is None or open_ <= 0:
        return {"decision": "wait", "confidence": 0.5, "reasoning": "stub: no candle, wait"}
    change = (close - open_) / open_
    pct = f"{change * 100:+.3f}%"
    if change > ENTER_ABOVE:
        return {
            "decision": "enter_trade",
            "confidence": 0.75,
            "reasoning": f"stub: candle closed {pct} (> +0.2%), enter long",
            "trade_plan": _long_plan(close),
        }
    if change < BAD_BELOW:
        return {
            "decision": "bad_setup",
            "confidence": 0.7,
            "reasoning": f"stub: candle closed {pct} (< -0.5%), setup invalidated",
        }
    return {"decision": "wait", "confidence": 0.6, "reasoning": f"stub: candle closed {pct}, wait"}


def _long_plan(close: Decimal | None) -> dict[str, Any]:
    if close is None or close <= 0:
        return {"side": "long"}
    return {
        "side": "long",
        "entry": _fmt(close),
        "stop_loss": _fmt(close * STOP_LOSS_FACTOR),
        "take_profit": _fmt(close * TAKE_PROFIT_FACTOR),
    }


def _management_answer(scripted: Answer | None) -> dict[str, Any]:
    if scripted is None:
        return {"action": "hold", "params": {}, "confidence": 0.5, "reasoning": "stub: hold"}
    if isinstance(scripted, str):
        scripted = {"action": scripted}
    return {
        "action": "hold",
        "params": {},
        "confidence": 0.8,
        "reasoning": f"stub: scripted {scripted.get('action', 'hold')}",
        **scripted,
    }


def _candle(body: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    candle = body.get("candle")
    if not isinstance(candle, dict):
        return None, None
    return _decimal(candle.get("open")), _decimal(candle.get("close"))


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _entity_of(body: dict[str, Any], kind: Kind) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("signal_id" if kind == "setup" else "position_id")
    return None if value is None else str(value)


def _dump(value: Any) -> bytes:
    return json.dumps(value, default=str).encode()


def _error(status: int, message: str) -> _Reply:
    return _Reply(status, _dump({"error": message}), None)


# -- HTTP plumbing -----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of C workers connecting at once (bench_load: 100) must not overflow the
    # listen backlog (default 5): refused SYNs are retried by the kernel after ~1 s.
    request_queue_size = 1024
    stub: StubLlmProxy

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections so a stopped stub answers nothing at all."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real proxy: the client reuses it
    server: _Server
    timeout = 60  # idle kept-alive connections do not hold a thread forever
    # Headers and body go out in two writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms per call), which would dwarf everything we measure.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("stub llm-proxy: " + format, *args)

    def do_GET(self) -> None:
        self._read_body()
        stub = self.server.stub
        if self.path == "/health":
            self._send(200, _dump({"status": "ok", "model": MODEL_NAME}))
        elif self.path == "/_stub/calls":
            self._send(200, _dump([asdict(call) for call in stub.calls]))
        elif self.path == "/_stub/usage":
            self._send(200, _dump(stub.served_usage()))
        else:
            self._send(404, _dump({"error": "not found"}))

    def do_POST(self) -> None:
        raw = self._read_body()
        stub = self.server.stub
        if self.path in (ANALYZE_PATH, MANAGE_PATH):
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = stub._answer(self.path, headers, raw)
            self._reply(reply, stub._stopping)
        elif self.path.startswith(EDGE_PREFIX):
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply, extra = stub._answer_edge(self.path, headers, raw)
            if extra:
                self._send_with(reply.status or 502, reply.body, extra)
            else:
                self._reply(reply, stub._stopping)
        elif self.path.startswith("/_stub/"):
            status, payload = _control(stub, self.path, raw)
            self._send(status, _dump(payload))
        else:
            self._send(404, _dump({"error": "not found"}))

    def _reply(self, reply: _Reply, stopping: threading.Event) -> None:
        if reply.delay_s > 0 and stopping.wait(reply.delay_s):
            self.close_connection = True
            return
        if reply.status is None:  # "timeout": the client gave up long ago
            self.close_connection = True
            return
        self._send(reply.status, reply.body)

    def _send_with(self, status: int, body: bytes, extra: dict[str, str]) -> None:
        """`_send` with extra headers (the Edge Function relay's `x-relay-error`)."""
        try:
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _control(stub: StubLlmProxy, path: str, raw: bytes) -> tuple[int, Any]:
    try:
        payload = json.loads(raw) if raw.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("the body must be a JSON object")
        if path == "/_stub/queue":
            answers = payload.get("answers", [])
            if not isinstance(answers, list):
                raise ValueError("answers must be a list")
            if payload.get("kind") == "setup":
                stub.queue_setup(str(payload["entity_id"]), *answers)
            elif payload.get("kind") == "management":
                stub.queue_management(str(payload["entity_id"]), *answers)
            else:
                raise ValueError("kind must be 'setup' or 'management'")
            return 200, {"queued": len(answers)}
        if path == "/_stub/fail":
            status = payload.get("status", 500)
            stub.fail(str(payload["entity_id"]), int(payload.get("times", 1)), status)
            return 200, {"ok": True}
        if path == "/_stub/config":
            stub.configure(**payload)
            return 200, {"ok": True}
        if path == "/_stub/reset":
            stub.reset()
            return 200, {"ok": True}
    except (KeyError, ValueError, TypeError) as e:
        return 400, {"error": f"{type(e).__name__}: {e}"}
    return 404, {"error": "not found"}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m functions.local.stub_llm --port 8790`: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m functions.local.stub_llm", description="A stub llm-proxy on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument(
        "--api-key", default=os.environ.get("LLM_PROXY_API_KEY") or None,
        help="require this Bearer key (default: $LLM_PROXY_API_KEY, else none)",
    )  # fmt: skip
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    stub = StubLlmProxy(args.host, args.port, api_key=args.api_key)
    stub.configure(latency_ms=args.latency_ms, failure_rate=args.failure_rate, seed=args.seed)
    with stub:
        print(f"stub llm-proxy listening on {stub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
