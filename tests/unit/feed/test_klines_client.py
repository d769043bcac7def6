"""REST backfill against httpx.MockTransport with a fake clock: paging, 429, 418."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from feed_service.binance import BackfillError, KlinesClient
from feed_service.streams import StreamId
from functions.core import intervals
from functions.core.contracts import CandleSource, Market
from functions.core.retry import BackoffPolicy
from tests.unit.feed.frames import BASE_MS, rest_row

BTC = StreamId("BTCUSDT", "1m")
URL = "https://api.binance.test/api/v3/klines"


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(
    handler: Callable[[httpx.Request], httpx.Response], time: FakeTime, **kwargs: Any
) -> tuple[KlinesClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KlinesClient(
        URL,
        Market.SPOT,
        http=http,
        clock=time.clock,
        monotonic=time.clock,
        sleep=time.sleep,
        backoff=BackoffPolicy(base_s=0.1, cap_s=1.0),
        # The top of the full-jitter window, so the waits are the ceilings themselves.
        **{"limit": 1000, "draw": lambda: 1.0, **kwargs},
    ), http


def serve_rows(
    rows: list[list[Any]], requests: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        q = request.url.params
        chosen = [r for r in rows if int(q["startTime"]) <= r[0] <= int(q["endTime"])]
        return httpx.Response(200, json=chosen[: int(q["limit"])])

    return handler


def test_pages_through_the_limit_and_keeps_only_closed_candles_in_range() -> None:
    requests: list[httpx.Request] = []
    # "Now" is inside candle 9: it is still open and must not be backfilled.
    time = FakeTime(BASE_MS / 1000 + 9 * 60 + 5)
    rest, http = client(serve_rows([rest_row(i) for i in range(10)], requests), time, limit=3)

    async def go() -> list[Any]:
        async with http:
            return await rest.fetch(BTC, BASE_MS + 60_000, BASE_MS + 10 * 60_000)

    candles = asyncio.run(go())
    opens = [(intervals.to_ms(c.open_time) - BASE_MS) // 60_000 for c in candles]
    assert opens == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {c.source for c in candles} == {CandleSource.BACKFILL}
    assert [int(r.url.params["startTime"]) for r in requests] == [BASE_MS + i * 60_000 for i in (1, 4, 7, 10)]
    assert requests[0].url.params["symbol"] == "BTCUSDT"
    assert requests[0].url.params["interval"] == "1m"


def test_429_waits_retry_after_then_completes() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429),
        httpx.Response(200, json=[rest_row(1)]),
    ]
    time = FakeTime(BASE_MS / 1000 + 3600)
    rest, http = client(lambda request: answers.pop(0), time, max_wait_s=60)

    candles = asyncio.run(rest.fetch(BTC, BASE_MS + 60_000, BASE_MS + 60_000))
    asyncio.run(http.aclose())
    assert len(candles) == 1
    assert time.sleeps[0] == 7  # Retry-After honoured
    assert time.sleeps[1] == 0.2  # no header: the shared policy's ceiling for attempt 2
    assert rest.throttled == 2


def test_418_ban_is_waited_out_when_short_and_fails_fast_when_long() -> None:
    answers = [
        httpx.Response(418, headers={"Retry-After": "30"}),
        httpx.Response(200, json=[rest_row(1)]),
        httpx.Response(418, headers={"Retry-After": "86400"}),
    ]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return answers.pop(0)

    time = FakeTime(BASE_MS / 1000 + 3600)
    rest, http = client(handler, time, max_wait_s=60)

    async def go() -> None:
        assert len(await rest.fetch(BTC, BASE_MS + 60_000, BASE_MS + 60_000)) == 1
        assert time.sleeps == [30]
        with pytest.raises(BackfillError, match="banned"):
            await rest.fetch(BTC, BASE_MS, BASE_MS)
        # While banned, no request goes out at all (that would extend the ban).
        with pytest.raises(BackfillError, match="banned"):
            await rest.fetch(BTC, BASE_MS, BASE_MS)
        await http.aclose()

    asyncio.run(go())
    assert len(calls) == 3


def test_server_errors_and_network_failures_are_retried_a_bounded_number_of_times() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if len(seen) % 2:
            seen.append(1)
            raise httpx.ConnectError("refused")
        seen.append(1)
        return httpx.Response(503)

    seen: list[int] = []
    time = FakeTime(0)
    rest, http = client(handler, time, max_attempts=4)
    with pytest.raises(BackfillError, match="after 4 attempts"):
        asyncio.run(rest.fetch(BTC, BASE_MS, BASE_MS))
    asyncio.run(http.aclose())
    assert len(seen) == 4
    # base 0.1 doubling per failed attempt (the draw is the window's top).
    assert time.sleeps == [0.1, 0.2, 0.4, 0.8]


def test_client_errors_are_not_retried() -> None:
    time = FakeTime(0)
    rest, http = client(lambda r: httpx.Response(400, json={"code": -1121}), time)
    with pytest.raises(BackfillError, match="400"):
        asyncio.run(rest.fetch(BTC, BASE_MS, BASE_MS))
    asyncio.run(http.aclose())
    assert rest.requests == 1
