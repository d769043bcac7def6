"""Which streams to watch: the static list plus the pairs of active workflows.

The database is read periodically rather than pushed to us, so the feed needs no
inbound network path and survives a database outage: a failed refresh keeps the
current subscriptions (dropping them would silence every workflow) and tries again
at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from feed_service.streams import StreamId
from feed_service.supervisor import ShardPool
from functions.core.contracts import Market

log = logging.getLogger(__name__)

StreamProvider = Callable[[], Awaitable[set[StreamId]]]

# Only this feed's market: a spot feed subscribing a USD-M workflow's pair would publish
# spot candles that drive nobody (the fan-out matches the market) and cost a stream slot.
ACTIVE_PAIRS_SQL = (
    "select distinct symbol, interval from public.workflow_schedules where is_active and market = %(market)s"
)


class WorkflowStreams:
    """Reads `(symbol, interval)` of the active workflows of one market from Postgres.

    `prepare_threshold=None` because Supabase's transaction pooler (port 6543) hands
    each transaction to any backend, where a prepared statement of ours may not exist.
    """

    def __init__(self, database_url: str, market: Market, *, connect_timeout_s: float = 10.0) -> None:
        self._url = database_url
        self._market = market
        self._timeout = connect_timeout_s

    async def __call__(self) -> set[StreamId]:
        async with (
            await psycopg.AsyncConnection.connect(
                self._url,
                prepare_threshold=None,
                autocommit=True,
                connect_timeout=max(1, int(self._timeout)),
            ) as conn,
            conn.cursor() as cur,
        ):
            await cur.execute(ACTIVE_PAIRS_SQL, {"market": self._market.value})
            rows = await cur.fetchall()
        streams: set[StreamId] = set()
        for symbol, interval in rows:
            try:
                streams.add(StreamId(str(symbol).upper(), str(interval)))
            except ValueError as e:
                log.warning("active workflow with an unusable pair %r@%r ignored: %s", symbol, interval, e)
        return streams


class SubscriptionManager:
    def __init__(
        self,
        pool: ShardPool,
        static: frozenset[StreamId],
        *,
        provider: StreamProvider | None = None,
        refresh_s: float = 30.0,
    ) -> None:
        self._pool = pool
        self._static = static
        self._provider = provider
        self._refresh_s = refresh_s
        self._dynamic: set[StreamId] = set()
        self.refreshes = 0
        self.refresh_failures = 0

    def desired(self) -> set[StreamId]:
        return set(self._static) | self._dynamic

    async def refresh(self) -> None:
        if self._provider is not None:
            try:
                self._dynamic = await self._provider()
            except (psycopg.Error, OSError) as e:
                self.refresh_failures += 1
                log.warning(
                    "could not read active workflows (%s); keeping %d streams", e, len(self.desired())
                )
        self.refreshes += 1
        await self._pool.apply(self.desired())

    async def run(self) -> None:
        """Apply the subscriptions now, then refresh them until cancelled."""
        await self.refresh()
        if self._provider is None:
            return
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()
