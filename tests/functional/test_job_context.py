"""A job's prompt context: one SQL function call, and the very bytes the old reads sent.

The oracle is the code this replaced, kept verbatim in `tests/support/context_rows.py`
(`legacy_*`, with the rows): four reads in
four transactions, each row made JSON-ready by `json_ready` (Decimal → `format(v, "f")`,
datetime → `isoformat()`). Over the same rows — numbers with trailing zeros, timestamps
with and without microseconds, jsonb holding floats and non-ASCII text, more history
than the prompt takes, ties broken by id, three session time zones — the request body
llm-proxy receives must be byte-identical whichever way the context was read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters.contexts import HISTORY, PostgresContexts
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.operations import json_ready
from functions.adapters.postgres import Database
from functions.core import intervals
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.core.errors import NotFound
from functions.core.models import PositionContext, SetupContext
from functions.services import analyse_setup, manage_position
from functions.services.jobs import WorkerConfig
from tests.support.context_rows import (
    POSITION,
    SIGNAL,
    T0,
    in_zone,
    legacy_position_context,
    legacy_setup_context,
    seed,
)

ZONES = ["UTC", "Asia/Kathmandu", "America/St_Johns"]  # +00:00, +05:45, -03:30 / -02:30


# -- the bodies llm-proxy receives ------------------------------------------------------------------


def _candle(minutes: int) -> CandleClosed:
    open_ms = intervals.to_ms(T0 + timedelta(minutes=minutes))
    return CandleClosed(
        symbol="BTCUSDT",
        interval="1m",
        open_time=intervals.from_ms(open_ms),
        close_time=intervals.from_ms(intervals.close_ms(open_ms, "1m")),
        open=Decimal("64210.10"),
        high=Decimal("64250.00"),
        low=Decimal("64190.00"),
        close=Decimal("64231.50"),
        volume=Decimal("12.345"),
        trades=812,
    )


def _sent(send: Any) -> bytes:
    """The body the real httpx client puts on the wire for one call."""
    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if request.url.path.endswith("manage-position"):
            return httpx.Response(200, json={"action": "hold", "confidence": 0.5, "reasoning": "-"})
        return httpx.Response(200, json={"decision": "wait", "confidence": 0.5, "reasoning": "-"})

    with HttpLlmProxy("http://llm-proxy.test", "key", transport=httpx.MockTransport(answer)) as llm:
        send(llm)
    assert len(bodies) == 1
    return bodies[0]


def _setup_body(job: AnalysisJob, ctx: SetupContext) -> bytes:
    request = analyse_setup._request(job, ctx, WorkerConfig())
    return _sent(lambda llm: llm.analyze_signal(request, idempotency_key=job.dedup_key))


def _position_body(job: AnalysisJob, ctx: PositionContext) -> bytes:
    request = manage_position._request(job, ctx, WorkerConfig())
    return _sent(lambda llm: llm.manage_position(request, idempotency_key=job.dedup_key))


@pytest.mark.parametrize("zone", ZONES)
def test_the_setup_prompt_is_byte_identical_to_the_old_reads(db_url: str, zone: str) -> None:
    rows = Database(db_url)
    try:
        setup_wf, _ = seed(rows)
    finally:
        rows.close()
    db = Database(in_zone(db_url, zone))
    try:
        monitoring = AnalysisJob(
            workflow_id=setup_wf, workflow_type=WorkflowType.SETUP_MONITORING, candle=_candle(9)
        )
        initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)
        old = legacy_setup_context(db, workflow_id=setup_wf)
        new = PostgresContexts(db).setup_context(workflow_id=setup_wf)
        assert new == old
        assert _setup_body(monitoring, new) == _setup_body(monitoring, old)
        old_initial = legacy_setup_context(db, signal_id=SIGNAL)
        new_initial = PostgresContexts(db).setup_context(signal_id=SIGNAL)
        assert new_initial == old_initial
        assert _setup_body(initial, new_initial) == _setup_body(initial, old_initial)
    finally:
        db.close()
    body = json.loads(_setup_body(monitoring, new))
    # What the equality above protects, spelled out: the newest five, newest first, the
    # created_at tie broken by id; numbers as their decimal text; the column order.
    assert len(body["previous_analyses"]) == HISTORY
    assert [a["reasoning"][:8] for a in body["previous_analyses"]] == [f"reason {i}" for i in (7, 6, 5, 4, 3)]
    assert body["previous_analyses"][1]["confidence"] == "0.5000"
    assert list(body["signal"]) == [
        "id",
        "trader_id",
        "symbol",
        "status",
        "initial_claimed_at",
        "created_at",
        "updated_at",
    ]
    assert body["trader"]["filter"]["min_confidence"] == 0.7


@pytest.mark.parametrize("zone", ZONES)
def test_the_position_prompt_is_byte_identical_to_the_old_reads(db_url: str, zone: str) -> None:
    rows = Database(db_url)
    try:
        _, position_wf = seed(rows)
    finally:
        rows.close()
    db = Database(in_zone(db_url, zone))
    try:
        job = AnalysisJob(
            workflow_id=position_wf, workflow_type=WorkflowType.POSITION_MANAGEMENT, candle=_candle(16)
        )
        old = legacy_position_context(db, position_wf)
        new = PostgresContexts(db).position_context(position_wf)
        assert new == old
        assert _position_body(job, new) == _position_body(job, old)
    finally:
        db.close()
    body = json.loads(_position_body(job, new))
    assert (body["position"]["entry_price"], body["position"]["contracts"]) == ("64200.50", "0.00150000")
    assert body["position"]["take_profit"] is None
    assert [d["price"] for d in body["recent_decisions"]] == [f"{64231.50 + i:.2f}" for i in (6, 5, 4, 3, 2)]
    assert body["recent_decisions"][1]["rejection_reason"] == "stop_loss_loosened"


def test_the_timestamps_read_as_python_wrote_them(db_url: str) -> None:
    """Pinned on literals too (not only against the oracle): the offset, and a fraction
    only when there are microseconds."""
    rows = Database(db_url)
    try:
        setup_wf, _ = seed(rows)
    finally:
        rows.close()
    db = Database(in_zone(db_url, "Asia/Kathmandu"))
    try:
        ctx = PostgresContexts(db).setup_context(workflow_id=setup_wf)
    finally:
        db.close()
    assert ctx.signal["created_at"] == "2025-10-25T15:45:00.123456+05:45"
    assert ctx.signal["updated_at"] == "2025-10-25T15:45:05+05:45"
    assert ctx.signal["initial_claimed_at"] is None


class _CountingDatabase(Database):
    """Counts the statements the adapter runs and the explicit transactions around them.

    A lone statement (`call`, `fetch_*`) is its own round trip on the autocommit
    connection; statements inside `transaction()` add BEGIN and COMMIT."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions = 0
        self.statements: list[str] = []

    def _one_statement(self, sql: str, params: Any, *, all_rows: bool) -> Any:
        self.statements.append(sql)
        return super()._one_statement(sql, params, all_rows=all_rows)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as conn:
            self.transactions += 1
            statements = self.statements

            class _Spy:
                def execute(self, query: Any, params: Any = None) -> Any:
                    statements.append(str(query))
                    return conn.execute(query, params)

            yield _Spy()


def test_each_context_is_one_call_one_statement(db_url: str) -> None:
    rows = Database(db_url)
    try:
        setup_wf, position_wf = seed(rows)
    finally:
        rows.close()
    db = _CountingDatabase(db_url)
    try:
        contexts = PostgresContexts(db)
        contexts.setup_context(workflow_id=setup_wf)
        assert (db.transactions, len(db.statements)) == (0, 1)  # one statement, one round trip
        assert "public.setup_job_context(" in db.statements[0]
        contexts.setup_context(signal_id=SIGNAL)
        contexts.position_context(position_wf)
        assert (db.transactions, len(db.statements)) == (0, 3)
        assert "public.position_job_context(" in db.statements[2]
    finally:
        db.close()


def test_an_unknown_workflow_or_signal_is_not_found(db_url: str) -> None:
    rows = Database(db_url)
    try:
        setup_wf, position_wf = seed(rows)
    finally:
        rows.close()
    db = Database(db_url)
    unknown = UUID("00000000-0000-4000-8000-00000000dead")
    try:
        contexts = PostgresContexts(db)
        with pytest.raises(NotFound, match=f"^workflow {unknown} not found"):
            contexts.setup_context(workflow_id=unknown)
        with pytest.raises(NotFound, match=f"^signal {unknown} not found"):
            contexts.setup_context(signal_id=unknown)
        with pytest.raises(NotFound, match="position workflow"):
            contexts.position_context(unknown)
        with pytest.raises(NotFound, match="position workflow"):  # a setup workflow has no position
            contexts.position_context(setup_wf)
        assert contexts.position_context(position_wf).position.id == POSITION
    finally:
        db.close()


# Types whose JSON form `_prompt_row` knows to be what psycopg + json_ready produced.
_FORMATTED_TYPES = {
    "uuid",
    "text",
    "boolean",
    "integer",
    "bigint",
    "jsonb",
    "numeric",
    "timestamp with time zone",
}


def test_every_column_a_prompt_reads_has_a_type_the_formatting_knows(db_url: str) -> None:
    """A column of another type (float, date, array...) added to these tables would reach
    the prompt through `_prompt_row`'s default branch: teach it the type first."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "select c.relname, a.attname, format_type(a.atttypid, null) from pg_attribute a"
            " join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and a.attnum > 0 and not a.attisdropped and c.relname in"
            " ('signals', 'traders', 'signal_analyses', 'positions', 'management_decisions')"
        ).fetchall()
    assert rows
    assert {(t, c, ty) for t, c, ty in rows if ty not in _FORMATTED_TYPES} == set()


_ZONE_CHOICES = [
    "UTC",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Europe/Paris",
    "Pacific/Chatham",
    "America/Caracas",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    number=st.decimals(
        allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=None
    )
    | st.decimals(allow_nan=False, allow_infinity=False, places=12),
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(_ZONE_CHOICES),
)
def test_prompt_row_formats_as_the_python_reads_did(
    db_url: str, number: Decimal, moment: datetime, zone: str
) -> None:
    """Any numeric and any timestamptz, in any session zone: `_prompt_row` writes what
    psycopg + `json_ready` wrote for the same value read from the same session."""
    with psycopg.connect(in_zone(db_url, zone)) as conn:
        params = {"n": str(number), "t": moment}
        python_side = conn.execute(
            "select %(n)s::numeric as entry_price, %(t)s::timestamptz as opened_at", params
        ).fetchone()
        sql_side = conn.execute(
            "select public._prompt_row('public.positions', jsonb_build_object('entry_price', %(n)s::numeric,"
            " 'opened_at', %(t)s::timestamptz), array['entry_price', 'opened_at'])::text",
            params,
        ).fetchone()
    assert python_side is not None and sql_side is not None
    legacy = json_ready({"entry_price": python_side[0], "opened_at": python_side[1]})
    assert json.loads(sql_side[0]) == legacy
