"""A fake Binance on loopback: a real websockets server and a real HTTP klines endpoint.

The test drives it: it decides which frames each connection gets, drops or silences
connections, and scripts REST answers (429, 418, rows). Nothing here sleeps for a
fixed time; waits are on conditions, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.unit.feed.frames import dumps, wire_name


async def wait_until(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state lives in many objects; polling is simplest
            await asyncio.sleep(0.005)
    assert predicate(), what


@dataclass
class FakeConn:
    index: int
    ws: ServerConnection
    path: str
    streams: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def combined(self) -> bool:
        return self.path.startswith("/stream")


class FakeBinanceWs:
    def __init__(self) -> None:
        self.conns: list[FakeConn] = []
        self.events: list[tuple[str, int]] = []
        self.acks = True
        self.refuse_handshakes = 0
        self.refused = 0
        self._server: Server | None = None

    async def __aenter__(self) -> FakeBinanceWs:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)
        return self

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.refuse_handshakes > 0:
            self.refuse_handshakes -= 1
            self.refused += 1
            return conn.respond(503, "try later\n")
        return None

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def open_conns(self) -> list[FakeConn]:
        return [c for c in self.conns if not c.closed]

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = ws.request.path
        conn = FakeConn(len(self.conns), ws, path)
        query = parse_qs(urlsplit(path).query)
        for group in query.get("streams", []):
            conn.streams.update(s for s in group.split("/") if s)
        self.conns.append(conn)
        self.events.append(("open", conn.index))
        try:
            async for message in ws:
                request = json.loads(message)
                conn.requests.append(request)
                if request.get("method") == "SUBSCRIBE":
                    conn.streams.update(request["params"])
                elif request.get("method") == "UNSUBSCRIBE":
                    conn.streams.difference_update(request["params"])
                if self.acks:
                    await ws.send(dumps({"result": None, "id": request["id"]}))
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self.events.append(("close", conn.index))

    async def send(self, conn: FakeConn, raw: dict[str, Any] | str) -> None:
        """Send one frame the way this connection asked for it (raw or combined)."""
        if isinstance(raw, str):
            await conn.ws.send(raw)
            return
        if "k" in raw:
            name = wire_name(raw["k"]["s"], raw["k"]["i"])
            assert name in conn.streams, f"{name} not subscribed on connection {conn.index}"
            message = {"stream": name, "data": raw} if conn.combined else raw
        else:
            message = {"stream": "!" + raw["e"], "data": raw} if conn.combined else raw
        await conn.ws.send(dumps(message))

    async def broadcast(self, raw: dict[str, Any]) -> int:
        sent = 0
        for conn in self.open_conns():
            if "k" not in raw or wire_name(raw["k"]["s"], raw["k"]["i"]) in conn.streams:
                try:
                    await self.send(conn, raw)
                    sent += 1
                except ConnectionClosed:
                    continue
        return sent

    async def drop(self, conn: FakeConn) -> None:
        """Cut the TCP connection without a closing handshake, like a network failure."""
        transport = conn.ws.transport
        transport.abort()
        await wait_until(lambda: conn.closed, what="dropped connection noticed")

    async def wait_conn(self, index: int, streams: set[str] | None = None, within: float = 10.0) -> FakeConn:
        def ready() -> bool:
            if len(self.conns) <= index:
                return False
            conn = self.conns[index]
            return streams is None or streams <= conn.streams

        await wait_until(ready, within, f"connection {index}")
        return self.conns[index]


class FakeKlinesRest:
    """`GET /api/v3/klines` and `/fapi/v1/klines` from scripted rows, in a thread."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[list[Any]]] = {}
        self.failures: list[tuple[int, str | None]] = []
        self.requests: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKlinesRest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append({"path": parts.path, **query})
            failure = self.failures.pop(0) if self.failures else None
        if parts.path not in ("/api/v3/klines", "/fapi/v1/klines"):
            self._reply(handler, 404, {"code": -1, "msg": "not found"})
            return
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            self._reply(handler, status, {"code": -1003, "msg": "Too many requests"}, headers)
            return
        rows = self.rows.get((query["symbol"], query["interval"]), [])
        start, end = int(query.get("startTime", 0)), int(query.get("endTime", 2**62))
        limit = int(query.get("limit", 500))
        selected = [r for r in rows if start <= r[0] <= end][:limit]
        self._reply(handler, 200, selected)

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        with self._lock:
            self.statuses.append(status)
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
