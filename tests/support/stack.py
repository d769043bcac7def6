"""The whole serverless path on one machine, as the tests drive it.

Real Postgres (per-test database), moto over loopback for EventBridge and SQS, the stub
llm-proxy over loopback HTTP, and the real handlers called with real event shapes by
the trigger runner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from functions.adapters.aws import InMemoryMetrics
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.postgres import Database
from functions.core import intervals
from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE, CandleClosed, CandleSource
from functions.handlers import wiring
from functions.local.aws_stack import LocalStack, clients, create_stack
from functions.local.runner import TriggerRunner
from functions.local.stack import use_local_container
from functions.local.stub_llm import StubLlmProxy
from functions.settings import Settings

WEBHOOK_SECRET = "test-shared-secret"
ADMIN_KEY = "test-admin-key"


def candle(
    symbol: str = "BTCUSDT",
    interval: str = "1m",
    *,
    close_time: datetime | None = None,
    open_: str = "50000",
    close: str = "50010",
    high: str | None = None,
    low: str | None = None,
    source: str = "stream",
) -> CandleClosed:
    """A closed candle ending at `close_time` (default: the last full minute before now)."""
    length = intervals.interval_ms(interval)
    if close_time is None:
        now_ms = intervals.to_ms(datetime.now(UTC))
        open_ms = intervals.open_time_of(now_ms, interval) - length
    else:
        open_ms = intervals.to_ms(close_time) + 1 - length
    o, c = Decimal(open_), Decimal(close)
    return CandleClosed(
        symbol=symbol,
        interval=interval,
        open_time=intervals.from_ms(open_ms),
        close_time=intervals.from_ms(intervals.close_ms(open_ms, interval)),
        open=o,
        close=c,
        high=Decimal(high) if high else max(o, c) + 5,
        low=Decimal(low) if low else min(o, c) - 5,
        volume=Decimal("12.5"),
        trades=100,
        source=CandleSource(source),
    )


def next_candle(previous: CandleClosed, **kw: Any) -> CandleClosed:
    return candle(
        previous.symbol,
        previous.interval,
        close_time=previous.close_time + timedelta(milliseconds=intervals.interval_ms(previous.interval)),
        **kw,
    )


@dataclass
class Stack:
    db: Database
    settings: Settings
    aws: LocalStack
    sqs: Any
    events: Any
    llm: StubLlmProxy
    runner: TriggerRunner
    metrics: InMemoryMetrics

    def publish(self, c: CandleClosed) -> None:
        """What the feed does: PutEvents on the bus."""
        response = self.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(c.to_detail()),
                    "EventBusName": self.aws.bus_name,
                }
            ]
        )
        assert response["FailedEntryCount"] == 0

    def close_candle(self, c: CandleClosed) -> None:
        """Publish a candle and let every trigger run until the system is idle."""
        self.publish(c)
        self.runner.run_until_idle()

    def queue_depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"]) + int(
            attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        )


@contextmanager
def running_stack(db_url: str, **overrides: Any) -> Iterator[Stack]:
    sqs, events = clients()
    aws = create_stack(sqs, events)
    db = Database(db_url)
    metrics = InMemoryMetrics()
    with StubLlmProxy() as llm:
        settings = Settings(
            stage="test",
            database_url=SecretStr(db_url),
            llm_proxy_url=llm.url,
            llm_proxy_max_attempts=1,
            llm_proxy_timeout_s=5,
            webhook_secret=SecretStr(WEBHOOK_SECRET),
            admin_api_key=SecretStr(ADMIN_KEY),
            event_bus_name=aws.bus_name,
            setup_queue_url=aws.setup_queue_url,
            position_queue_url=aws.position_queue_url,
            **overrides,
        )
        client = HttpLlmProxy.from_settings(settings)
        use_local_container(settings, db=db, sqs=sqs, aws=aws, llm=client, metrics=metrics)
        try:
            yield Stack(
                db=db,
                settings=settings,
                aws=aws,
                sqs=sqs,
                events=events,
                llm=llm,
                runner=TriggerRunner(sqs, aws),
                metrics=metrics,
            )
        finally:
            wiring.use(None)
            client.close()
            db.close()
