"""infra/rollback.sql and infra/supabase_webhooks.sql run on the migrated schema.

Both use the real Postgres of the functional tests (embedded server, or
TEST_DATABASE_URL). Supabase's `supabase_functions.http_request` is replaced by a stub
trigger function: what is checked is that the triggers exist on the right tables, for
the right events, with the arguments Supabase's function expects.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.infra import _cfn

ROLLBACK = _cfn.ROOT / "infra" / "rollback.sql"
WEBHOOKS = _cfn.ROOT / "infra" / "supabase_webhooks.sql"
URL = "https://abc123.execute-api.ap-northeast-1.amazonaws.com/webhooks/supabase"
SECRET = "0123456789abcdef0123456789abcdef"

_STUB = """
create schema if not exists supabase_functions;
create or replace function supabase_functions.http_request() returns trigger
language plpgsql as $$ begin return null; end $$;
"""


def _filled(text: str) -> str:
    return text.replace("<WEBHOOK_URL>", URL).replace("<WEBHOOK_SECRET>", SECRET)


def test_rollback_disables_elite_auto_analysis_and_stops_workflows(db_url: str) -> None:
    elite, pro = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into public.user_profiles (id, subscription_tier) values (%s, 'elite'), (%s, 'pro')",
            (elite, pro),
        )
        elite_trader = conn.execute(
            "insert into public.traders (user_id, auto_analyze_signals) values (%s, true) returning id",
            (elite,),
        ).fetchone()
        pro_trader = conn.execute(
            "insert into public.traders (user_id, auto_analyze_signals) values (%s, true) returning id",
            (pro,),
        ).fetchone()
        assert elite_trader and pro_trader
        signal = conn.execute(
            "insert into public.signals (trader_id, symbol) values (%s, 'BTCUSDT') returning id",
            (elite_trader[0],),
        ).fetchone()
        assert signal
        conn.execute(
            "insert into public.workflow_schedules (workflow_type, signal_id, trader_id, symbol, interval)"
            " values ('setup_monitoring', %s, %s, 'BTCUSDT', '1m')",
            (signal[0], elite_trader[0]),
        )

        for _ in range(2):  # idempotent
            conn.execute(ROLLBACK.read_text())

        rows: dict[uuid.UUID, bool] = dict(
            conn.execute("select id, auto_analyze_signals from public.traders").fetchall()
        )
        assert rows == {elite_trader[0]: False, pro_trader[0]: True}
        workflow = conn.execute(
            "select is_active, stopped_reason, stopped_at is not null from public.workflow_schedules"
        ).fetchone()
        assert workflow == (False, "rollback", True)
        setting = conn.execute("select enabled from public.rollout_settings").fetchone()
        assert setting == (False,)


def test_webhook_triggers_are_created_with_supabase_arguments(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_STUB)
        for _ in range(2):  # re-runnable
            conn.execute(_filled(WEBHOOKS.read_text()))
        rows = conn.execute(
            """
            select c.relname, t.tgtype, t.tgnargs, t.tgargs
              from pg_trigger t join pg_class c on c.oid = t.tgrelid
             where t.tgname like 'cmon_%_webhook' order by c.relname
            """
        ).fetchall()
    # tgtype bits: 1 row, 2 before, 4 insert, 8 delete, 16 update.
    events = {
        name: {e for bit, e in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE")) if tgtype & bit}
        for name, tgtype, _, _ in rows
    }
    assert events == {
        "positions": {"INSERT", "UPDATE", "DELETE"},
        "signal_analyses": {"INSERT"},
        "signals": {"INSERT"},
    }
    for _, tgtype, nargs, raw in rows:
        assert tgtype & 1 and not tgtype & 2  # FOR EACH ROW, AFTER
        assert nargs == 5
        url, method, headers, params, timeout = bytes(raw).decode().split("\x00")[:5]
        assert (url, method, params, timeout) == (URL, "POST", "{}", "5000")  # README, "Webhook timeout"
        assert json.loads(headers) == {
            "Content-type": "application/json",
            "x-supabase-webhook-source": SECRET,
        }


def test_webhook_script_refuses_unfilled_placeholders(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_STUB)
        with pytest.raises(psycopg.errors.RaiseException, match="fill in"):
            conn.execute(WEBHOOKS.read_text())
