"""EventBridge publisher with a fake client: batching, partial failures, back-pressure."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from feed_service.binance import KlineParser
from feed_service.metrics import FeedMetrics
from feed_service.publisher import (
    CallbackPublisher,
    EventBridgePublisher,
    MemoryPublisher,
    Publisher,
    StdoutPublisher,
)
from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE, CandleClosed, Market
from functions.core.errors import PublishError
from functions.core.telemetry import MetricName
from tests.unit.feed.frames import kline


def candles(count: int) -> list[CandleClosed]:
    parser = KlineParser(Market.SPOT)
    result = []
    for i in range(count):
        frame = parser.parse(json.dumps(kline(i)))
        assert frame.candle is not None
        result.append(frame.candle)
    return result


class FlakyEvents:
    """Fails chosen entries (by open time) a number of times, like a throttled bus."""

    def __init__(self, fail_times: dict[str, int] | None = None, raise_first: int = 0) -> None:
        self.fail_times = dict(fail_times or {})
        self.raise_first = raise_first
        self.calls: list[list[dict[str, Any]]] = []
        self.accepted: list[dict[str, Any]] = []

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        assert len(Entries) <= 10
        if self.raise_first > 0:
            self.raise_first -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutEvents")
        results: list[dict[str, Any]] = []
        for entry in Entries:
            key = json.loads(entry["Detail"])["open_time"]
            if self.fail_times.get(key, 0) > 0:
                self.fail_times[key] -= 1
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                self.accepted.append(entry)
                results.append({"EventId": f"id-{len(self.accepted)}"})
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedEntryCount": failed, "Entries": results}


async def no_sleep(seconds: float) -> None:
    assert seconds <= 0.5  # the cap
    await asyncio.sleep(0)


def test_partial_failures_resend_only_the_failed_entries_until_published() -> None:
    batch = candles(23)
    flaky = {batch[i].to_detail()["open_time"]: times for i, times in ((1, 1), (3, 3), (22, 2))}
    client = FlakyEvents(flaky, raise_first=1)
    metrics = FeedMetrics("test")

    async def go() -> EventBridgePublisher:
        publisher = EventBridgePublisher(
            client, "bus", queue_size=5, metrics=metrics, backoff_max_s=0.5, sleep=no_sleep
        )
        for candle in batch:
            await publisher.publish(candle)
        await publisher.close()
        return publisher

    publisher = asyncio.run(go())
    details = [json.loads(e["Detail"]) for e in client.accepted]
    assert sorted(d["open_time"] for d in details) == sorted(c.to_detail()["open_time"] for c in batch)
    assert len(details) == 23  # nothing accepted twice
    assert {(e["Source"], e["DetailType"], e["EventBusName"]) for e in client.accepted} == {
        (EVENT_SOURCE, DETAIL_TYPE, "bus")
    }
    # Retries carried only the failed entries.
    retried = [call for call in client.calls[1:] if len(call) < 10]
    assert any(len(call) == 1 for call in retried)
    assert publisher.delivered == 23
    assert metrics.totals[MetricName.FEED_CANDLES_PUBLISHED] == 23


def test_gives_up_after_max_attempts_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    batch = candles(2)
    client = FlakyEvents({batch[0].to_detail()["open_time"]: 99})

    async def go() -> EventBridgePublisher:
        publisher = EventBridgePublisher(client, "bus", max_attempts=3, sleep=no_sleep)
        for candle in batch:
            await publisher.publish(candle)
        await publisher.close()
        return publisher

    publisher = asyncio.run(go())
    assert publisher.given_up == 1 and publisher.delivered == 1
    assert len(client.calls) == 3
    assert any("gave up" in r.getMessage() for r in caplog.records)


def test_bounded_queue_pushes_back_on_the_producer() -> None:
    release = threading.Event()

    class BlockedEvents(FlakyEvents):
        def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            release.wait(10)
            return super().put_events(Entries=Entries)

    client = BlockedEvents()
    batch = candles(30)

    async def go() -> tuple[int, bool]:
        publisher = EventBridgePublisher(client, "bus", queue_size=3)
        producer = asyncio.create_task(_publish_all(publisher, batch))
        # The writer holds one batch in PutEvents and 3 more wait in the queue; then the
        # producer must block rather than buffer the rest.
        for _ in range(200):
            await asyncio.sleep(0.001)
        blocked = not producer.done()
        release.set()
        await producer
        await publisher.close()
        return len(client.accepted), blocked

    accepted, blocked = asyncio.run(go())
    assert blocked
    assert accepted == 30


async def _publish_all(publisher: Publisher, batch: list[CandleClosed]) -> None:
    for candle in batch:
        await publisher.publish(candle)


def test_publish_after_close_is_an_error() -> None:
    async def go() -> None:
        publisher = EventBridgePublisher(FlakyEvents(), "bus")
        await publisher.close()
        with pytest.raises(PublishError):
            await publisher.publish(candles(1)[0])

    asyncio.run(go())


def test_simple_sinks_satisfy_the_protocol() -> None:
    seen: list[CandleClosed] = []
    out = io.StringIO()

    async def on_candle(candle: CandleClosed) -> None:
        seen.append(candle)

    sinks: list[Publisher] = [
        MemoryPublisher(),
        CallbackPublisher(on_candle),
        CallbackPublisher(seen.append),
        StdoutPublisher(out),
    ]
    batch = candles(2)

    async def go() -> None:
        for sink in sinks:
            assert isinstance(sink, Publisher)
            for candle in batch:
                await sink.publish(candle)
            await sink.close()

    asyncio.run(go())
    assert seen == batch + batch
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [c.to_detail() for c in batch]


def test_putevents_retries_wait_on_the_shared_policy() -> None:
    # One entry failing four times: the waits are the full-jitter ceilings (the draw is
    # the window's top), 0.1 s doubling per failed attempt up to the 0.5 s cap.
    batch = candles(1)
    client = FlakyEvents({batch[0].to_detail()["open_time"]: 4})
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def go() -> EventBridgePublisher:
        publisher = EventBridgePublisher(client, "bus", backoff_max_s=0.5, sleep=record, draw=lambda: 1.0)
        await publisher.publish(batch[0])
        await publisher.close()
        return publisher

    publisher = asyncio.run(go())
    assert publisher.delivered == 1 and len(client.calls) == 5
    assert waits == [0.1, 0.2, 0.4, 0.5]
