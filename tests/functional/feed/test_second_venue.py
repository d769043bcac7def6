"""The supervisor driven by a second, tiny venue over real WebSockets on loopback.

"Toy" shares nothing with Binance: other stream names, no streams in the URL, its own
request frames (`{"op":"sub","req":N,"topics":[...]}`, at most two topics each), its own
acks, candles and shutdown notice. If the connection, the supervisor or the router still
knew anything of Binance's wire, this would not subscribe, publish or rotate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from feed_service.publisher import MemoryPublisher
from feed_service.router import CandleRouter
from feed_service.streams import StreamId
from feed_service.supervisor import ConnectionPolicy, ShardSupervisor
from feed_service.venue import (
    OTHER_FRAME,
    SHUTDOWN_FRAME,
    Frame,
    FrameKind,
    MalformedFrame,
    Subscription,
    Venue,
)
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource
from tests.functional.feed.conftest import run
from tests.functional.feed.fake_binance import wait_until

BASE_MS = 1_700_000_040_000  # a 1m and 5m boundary


class ToyVenue:
    names_per_request = 2

    def stream_name(self, stream: StreamId) -> str:
        return f"candles.{stream.symbol}.{stream.interval}"

    def connect_url(self, base_url: str, names: Collection[str]) -> tuple[str, frozenset[str]]:
        return f"{base_url}/feed", frozenset()

    def request(self, kind: Subscription, request_id: int, names: Sequence[str]) -> str:
        op = "sub" if kind is Subscription.SUBSCRIBE else "unsub"
        return json.dumps({"op": op, "req": request_id, "topics": list(names)})

    def parse(self, text: str | bytes) -> Frame:
        try:
            message = json.loads(text)
        except ValueError as e:
            raise MalformedFrame(str(e)) from e
        if "ack" in message:
            return Frame(FrameKind.RESPONSE, request_id=message["ack"], error=message.get("nack"))
        if message.get("bye"):
            return SHUTDOWN_FRAME
        bar = message.get("bar")
        if bar is None:
            return OTHER_FRAME
        if not bar["final"]:
            return Frame(FrameKind.CANDLE_OPEN)
        _, symbol, interval = message["topic"].split(".")
        return Frame(
            FrameKind.CANDLE_CLOSED,
            candle=CandleClosed(
                exchange="toy",
                symbol=symbol,
                interval=interval,
                open_time=intervals.from_ms(bar["start"]),
                close_time=intervals.from_ms(intervals.close_ms(bar["start"], interval)),
                open=Decimal(bar["ohlcv"][0]),
                high=Decimal(bar["ohlcv"][1]),
                low=Decimal(bar["ohlcv"][2]),
                close=Decimal(bar["ohlcv"][3]),
                volume=Decimal(bar["ohlcv"][4]),
                trades=1,
                source=CandleSource.STREAM,
            ),
        )


class ToyServer:
    """Acks every request, remembers what each connection subscribed, pushes bars."""

    def __init__(self) -> None:
        self.conns: list[tuple[ServerConnection, set[str]]] = []
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.paths: list[str] = []

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        topics: set[str] = set()
        index = len(self.conns)
        self.conns.append((ws, topics))
        try:
            async for text in ws:
                request = json.loads(text)
                self.requests.append((index, request))
                if request["op"] == "sub":
                    topics.update(request["topics"])
                else:
                    topics.difference_update(request["topics"])
                await ws.send(json.dumps({"ack": request["req"]}))
        except ConnectionClosed:
            pass

    async def bar(self, conn: int, topic: str, index: int, *, final: bool = True) -> None:
        ws, topics = self.conns[conn]
        assert topic in topics, f"{topic} not subscribed on connection {conn}"
        step = intervals.interval_ms(topic.rsplit(".", 1)[1])
        bar = {"start": BASE_MS + index * step, "final": final, "ohlcv": ["10", "12", "9", "11", "3.5"]}
        await ws.send(json.dumps({"topic": topic, "bar": bar}))


def test_the_supervisor_subscribes_publishes_and_rotates_with_another_venue() -> None:
    venue: Venue = ToyVenue()
    streams = {StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "1m"), StreamId("SOLUSDT", "5m")}
    names = {venue.stream_name(s) for s in streams}

    async def scenario() -> None:
        server = ToyServer()
        async with serve(server.handle, "127.0.0.1", 0) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            policy = ConnectionPolicy(
                ws_url=f"ws://127.0.0.1:{port}",
                max_messages_per_second=200.0,
                watchdog_tick_s=0.01,
                backoff_base_s=0.01,
                backoff_max_s=0.05,
                connect_timeout_s=5.0,
            )
            sink = MemoryPublisher()
            shard = ShardSupervisor(0, policy, CandleRouter(sink), venue)
            await shard.update(streams)
            task = asyncio.create_task(shard.run())
            try:
                await wait_until(lambda: bool(server.conns) and server.conns[0][1] == names)
                # Its own frames: all three topics in two requests of at most two.
                requests = [r for c, r in server.requests if c == 0]
                assert [r["op"] for r in requests] == ["sub", "sub"]
                assert sorted(t for r in requests for t in r["topics"]) == sorted(names)
                assert [len(r["topics"]) for r in requests] == [2, 1]
                assert server.paths == ["/feed"]

                await server.bar(0, "candles.BTCUSDT.1m", 0, final=False)
                await server.bar(0, "candles.BTCUSDT.1m", 0)
                await server.bar(0, "candles.BTCUSDT.1m", 0)  # repeated: dropped
                await server.bar(0, "candles.SOLUSDT.5m", 0)
                await sink.wait_for(2)

                # Its shutdown notice: the replacement is opened and subscribed first.
                await server.conns[0][0].send(json.dumps({"bye": True}))
                await wait_until(lambda: len(server.conns) == 2 and server.conns[1][1] == names)
                await wait_until(lambda: shard.connections_opened == 2 and shard.reconnects == 1)
                assert shard.last_reason == "server shutdown"
                await server.bar(1, "candles.BTCUSDT.1m", 0)  # the overlap's duplicate
                await server.bar(1, "candles.BTCUSDT.1m", 1)
                await server.bar(1, "candles.ETHUSDT.1m", 0)
                await sink.wait_for(4)
            finally:
                shard.stop()
                await asyncio.wait_for(task, 5)
        assert [(c.exchange, c.symbol, c.interval, intervals.to_ms(c.open_time)) for c in sink.candles] == [
            ("toy", "BTCUSDT", "1m", BASE_MS),
            ("toy", "SOLUSDT", "5m", BASE_MS),
            ("toy", "BTCUSDT", "1m", BASE_MS + 60_000),
            ("toy", "ETHUSDT", "1m", BASE_MS),
        ]

    run(scenario())
