"""The stub llm-proxy's HTTP layer: a threading server that can cut its kept-alive
connections, the request handler (llm paths, the Edge Function layout, `/_stub/*` controls)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from functions.local.stub_answers import Reply, dump
from functions.local.stub_llm import ANALYZE_PATH, EDGE_PREFIX, MANAGE_PATH, MODEL_NAME

if TYPE_CHECKING:
    from functions.local.stub_llm import StubLlmProxy

logger = logging.getLogger("functions.local.stub_llm")

# -- HTTP plumbing -----------------------------------------------------------------------


class StubServer(ThreadingHTTPServer):
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


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real proxy: the client reuses it
    server: StubServer
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
            self._send(200, dump({"status": "ok", "model": MODEL_NAME}))
        elif self.path == "/_stub/calls":
            self._send(200, dump([asdict(call) for call in stub.calls]))
        elif self.path == "/_stub/usage":
            self._send(200, dump(stub.served_usage()))
        else:
            self._send(404, dump({"error": "not found"}))

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
            status, payload = control(stub, self.path, raw)
            self._send(status, dump(payload))
        else:
            self._send(404, dump({"error": "not found"}))

    def _reply(self, reply: Reply, stopping: threading.Event) -> None:
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
        self._send_with(status, body, {})


def control(stub: StubLlmProxy, path: str, raw: bytes) -> tuple[int, Any]:
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
