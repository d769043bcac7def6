"""A feed process killed hard (SIGKILL) between two closes and started again loses no
closed candle of the staleness window: the new process republishes each stream's last
`STALE_CANDLE_INTERVALS` closed candles from REST before the live ones.

Real parts throughout: `python -m feed_service` as a subprocess, the fake Binance over
real WebSocket and HTTP on loopback, EventBridge and SQS in moto's server (the bus's
rule delivers every event to a queue the test reads).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from functions.core import intervals
from functions.local.aws_stack import LocalStack, clients, create_stack
from tests.functional.feed.conftest import run
from tests.functional.feed.fake_binance import FakeBinanceWs, FakeKlinesRest, wait_until
from tests.unit.feed.frames import kline, rest_row

ROOT = Path(__file__).resolve().parents[3]
INTERVAL = "1s"
# Wider than a process restart on a busy 2-core machine (a few seconds of 1s candles).
WINDOW = 40
NOW = 2 * WINDOW

pytestmark = pytest.mark.usefixtures("moto_endpoint")


class Bus:
    """What reached EventBridge: the rule's queue, drained into (open index, source)."""

    def __init__(self, sqs: Any, stack: LocalStack, base_ms: int) -> None:
        self._sqs = sqs
        self._url = stack.fanout_queue_url
        self._base = base_ms
        self.seen: list[tuple[int, str]] = []

    def _drain(self) -> None:
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return
            for m in messages:
                detail = json.loads(m["Body"])["detail"]
                open_ms = intervals.to_ms(datetime.fromisoformat(detail["open_time"]))
                self.seen.append(((open_ms - self._base) // 1000, detail["source"]))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=m["ReceiptHandle"])

    async def wait_live(self, after: int, within: float = 60.0) -> int:
        """Wait for a live candle newer than `after`; the newest live index seen then.

        (SQS may hand over several at once: the newest is the feed's latest close.)"""
        found: list[int] = []

        async def poll() -> None:
            while not found:
                await asyncio.to_thread(self._drain)
                found.extend(i for i, source in self.seen if source == "stream" and i > after)
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), within)
        return max(found)

    async def settle(self) -> None:
        await asyncio.to_thread(self._drain)


def feed_env(ws: FakeBinanceWs, rest: FakeKlinesRest, stack: LocalStack) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FEED_", "BINANCE_")) and k not in ("DATABASE_URL", "STALE_CANDLE_INTERVALS")
    }
    env.update(
        {
            "BINANCE_MARKET": "spot",
            "BINANCE_WS_URL": ws.url,
            "BINANCE_REST_URL": rest.url,
            "FEED_STREAMS": f"BTCUSDT@{INTERVAL}",
            "EVENT_BUS_NAME": stack.bus_name,
            "STAGE": "test",
            "STALE_CANDLE_INTERVALS": str(WINDOW),
            "FEED_BACKOFF_BASE_S": "0.05",
            "FEED_BACKOFF_MAX_S": "0.2",
            "FEED_MAX_MESSAGES_PER_SECOND": "50",
        }
    )
    return env


async def start_feed(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "feed_service",
        "--market",
        "live",
        "--health-port",
        "-1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def test_sigkill_between_two_closes_then_restart_loses_no_candle_of_the_window() -> None:
    sqs, events = clients()
    stack = create_stack(sqs, events)
    now_ms = int(time.time() * 1000)
    # Candle `NOW` is the one open at the start; indexes stay positive (prices from them).
    base = intervals.open_time_of(now_ms, INTERVAL) - NOW * 1000
    bus = Bus(sqs, stack, base)

    async def closes(ws: FakeBinanceWs, stop: asyncio.Event) -> None:
        """Binance: each candle's closing frame, shortly after its close, to whoever listens."""
        index = NOW
        while not stop.is_set():
            close_at = intervals.close_ms(base + index * 1000, INTERVAL) / 1000 + 0.05
            await asyncio.sleep(max(0.0, close_at - time.time()))
            await ws.broadcast(kline(index, interval=INTERVAL, base=base))
            index += 1

    async def scenario() -> tuple[int, int, int]:
        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                rest.rows[("BTCUSDT", INTERVAL)] = [
                    rest_row(i, interval=INTERVAL, base=base) for i in range(NOW + 400)
                ]
                env = feed_env(ws, rest, stack)
                stop = asyncio.Event()
                binance = asyncio.create_task(closes(ws, stop))
                first = await start_feed(env)
                try:
                    killed_after = await bus.wait_live(after=-1)
                    first.send_signal(signal.SIGKILL)  # right after a close: between two closes
                    await first.wait()
                    # Candles keep closing while no feed runs. (The killed feed cannot have
                    # published a live candle past `down_until`: it died before that close.)
                    down_until = killed_after + 3
                    await wait_until(
                        lambda: time.time() * 1000 > intervals.close_ms(base + down_until * 1000, INTERVAL),
                        within=20,
                    )
                    second = await start_feed(env)
                    try:
                        back_at = await bus.wait_live(after=down_until)
                        await bus.settle()
                    finally:
                        second.send_signal(signal.SIGTERM)
                        await asyncio.wait_for(second.wait(), 20)
                    await bus.settle()
                finally:
                    stop.set()
                    binance.cancel()
                    await asyncio.gather(binance, return_exceptions=True)
                    if first.returncode is None:
                        first.kill()
                return killed_after, down_until, back_at

    killed_after, down_until, back_at = run(scenario(), within=150)

    indexes = {i for i, _ in bus.seen}
    # Every candle closed from the kill to the restarted feed's first live close arrived ...
    missing = [i for i in range(killed_after, back_at + 1) if i not in indexes]
    assert missing == [], sorted(bus.seen)
    # ... those closed while no feed ran came from REST ...
    gap = [i for i in range(killed_after + 1, down_until + 1) if (i, "backfill") not in bus.seen]
    assert gap == [], (killed_after, down_until, back_at, sorted(bus.seen))
    # ... and nothing older than the window was republished by the restarted feed.
    assert min(indexes) >= NOW - WINDOW


def test_start_and_every_reconnect_recover_the_window_without_waiting_for_a_live_close() -> None:
    """For a 1h stream the next live close is an hour away: the candles missed while the
    feed was down must go out as soon as a connection is up, not at that close."""
    from tests.functional.feed.conftest import feed_settings, running_feed

    async def scenario() -> list[tuple[int, str]]:
        now = intervals.open_time_of(int(time.time() * 1000), INTERVAL)
        base = now - NOW * 1000

        def index(open_ms: int) -> int:
            return (open_ms - base) // 1000

        async with FakeBinanceWs() as ws:
            with FakeKlinesRest() as rest:
                rest.rows[("BTCUSDT", INTERVAL)] = [
                    rest_row(i, interval=INTERVAL, base=base) for i in range(NOW + 400)
                ]
                settings = feed_settings(
                    ws, rest, feed_streams=f"BTCUSDT@{INTERVAL}", stale_candle_intervals=3
                )
                async with running_feed(settings) as (_, sink):
                    # At start: the last 3 closed candles, no live frame sent at all.
                    await sink.wait_for(3)
                    started = [index(intervals.to_ms(c.open_time)) for c in sink.candles]
                    assert started == list(range(started[0], started[0] + 3))
                    assert started[0] >= NOW - 3  # the last 3 closed when the feed started
                    # A connection lost, and refused for a few closes; then back.
                    ws.refuse_handshakes = 10_000
                    await ws.drop(ws.conns[0])
                    last = started[-1]
                    await wait_until(lambda: time.time() * 1000 > base + (last + 4) * 1000, within=20)
                    ws.refuse_handshakes = 0
                    await wait_until(
                        lambda: index(intervals.to_ms(sink.candles[-1].open_time)) >= last + 3, within=20
                    )
                return [(index(intervals.to_ms(c.open_time)), c.source.value) for c in sink.candles]

    published = run(scenario(), within=60)
    opens = [i for i, _ in published]
    assert opens == list(range(opens[0], opens[-1] + 1))  # in order, no hole, no repeat
    assert opens[0] >= NOW - 3
    assert {source for _, source in published} == {"backfill"}
