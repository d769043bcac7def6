"""`GET /health` for the container's HEALTHCHECK and the orchestrator's probe.

A connection can be "open" while delivering nothing, so health is judged on the data,
per stream: a stream is `ok` when its last close is at most a couple of intervals old
(plus a grace period, since Binance sends the closing frame up to ~2 s late),
`starting` before its first close within that limit, and `degraded` beyond it (a quiet
or delisted symbol, a stream Binance does not know). One degraded stream must not get
the whole task replaced again and again — a new task would not make a delisted symbol
trade — so the answer is 503 only when the task can serve no stream at all: every
stream degraded. With no stream subscribed (no active workflow yet) there is nothing to
fail: 200, `idle`.

The server is a few lines of asyncio instead of a web framework: the feed image stays
small and the endpoint has nothing else to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from feed_service.router import CandleRouter
from feed_service.timing import WallClock
from functions.core import intervals

log = logging.getLogger(__name__)

HealthReport = tuple[bool, dict[str, Any]]


def stream_health(
    router: CandleRouter,
    *,
    clock: WallClock = time.time,
    stale_after_intervals: float = 2.0,
    grace_s: float = 30.0,
) -> HealthReport:
    """(can serve at least one stream, body); the body lists every stream's age."""
    now = clock()
    streams: dict[str, Any] = {}
    serving = 0
    for stream, state in sorted(router.states().items()):
        length_s = intervals.interval_ms(stream.interval) / 1000
        limit_s = stale_after_intervals * length_s + grace_s
        closed = state.last_close_ms is not None
        age = now - (state.last_close_ms / 1000 if state.last_close_ms is not None else state.since)
        stale = age > limit_s
        status = "degraded" if stale else ("ok" if closed else "starting")
        serving += not stale
        streams[str(stream)] = {
            "status": status,
            "age_s": round(age, 3),
            "last_close_age_s": round(age, 3) if closed else None,
            "lag_s": round(max(0.0, age - length_s), 3),
            "stale": stale,
            "published": state.published,
            "backfilled": state.backfilled,
            "duplicates_dropped": state.duplicates,
        }
    healthy = serving > 0 or not streams
    if not streams:
        overall = "idle"
    elif not healthy:
        overall = "unhealthy"
    else:
        overall = "ok" if serving == len(streams) else "degraded"
    return healthy, {"status": overall, "serving": serving, "streams": streams}


def stream_lags(report: dict[str, Any]) -> list[float]:
    """Each stream's seconds overdue (0 when on time), for the FeedStreamLagSeconds metric."""
    return [float(s["lag_s"]) for s in report.get("streams", {}).values()]


class HealthServer:
    """Answers `GET /health` with `report()`; port 0 binds an ephemeral port."""

    def __init__(self, report: Callable[[], HealthReport], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._report = report
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("health server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("health endpoint on http://%s:%d/health", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] in ("GET", "HEAD") and parts[1].split("?")[0] == "/health":
                healthy, body = self._report()
                body.setdefault("status", "ok" if healthy else "unhealthy")
                status = "200 OK" if healthy else "503 Service Unavailable"
                payload = json.dumps(body).encode()
            else:
                status, payload = "404 Not Found", b'{"error":"not found"}'
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (payload if parts[:1] != ["HEAD"] else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError) as e:
            log.debug("health request aborted: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
