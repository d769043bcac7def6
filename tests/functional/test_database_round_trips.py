"""A SQL function call is one statement on the wire: no BEGIN / COMMIT around it.

Every invariant is one SQL function, atomic on its own; on the autocommit connection a
`call` is one round trip instead of three (the workers make three per job: claim,
context, record). `transaction()` still groups statements, and a clock still shares the
transaction with the call. Seen in libpq's own protocol trace, not in our code.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters.postgres import Database
from functions.core.errors import DatabaseError


def _queries_sent(db: Database, work: Callable[[], Any]) -> list[str]:
    """The statements the client sent while `work` ran, one per round trip (libpq's trace:
    a frontend `Query`, or a `Parse` ... `Sync` sequence)."""
    db.fetch_one("select 1")  # connected before tracing
    conn = db._connection()
    with tempfile.TemporaryFile("w+b") as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            work()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        lines = trace.read().decode(errors="replace").splitlines()
    sent, syncs = [], 0
    for line in lines:  # `<time>\tF\t<length>\t<message>\t <arguments>`
        fields = line.split("\t")
        if len(fields) < 4 or fields[1] != "F":
            continue
        quoted = re.findall(r'"([^"]*)"', fields[4]) if len(fields) > 4 else []
        if fields[3] == "Query":
            sent.append(quoted[0])
        elif fields[3] == "Parse":
            sent.append(quoted[1])
        elif fields[3] == "Sync":
            syncs += 1
    assert syncs == sum(
        1 for line in lines if "\tF\t" in line and "\tParse\t" in line
    )  # one Sync per statement
    return sent


def test_a_function_call_is_one_statement_without_begin_or_commit(db: Database) -> None:
    sent = _queries_sent(db, lambda: db.call("valid_interval", interval="1m"))
    assert sent == ["select public.valid_interval(p_interval => $1) as result"]


def test_fetches_are_one_statement_too(db: Database) -> None:
    sent = _queries_sent(db, lambda: (db.fetch_one("select 1 as one"), db.fetch_all("select 2 as two")))
    assert sent == ["select 1 as one", "select 2 as two"]


def test_a_transaction_still_wraps_its_statements(db: Database) -> None:
    def two_in_one() -> None:
        with db.transaction() as conn:
            conn.execute("select 1")
            conn.execute("select 2")

    assert _queries_sent(db, two_in_one) == ["BEGIN", "select 1", "select 2", "COMMIT"]


def test_with_a_clock_the_call_shares_the_transaction_that_sets_it(db_url: str) -> None:
    moment = datetime(2017, 7, 9, 23, 59, 59, tzinfo=UTC)
    db = Database(db_url, clock=lambda: moment)
    try:
        sent = _queries_sent(db, lambda: db.call("cmon_now"))
        assert sent[0] == "BEGIN" and sent[-1] == "COMMIT" and len(sent) == 4
        assert db.call("cmon_now") == moment
    finally:
        db.close()


def test_a_rejected_statement_leaves_the_connection_usable(db: Database) -> None:
    with pytest.raises(DatabaseError):
        db.fetch_one("select 1 / 0")
    assert db.fetch_one("select 1 as one") == {"one": 1}  # no aborted transaction left behind
