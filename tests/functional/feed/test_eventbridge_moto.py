"""The EventBridge publisher against moto's server: the event arrives per contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from feed_service.binance import KlineParser
from feed_service.metrics import FeedMetrics
from feed_service.publisher import EventBridgePublisher
from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE, CandleClosed, Market
from functions.core.telemetry import MetricName
from tests.unit.feed.frames import kline

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _candles(count: int) -> list[CandleClosed]:
    parser = KlineParser(Market.SPOT)
    candles = []
    for i in range(count):
        frame = parser.parse(json.dumps(kline(i)))
        assert frame.candle is not None
        candles.append(frame.candle)
    return candles


def test_published_candles_reach_a_rule_target_per_contract(moto_endpoint: str) -> None:
    events = boto3.client(
        "events",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sqs = boto3.client(
        "sqs",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bus = "cmon-feed-test"
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName="candles")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="candle-closed",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]}),
    )
    events.put_targets(
        Rule="candle-closed",
        EventBusName=bus,
        Targets=[
            {
                "Id": "queue",
                "Arn": queue_arn,
                "InputTransformer": {"InputPathsMap": {}, "InputTemplate": "<aws.events.event.json>"},
            }
        ],
    )
    candles = _candles(12)  # two PutEvents calls: 10 + 2
    metrics = FeedMetrics("test")

    async def publish() -> EventBridgePublisher:
        publisher = EventBridgePublisher(events, bus, queue_size=4, metrics=metrics)
        for candle in candles:
            await publisher.publish(candle)
        await publisher.close()
        return publisher

    publisher = asyncio.run(publish())
    received: list[dict[str, Any]] = []
    for _ in range(20):
        if len(received) >= len(candles):
            break
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        received.extend(json.loads(m["Body"]) for m in answer.get("Messages", []))
    assert publisher.calls >= 2
    assert metrics.totals[MetricName.FEED_CANDLES_PUBLISHED] == 12
    assert len(received) == 12
    assert {e["source"] for e in received} == {EVENT_SOURCE}
    assert {e["detail-type"] for e in received} == {DETAIL_TYPE}
    details = sorted((e["detail"] for e in received), key=lambda d: d["open_time"])
    assert details == [c.to_detail() for c in candles]
    assert details[0]["open"] == "100.10"
    assert details[0]["open_time"] == "2021-10-12T00:28:00.000Z"
    assert set(details[0]) == {
        "version",
        "exchange",
        "market",
        "symbol",
        "interval",
        "open_time",
        "close_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
        "source",
    }
