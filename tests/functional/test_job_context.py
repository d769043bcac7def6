"""A job's prompt context: one SQL function call, and the very bytes the old reads sent.

The oracle is the code this replaced, kept here verbatim (`_legacy_*`): four reads in
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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import psycopg
import pytest

from functions.adapters.contexts import HISTORY, PostgresContexts
from functions.adapters.llm_proxy import HttpLlmProxy
from functions.adapters.operations import json_ready
from functions.adapters.postgres import Database
from functions.core import intervals
from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.core.errors import NotFound
from functions.core.models import PositionContext, PositionSnapshot, SetupContext
from functions.services import analyse_setup, manage_position
from functions.services.jobs import WorkerConfig

T0 = datetime.fromisoformat("2025-10-25T10:00:00+00:00")
USER = UUID("00000000-0000-4000-8000-00000000a001")
TRADER = UUID("00000000-0000-4000-8000-00000000a002")
SIGNAL = UUID("00000000-0000-4000-8000-00000000a003")
POSITION = UUID("00000000-0000-4000-8000-00000000a004")
# Analyses: more than the prompt's history, two with the same created_at (the id decides).
ANALYSES = [UUID(f"00000000-0000-4000-8000-0000000b000{i}") for i in range(8)]
ZONES = ["UTC", "Asia/Kathmandu", "America/St_Johns"]  # +00:00, +05:45, -03:30 / -02:30


# -- the reads this replaced (the oracle) ------------------------------------------------------


def _legacy_setup_context(
    db: Database, *, workflow_id: UUID | None = None, signal_id: UUID | None = None
) -> SetupContext:
    if workflow_id is not None:
        wf = db.fetch_one(
            "select signal_id from public.workflow_schedules where id = %(id)s", {"id": workflow_id}
        )
        if wf is None:
            raise NotFound(f"workflow {workflow_id} not found")
        signal_id = wf["signal_id"]
    signal = db.fetch_one("select * from public.signals where id = %(id)s", {"id": signal_id})
    if signal is None:
        raise NotFound(f"signal {signal_id} not found")
    trader = db.fetch_one(
        "select id, user_id, name, auto_analyze_signals, filter from public.traders where id = %(id)s",
        {"id": signal["trader_id"]},
    )
    previous = db.fetch_all(
        "select decision, confidence, reasoning, analysis_type, candle_time, created_at"
        " from public.signal_analyses where signal_id = %(id)s"
        " order by created_at desc, id desc limit %(n)s",
        {"id": signal_id, "n": 5},
    )
    return SetupContext(
        workflow_id=workflow_id,
        signal_id=signal["id"],
        signal=json_ready(signal),
        trader=json_ready(trader or {}),
        previous_analyses=[json_ready(r) for r in previous],
    )


def _legacy_position_context(db: Database, workflow_id: UUID) -> PositionContext:
    row = db.fetch_one(
        "select p.*, w.id as workflow_id from public.workflow_schedules w"
        " join public.positions p on p.id = w.position_id where w.id = %(id)s",
        {"id": workflow_id},
    )
    if row is None:
        raise NotFound(f"position workflow {workflow_id} not found")
    recent = db.fetch_all(
        "select candle_time, action, params, status, rejection_reason, price, reasoning"
        " from public.management_decisions where position_id = %(id)s"
        " order by candle_time desc limit %(n)s",
        {"id": row["id"], "n": 5},
    )
    snapshot = PositionSnapshot.model_validate(row)
    row.pop("workflow_id")
    return PositionContext(
        workflow_id=workflow_id,
        trader_id=row["trader_id"],
        position=snapshot,
        position_row=json_ready(row),
        recent_decisions=[json_ready(r) for r in recent],
    )


# -- rows ---------------------------------------------------------------------------------------


def _seed(db: Database) -> tuple[UUID, UUID]:
    """Rows that exercise every formatting rule; returns (setup workflow, position workflow)."""
    db.fetch_one(
        "insert into public.user_profiles (id, email, subscription_tier, created_at)"
        " values (%(u)s, 'zoë@example.test', 'elite', %(t)s) returning id",
        {"u": USER, "t": T0},
    )
    db.fetch_one(
        "insert into public.traders (id, user_id, name, auto_analyze_signals, filter, created_at)"
        " values (%(t)s, %(u)s, %(n)s, true, %(f)s::jsonb, %(at)s) returning id",
        {
            "t": TRADER,
            "u": USER,
            "n": 'Zoë "the breakout" trader\n',
            "f": '{"interval": "1m", "min_confidence": 0.70, "tags": ["a", "é"], "tiny": 1e-7,'
            ' "big": 12345678901234567890}',
            "at": T0,
        },
    )
    db.fetch_one(
        "insert into public.signals (id, trader_id, symbol, status, created_at, updated_at)"
        " values (%(s)s, %(t)s, 'BTCUSDT', 'monitoring', %(c)s, %(u)s) returning id",
        {"s": SIGNAL, "t": TRADER, "c": T0 + timedelta(microseconds=123456), "u": T0 + timedelta(seconds=5)},
    )
    for i, analysis_id in enumerate(ANALYSES):
        initial = i == 0
        db.fetch_one(
            "insert into public.signal_analyses (id, signal_id, decision, confidence, reasoning, trade_plan,"
            " analysis_type, candle_time, total_tokens, created_at) values (%(id)s, %(s)s, %(d)s, %(c)s,"
            " %(r)s, %(p)s::jsonb, %(ty)s, %(ct)s, 1100, %(at)s) returning id",
            {
                "id": analysis_id,
                "s": SIGNAL,
                "d": "wait",
                "c": Decimal("0.6200") if i % 2 else Decimal("0.5"),
                "r": f"reason {i}: “quoted” — ünïcode\t{'x' * i}",
                "p": json.dumps({"side": "long", "entry": "64200.10", "stop_loss": 63800.5})
                if i == 3
                else None,
                "ty": "initial" if initial else "monitoring",
                "ct": None if initial else T0 + timedelta(minutes=i, microseconds=-1000 if i % 2 else 0),
                # The last two share a created_at: `id desc` orders them.
                "at": T0 + timedelta(minutes=min(i, 6), seconds=1, microseconds=999 * min(i, 6)),
            },
        )
    setup_wf = db.call("register_setup_monitoring", analysis_id=ANALYSES[0], max_reanalyses=10)
    db.fetch_one(
        "insert into public.positions (id, trader_id, signal_id, symbol, side, entry_price, contracts,"
        " initial_contracts, stop_loss, take_profit, opened_at) values (%(p)s, %(t)s, %(s)s, 'BTCUSDT',"
        " 'long', 64200.50, 0.00150000, 0.00150000, 63800.0, null, %(at)s) returning id",
        {"p": POSITION, "t": TRADER, "s": SIGNAL, "at": T0 + timedelta(minutes=7)},
    )
    position_wf = db.call("register_position_management", position_id=POSITION, check_gate=False)
    for i in range(7):
        db.fetch_one(
            "insert into public.management_decisions (position_id, candle_time, action, params, status,"
            " rejection_reason, price, reasoning, confidence) values (%(p)s, %(ct)s, %(a)s, %(pa)s::jsonb,"
            " %(st)s, %(rr)s, %(pr)s, %(r)s, 0.7000) returning id",
            {
                "p": POSITION,
                "ct": T0 + timedelta(minutes=8 + i, microseconds=-1 if i % 3 == 0 else 0),
                "a": "adjust_sl" if i % 2 else "hold",
                "pa": json.dumps({"stop_loss": "63900.00", "weight": 0.25}) if i % 2 else "{}",
                "st": "rejected" if i == 5 else "applied",
                "rr": "stop_loss_loosened" if i == 5 else None,
                "pr": Decimal("64231.50") + i,
                "r": f"décision {i}",
            },
        )
    return UUID(setup_wf["workflow_id"]), UUID(position_wf["workflow_id"])


def _in_zone(url: str, zone: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-c TimeZone={zone}')}"


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
    seed = Database(db_url)
    try:
        setup_wf, _ = _seed(seed)
    finally:
        seed.close()
    db = Database(_in_zone(db_url, zone))
    try:
        monitoring = AnalysisJob(
            workflow_id=setup_wf, workflow_type=WorkflowType.SETUP_MONITORING, candle=_candle(9)
        )
        initial = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=SIGNAL)
        old = _legacy_setup_context(db, workflow_id=setup_wf)
        new = PostgresContexts(db).setup_context(workflow_id=setup_wf)
        assert new == old
        assert _setup_body(monitoring, new) == _setup_body(monitoring, old)
        old_initial = _legacy_setup_context(db, signal_id=SIGNAL)
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
    seed = Database(db_url)
    try:
        _, position_wf = _seed(seed)
    finally:
        seed.close()
    db = Database(_in_zone(db_url, zone))
    try:
        job = AnalysisJob(
            workflow_id=position_wf, workflow_type=WorkflowType.POSITION_MANAGEMENT, candle=_candle(16)
        )
        old = _legacy_position_context(db, position_wf)
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
    seed = Database(db_url)
    try:
        setup_wf, _ = _seed(seed)
    finally:
        seed.close()
    db = Database(_in_zone(db_url, "Asia/Kathmandu"))
    try:
        ctx = PostgresContexts(db).setup_context(workflow_id=setup_wf)
    finally:
        db.close()
    assert ctx.signal["created_at"] == "2025-10-25T15:45:00.123456+05:45"
    assert ctx.signal["updated_at"] == "2025-10-25T15:45:05+05:45"
    assert ctx.signal["initial_claimed_at"] is None


class _CountingDatabase(Database):
    """Counts the transactions and statements the adapter runs (the round trips)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions = 0
        self.statements: list[str] = []

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
    seed = Database(db_url)
    try:
        setup_wf, position_wf = _seed(seed)
    finally:
        seed.close()
    db = _CountingDatabase(db_url)
    try:
        contexts = PostgresContexts(db)
        contexts.setup_context(workflow_id=setup_wf)
        assert (db.transactions, len(db.statements)) == (1, 1)
        assert "public.setup_job_context(" in db.statements[0]
        contexts.setup_context(signal_id=SIGNAL)
        contexts.position_context(position_wf)
        assert (db.transactions, len(db.statements)) == (3, 3)
        assert "public.position_job_context(" in db.statements[2]
    finally:
        db.close()


def test_an_unknown_workflow_or_signal_is_not_found(db_url: str) -> None:
    seed = Database(db_url)
    try:
        setup_wf, position_wf = _seed(seed)
    finally:
        seed.close()
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
