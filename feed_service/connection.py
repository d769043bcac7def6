"""One WebSocket connection to a venue's stream endpoint, venue-neutral.

The connection keeps the life of subscriptions (numbered requests, each awaited until
its answer, spaced by the per-connection message rate) but asks its `Venue` for
everything on the wire: the URL, the stream names, the request frames. It does not know
what the frames mean: it hands every frame to `on_message` (whose parser reports the
answers back through `resolve`) and lets the supervisor decide when to replace it.
Pings are answered by websockets itself; we send no pings of our own because venues
(Binance: 5 spot, 10 futures messages a second) count them against the same rate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from enum import StrEnum

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from feed_service.timing import RateLimiter
from feed_service.venue import Subscription, Venue
from functions.core.batches import chunks
from functions.core.errors import TransientError

log = logging.getLogger(__name__)

MessageHandler = Callable[["Connection", str | bytes], Awaitable[None]]


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class SubscriptionError(TransientError):
    """The venue refused or did not answer a subscribe/unsubscribe request."""


class Connection:
    def __init__(
        self,
        name: str,
        venue: Venue,
        base_url: str,
        on_message: MessageHandler,
        *,
        max_messages_per_second: float = 5.0,
        ack_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._venue = venue
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

    async def open(self, streams: Collection[str]) -> None:
        """Connect, subscribe to `streams` (wire names), and return once the venue
        confirmed them all."""
        url, in_url = self._venue.connect_url(self._base_url, streams)
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
        self.streams = set(in_url)
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader-{self.name}")
        await self.subscribe(set(streams) - in_url)

    async def subscribe(self, streams: Iterable[str]) -> None:
        names = sorted(set(streams) - self.streams)
        for chunk in chunks(names, self._venue.names_per_request):
            await self._request(Subscription.SUBSCRIBE, chunk)
            self.streams.update(chunk)

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        names = sorted(set(streams) & self.streams)
        for chunk in chunks(names, self._venue.names_per_request):
            await self._request(Subscription.UNSUBSCRIBE, chunk)
            self.streams.difference_update(chunk)

    def resolve(self, request_id: int, error: str | None) -> None:
        """Called by the frame handler when the venue answers a request."""
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(SubscriptionError(f"request {request_id} refused: {error}"))

    def request_shutdown(self) -> None:
        """The venue announced it will close this connection (Binance: `serverShutdown`)."""
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

    async def _request(self, kind: Subscription, names: Sequence[str]) -> None:
        ws = self._ws
        if ws is None or self.state is not ConnectionState.OPEN:
            raise SubscriptionError(f"{kind} on a connection that is not open")
        request_id = next(self._ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._limiter.acquire()
        try:
            await ws.send(self._venue.request(kind, request_id, names))
            async with asyncio.timeout(self._ack_timeout_s):
                await future
        except TimeoutError:
            raise SubscriptionError(f"{kind} {request_id} not answered") from None
        except ConnectionClosed as e:
            raise SubscriptionError(f"{kind} {request_id}: connection closed") from e
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
