"""The SQL check constraints and the Python enums name the same closed sets.

Read back from pg_catalog after the migrations ran: a value added on one side only (an
enum member without its migration, a constraint edited by hand) fails here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from uuid import uuid4

import psycopg
import pytest

from functions.adapters.postgres import Database
from functions.core.guardrails import check_action
from functions.core.models import PositionSnapshot, Side
from functions.core.vocabulary import ErrorKind, RejectionReason, ledger_outcomes

CONSTRAINTS = {
    ("management_decisions", "management_decisions_rejection_reason_known"): frozenset(RejectionReason),
    ("workflow_errors", "workflow_errors_error_kind_known"): frozenset(ErrorKind),
    ("llm_calls", "llm_calls_outcome_known"): ledger_outcomes(),
}


def _allowed(db: Database, table: str, name: str) -> frozenset[str]:
    row = db.fetch_one(
        "select pg_get_constraintdef(c.oid) as definition from pg_catalog.pg_constraint c"
        " join pg_catalog.pg_class t on t.oid = c.conrelid"
        " join pg_catalog.pg_namespace n on n.oid = t.relnamespace"
        " where n.nspname = 'public' and t.relname = %(t)s and c.conname = %(c)s and c.contype = 'c'",
        {"t": table, "c": name},
    )
    assert row is not None, f"no check constraint {name} on {table}"
    return frozenset(re.findall(r"'([^']*)'::text", row["definition"]))


@pytest.mark.parametrize(("table", "name"), sorted(CONSTRAINTS))
def test_the_check_constraint_lists_exactly_the_enum(db_url: str, table: str, name: str) -> None:
    db = Database(db_url)
    try:
        assert _allowed(db, table, name) == {str(v) for v in CONSTRAINTS[(table, name)]}
    finally:
        db.close()


def test_an_unknown_error_kind_is_refused_by_the_database(db_url: str) -> None:
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("insert into public.workflow_errors (error_kind, message) values ('llm_sneezed', 'x')")


def test_python_and_sql_give_an_out_of_range_reduce_one_name() -> None:
    position = PositionSnapshot(id=uuid4(), side=Side.LONG, entry_price=Decimal(100), contracts=Decimal(1))
    verdict = check_action("reduce", {"fraction": "1.5"}, position, Decimal(100))
    # the name record_management_decision gives the same rule (test_sql_guarantees)
    assert verdict.reason == "reduce_fraction_out_of_range"
