"""One WebSocket connection to a Binance stream endpoint.

The connection knows the wire protocol of subscriptions (SUBSCRIBE / UNSUBSCRIBE with
numbered answers, the per-connection message rate) but not what the frames mean: it
hands every frame to `on_message` and lets the supervisor decide when to replace it.
Pings are answered by websockets itself; we send no pings of our own because Binance
counts them against the same 5 (spot) or 10 (futures) messages a second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from enum import StrEnum

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from feed_service.timing import RateLimiter
from functions.core.errors import TransientError

log = logging.getLogger(__name__)

# Streams named in the connect URL cost no control message; beyond this the URL gets
# long, so the rest is subscribed with messages.
URL_STREAMS_MAX = 100
PARAMS_PER_MESSAGE = 100

MessageHandler = Callable[["Connection", str | bytes], Awaitable[None]]


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class SubscriptionError(TransientError):
    """Binance refused or did not answer a SUBSCRIBE/UNSUBSCRIBE."""


class Connection:
    def __init__(
        self,
        name: str,
        base_url: str,
        on_message: MessageHandler,
        *,
        max_messages_per_second: float = 5.0,
        ack_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._base_url = base_url
        self._on_message = on_message
        self._limiter = RateLimiter(max_messages_per_second, monotonic=monotonic)
        self._ack_timeout_s = ack_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._monotonic = monotonic
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[None]] = {}
        self.state = ConnectionState.CONNECTING
        self.streams: set[str] = set()
        self.opened_at = monotonic()
        self.last_message_at = self.opened_at
        self.messages = 0
        self.shutdown_requested = False
        self.close_reason: str | None = None
        # Set whenever the supervisor should look at this connection again.
        self.attention = asyncio.Event()

    def url_for(self, streams: Collection[str]) -> str:
        first = sorted(streams)[:URL_STREAMS_MAX]
        return f"{self._base_url}/stream?streams={'/'.join(first)}" if first else f"{self._base_url}/ws"

    async def open(self, streams: Collection[str]) -> None:
        """Connect, subscribe to `streams`, and return once Binance confirmed them all."""
        url = self.url_for(streams)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._ws = await connect(
                    url, ping_interval=None, open_timeout=None, max_queue=1024, close_timeout=2
                )
        except (OSError, WebSocketException, TimeoutError) as e:
            self._mark_closed(f"connect failed: {type(e).__name__}: {e}")
            raise
        self.opened_at = self.last_message_at = self._monotonic()
        self.state = ConnectionState.OPEN
        in_url = set(sorted(streams)[:URL_STREAMS_MAX]) if "/stream?" in url else set()
        self.streams = set(in_url)
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader-{self.name}")
        await self.subscribe(set(streams) - in_url)

    async def subscribe(self, streams: Iterable[str]) -> None:
        names = sorted(set(streams) - self.streams)
        for chunk in _chunks(names, PARAMS_PER_MESSAGE):
            await self._request("SUBSCRIBE", chunk)
            self.streams.update(chunk)

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        names = sorted(set(streams) & self.streams)
        for chunk in _chunks(names, PARAMS_PER_MESSAGE):
            await self._request("UNSUBSCRIBE", chunk)
            self.streams.difference_update(chunk)

    def resolve(self, request_id: int, error: str | None) -> None:
        """Called by the frame handler when Binance answers a request."""
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(SubscriptionError(f"request {request_id} refused: {error}"))

    def request_shutdown(self) -> None:
        """Binance announced it will close this connection (`serverShutdown`)."""
        self.shutdown_requested = True
        self.attention.set()

    async def close(self, reason: str = "closed by us") -> None:
        if self.close_reason is None:
            self.close_reason = reason
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._mark_closed(reason)

    async def _request(self, method: str, params: list[str]) -> None:
        ws = self._ws
        if ws is None or self.state is not ConnectionState.OPEN:
            raise SubscriptionError(f"{method} on a connection that is not open")
        request_id = next(self._ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._limiter.acquire()
        try:
            await ws.send(json.dumps({"method": method, "params": params, "id": request_id}))
            async with asyncio.timeout(self._ack_timeout_s):
                await future
        except TimeoutError:
            raise SubscriptionError(f"{method} {request_id} not answered") from None
        except ConnectionClosed as e:
            raise SubscriptionError(f"{method} {request_id}: connection closed") from e
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "closed by server"
        try:
            async for message in ws:
                self.last_message_at = self._monotonic()
                self.messages += 1
                await self._on_message(self, message)
        except ConnectionClosed as e:
            reason = f"connection lost: {e}"
        except Exception as e:
            # A failing handler (e.g. the publisher refusing) must not leave a zombie
            # connection that still looks open: close it and let the supervisor decide.
            log.exception("frame handler failed on %s; closing the connection", self.name)
            reason = f"handler failed: {type(e).__name__}"
            await ws.close()
        finally:
            if self.close_reason is None:
                self.close_reason = reason
            self._mark_closed(self.close_reason)

    def _mark_closed(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.state = ConnectionState.CLOSED
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SubscriptionError(f"connection closed: {reason}"))
        self._pending.clear()
        self.attention.set()


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
