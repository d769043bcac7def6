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

Files: this module is the stub's scripting API and its answering; `stub_state.py` the
records it keeps (calls, config, queues); `stub_answers.py` the heuristic and the answer
shapes; `stub_http.py` the server and request handler.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from functions.local.stub_answers import (
    Answer,
    FailStatus,
    Kind,
    Reply,
    dump,
    entity_of,
    error_reply,
    management_answer,
    setup_answer,
)
from functions.local.stub_state import Failure, StubCall, StubConfig, StubState

__all__ = ["ANALYZE_PATH", "EDGE_PREFIX", "MANAGE_PATH", "MODEL_NAME", "StubCall", "StubLlmProxy", "main"]

if TYPE_CHECKING:
    from functions.local.stub_http import StubServer

logger = logging.getLogger(__name__)

ANALYZE_PATH = "/analyze-signal"
MANAGE_PATH = "/manage-position"
MODEL_NAME = "stub-llm"
ANY_ENTITY = "*"
EDGE_PREFIX = "/functions/v1/"
_INVALID_BODY = b'{"reasoning": "stub: scripted invalid answer"}'


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
        self._state = StubState()
        self._config = StubConfig()
        self._rng = random.Random(self._config.seed)
        self._token_rng = random.Random(self._config.seed)
        self._stopping = threading.Event()
        self._server: StubServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> StubLlmProxy:
        if self._server is not None:
            return self
        self._stopping.clear()
        from functions.local.stub_http import StubHandler, StubServer

        server = StubServer((self._host, self._port), StubHandler)
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
            failures.append(Failure(times, status))

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
            self._state = StubState()
            self._config = StubConfig()
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

    def _answer_edge(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[Reply, dict[str, str]]:
        """The Edge Function layout: the gateway's checks, the relay, then `_answer`."""
        name, _, operation = path[len(EDGE_PREFIX) :].partition("?")[0].partition("/")
        plain = f"/{operation}"
        if name != self.function_name or plain not in (ANALYZE_PATH, MANAGE_PATH):
            return error_reply(404, "Requested function was not found"), {}
        key = self._api_key
        if key is not None and (
            headers.get("authorization") != f"Bearer {key}" or headers.get("apikey") != key
        ):
            return self._record(plain, headers, None, None, error_reply(401, "Invalid JWT")), {}
        with self._lock:
            relay_fails = self._relay_failures > 0
            if relay_fails:
                self._relay_failures -= 1
        if relay_fails:
            return error_reply(502, "relay error: the function could not be reached"), {
                "x-relay-error": "true"
            }
        return self._answer(plain, headers, raw), {}

    # -- answering (called from the HTTP threads) -------------------------------------

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if self._api_key is not None and headers.get("authorization") != f"Bearer {self._api_key}":
            return self._record(path, headers, None, None, error_reply(401, "unauthorized"))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return self._record(path, headers, None, None, error_reply(400, "body is not JSON"))
        if not isinstance(body, dict):
            return self._record(path, headers, body, None, error_reply(400, "body is not an object"))
        kind: Kind = "setup" if path == ANALYZE_PATH else "management"
        entity = entity_of(body, kind)
        key = headers.get("idempotency-key")
        with self._lock:
            config = self._config
            delay_s = config.latency_ms / 1000
            failure = self._take_failure(entity)
            if failure is None and config.failure_rate > 0 and self._rng.random() < config.failure_rate:
                failure = 500
            if failure == "timeout":
                reply = Reply(None, b"", None, delay_s=config.timeout_sleep_s)
            elif failure == "invalid":
                reply = Reply(200, _INVALID_BODY, None, delay_s)
            elif failure is not None:
                reply = error_reply(int(failure), "scripted failure")
                reply.delay_s = delay_s
            elif key is not None and (path, key) in self._state.cache:
                answer = self._state.cache[(path, key)]
                reply = Reply(200, dump(answer), answer, delay_s)
            else:
                answer = self._next_answer(kind, entity, body)
                if key is not None:
                    self._state.cache[(path, key)] = answer
                reply = Reply(200, dump(answer), answer, delay_s)
            self._state.calls.append(StubCall(path, headers, body, reply.status, reply.answer, entity))
        return reply

    def _record(
        self, path: str, headers: dict[str, str], body: Any, entity: str | None, reply: Reply
    ) -> Reply:
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
            return {**base, **setup_answer(body, scripted)}
        return {**base, **management_answer(scripted)}

    def _draw(self, mean: int) -> int:
        jitter = self._config.token_jitter
        if jitter == 0:
            return mean
        return max(1, round(self._token_rng.gauss(mean, mean * jitter)))


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
