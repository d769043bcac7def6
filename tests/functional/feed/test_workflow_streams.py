"""Dynamic subscriptions read from a real Postgres (the active workflows' pairs)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from feed_service.streams import StreamId
from feed_service.subscriptions import WorkflowStreams


@pytest.fixture
def schedules_url(pg_admin_url: str) -> Iterator[str]:
    """A scratch database with just the columns the feed reads."""
    name = f"feed_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_active_workflow_pairs_become_streams(schedules_url: str) -> None:
    with psycopg.connect(schedules_url, autocommit=True) as conn:
        conn.execute(
            "create table public.workflow_schedules (id serial primary key, "
            "symbol text not null, interval text not null, is_active boolean)"
        )
        conn.execute(
            "insert into public.workflow_schedules (symbol, interval, is_active) values"
            " ('BTCUSDT', '1m', true), ('BTCUSDT', '1m', true),"
            " ('ETHUSDT', '5m', true), ('SOLUSDT', '1h', false),"
            " ('bad symbol', '1m', true), ('BNBUSDT', '7m', true)"
        )

    streams = asyncio.run(WorkflowStreams(schedules_url)())

    assert streams == {StreamId("BTCUSDT", "1m"), StreamId("ETHUSDT", "5m")}
