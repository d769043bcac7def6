"""`cmon db install-webhooks`: Supabase database webhooks whose secret lives in Vault.

pg_net and Vault cannot run here, so the database gets test-only stand-ins
(tests/support/supabase_standins.sql) with their real signatures: `net.http_post`
records each call, Vault stores secrets as the real one's API does. The trigger function
is checked against the bytes a real pg_net worker sent for Supabase's own
`supabase_functions.http_request` (tests/events/supabase/pg_net_captured_requests.json).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.adapters.supabase_webhooks import install
from functions.cli import main
from functions.core.errors import DatabaseError, InvalidInput

STANDINS = Path(__file__).resolve().parents[1] / "support" / "supabase_standins.sql"
CAPTURED = Path(__file__).resolve().parents[1] / "events" / "supabase" / "pg_net_captured_requests.json"
URL = "https://api.example.test/webhooks/supabase"
SECRET = "s3cret-webhook-value-0123456789"


def _standins(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STANDINS.read_text())


@pytest.fixture
def supa_db(db_url: str) -> str:
    """A migrated database with the pg_net and Vault stand-ins, and someone else's secret
    in Vault (stored first), which the trigger must never send."""
    _standins(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into vault.secrets (name, secret) values ('another_app_key', 'not-ours')")
    return db_url


def _calls(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select url, body, params, headers, timeout_milliseconds, "
            "array(select array[key, value] from jsonb_each_text(headers)) from net.calls order by id"
        ).fetchall()
    return [
        {"url": u, "body": b, "params": p, "headers": h, "timeout": t, "header_order": o}
        for u, b, p, h, t, o in rows
    ]


def _install_cli(url: str, monkeypatch: pytest.MonkeyPatch, secret: str | None, *extra: str) -> int:
    if secret is None:
        monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("WEBHOOK_SECRET", secret)
    return main(["db", "install-webhooks", "--json", "--database-url", url, "--url", URL, *extra])


def _seed_rows(url: str) -> None:
    """One signal, one analysis, a position opened, closed and deleted: 1 + 1 + 3 webhooks."""
    with psycopg.connect(url) as conn:
        user, trader, signal, position = (uuid.uuid4() for _ in range(4))
        conn.execute("insert into public.user_profiles (id) values (%s)", (user,))
        conn.execute("insert into public.traders (id, user_id) values (%s, %s)", (trader, user))
        conn.execute(
            "insert into public.signals (id, trader_id, symbol) values (%s, %s, 'BTCUSDT')", (signal, trader)
        )
        conn.execute(
            "insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type) "
            "values (%s, 'wait', 0.5, 'r', 'initial')",
            (signal,),
        )
        conn.execute(
            "insert into public.positions (id, trader_id, symbol, side, entry_price, contracts) "
            "values (%s, %s, 'ETHUSDT', 'long', 100, 1)",
            (position, trader),
        )
        conn.execute(
            "update public.positions set status = 'closed', exit_price = 110 where id = %s", (position,)
        )
        conn.execute("delete from public.positions where id = %s", (position,))


def test_install_sends_every_row_change_with_the_vault_secret(
    supa_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _install_cli(supa_db, monkeypatch, SECRET) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["secret"] == "created" and SECRET not in json.dumps(out)

    _seed_rows(supa_db)

    calls = _calls(supa_db)
    assert [(c["body"]["table"], c["body"]["type"]) for c in calls] == [
        ("signals", "INSERT"),
        ("signal_analyses", "INSERT"),
        ("positions", "INSERT"),
        ("positions", "UPDATE"),
        ("positions", "DELETE"),
    ]
    assert {c["url"] for c in calls} == {URL}
    assert {c["timeout"] for c in calls} == {5000}
    assert all(c["params"] == {} for c in calls)
    assert all(
        c["header_order"] == [["Content-type", "application/json"], ["x-supabase-webhook-source", SECRET]]
        for c in calls
    )
    update = calls[3]["body"]
    assert (update["old_record"]["status"], update["record"]["status"]) == ("open", "closed")
    assert calls[4]["body"]["record"] is None


def test_the_secret_is_nowhere_in_the_catalog(supa_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _install_cli(supa_db, monkeypatch, SECRET) == 0
    with psycopg.connect(supa_db) as conn:
        catalog = conn.execute(
            """
            select coalesce(string_agg(pg_get_triggerdef(t.oid) || encode(t.tgargs, 'escape'), ' '), '')
                || (select string_agg(prosrc || coalesce(array_to_string(proconfig, ','), ''), ' ')
                    from pg_proc)
            from pg_trigger t where not t.tgisinternal
            """
        ).fetchone()
        assert catalog is not None and "cmon_webhooks.http_request" in catalog[0]
        assert SECRET not in catalog[0]
        # The writer's role reads no secret: the function is SECURITY DEFINER.
        definer = conn.execute(
            "select prosecdef from pg_proc where oid = 'cmon_webhooks.http_request()'::regprocedure"
        ).fetchone()
        assert definer == (True,)


def test_rotating_the_secret_takes_effect_on_the_next_row_and_keep_keeps_it(
    supa_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _install_cli(supa_db, monkeypatch, SECRET) == 0
    assert _install_cli(supa_db, monkeypatch, "rotated-secret-value") == 0
    assert json.loads(capsys.readouterr().out.split("\n}\n")[1] + "\n}")["secret"] == "updated"
    assert _install_cli(supa_db, monkeypatch, None, "--keep-secret", "--timeout-ms", "3000") == 0
    assert json.loads(capsys.readouterr().out)["secret"] == "kept"

    _seed_rows(supa_db)

    calls = _calls(supa_db)
    assert {c["headers"]["x-supabase-webhook-source"] for c in calls} == {"rotated-secret-value"}
    assert {c["timeout"] for c in calls} == {3000}
    with psycopg.connect(supa_db) as conn:
        assert conn.execute("select fn from vault.calls order by id").fetchall() == [
            ("create_secret",),
            ("update_secret",),
        ]
        triggers = conn.execute(
            "select count(*) from pg_trigger where tgname like 'cmon\\_%%webhook' and not tgisinternal"
        ).fetchone()
    assert triggers == (3,)  # re-running replaced them, no second set


def test_a_missing_vault_secret_never_fails_the_writer(supa_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _install_cli(supa_db, monkeypatch, SECRET) == 0
    with psycopg.connect(supa_db) as conn:
        conn.execute("delete from vault.secrets where name = 'cmon_webhook_secret'")

    _seed_rows(supa_db)  # commits: the row changes are not refused

    assert _calls(supa_db) == []


def test_bad_input_is_refused_with_nothing_written(
    supa_db: str, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _install_cli(supa_db, monkeypatch, SECRET, "--timeout-ms", "500") == 1
    assert "1000..10000" in capsys.readouterr().err
    assert _install_cli(supa_db, monkeypatch, None) == 1
    assert "WEBHOOK_SECRET" in capsys.readouterr().err
    assert _install_cli(supa_db, monkeypatch, None, "--keep-secret") == 1
    assert "no Vault secret" in capsys.readouterr().err
    with pytest.raises(InvalidInput, match="http"):
        install(supa_db, url="ftp://x", secret=SECRET)
    with psycopg.connect(supa_db) as conn:
        assert conn.execute("select count(*) from vault.secrets where name like 'cmon%'").fetchone() == (0,)
        assert conn.execute("select to_regprocedure('cmon_webhooks.http_request()')").fetchone() == (None,)
    with psycopg.connect(supa_db, autocommit=True) as conn:  # pg_net missing: refused, Vault untouched
        conn.execute("drop schema net cascade")
    with pytest.raises(DatabaseError, match="pg_net"):
        install(supa_db, url=URL, secret=SECRET)
    with psycopg.connect(supa_db) as conn:
        assert conn.execute("select count(*) from vault.secrets where name like 'cmon%'").fetchone() == (0,)


# The exact bytes of a real pg_net + supabase_functions.http_request -----------------

FIXTURE_TABLES = """
create table public.signal_analyses (
    id uuid primary key, symbol text, details jsonb, decision text, interval text, confidence numeric,
    created_at timestamptz, workflow_id text, candle_close_time timestamptz);
create table public.positions (
    id integer primary key, side text, status text, symbol text, quantity numeric, closed_at timestamptz,
    opened_at timestamptz, exit_price numeric, updated_at timestamp, entry_price numeric,
    signal_analysis_id uuid);
create table public.signals (id integer primary key);
"""


@pytest.fixture
def fixture_db(pg_admin_url: str) -> Iterator[str]:
    """An empty database holding the illustrative tables of the recording."""
    name = f"w_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FIXTURE_TABLES)
        _standins(url)
        yield url
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def test_body_and_headers_are_the_recorded_pg_net_bytes(fixture_db: str) -> None:
    captured = json.loads(CAPTURED.read_text())["requests"]
    install(fixture_db, url=URL, secret="test-shared-secret")
    with psycopg.connect(fixture_db, options="-c TimeZone=UTC") as conn:
        conn.execute(
            "insert into public.signal_analyses values ('6f1c2b7e-3d4a-4c1e-9b2a-0d5e8f7a1c33', 'BTCUSDT', "
            """'{"reason": "no confirmation", "indicators": {"ema_fast": 64210.5, "ema_slow": 64198.25}}', """
            "'wait', '1h', 0.6200, '2026-11-23T07:00:01.234567+00:00', 'wf_ema_cross', "
            "'2026-11-23T06:59:59.999+00:00')"
        )
        conn.execute(
            "insert into public.positions values (1, 'long', 'open', 'BTCUSDT', 0.00150000, null, "
            "'2026-11-23T07:00:02+00:00', null, '2026-11-23T07:00:02', 64215.10, "
            "'6f1c2b7e-3d4a-4c1e-9b2a-0d5e8f7a1c33')"
        )
        conn.execute(
            "update public.positions set status = 'closed', closed_at = '2026-11-23T09:15:00+00:00', "
            "exit_price = 64890.00, updated_at = '2026-11-23T09:15:00' where id = 1"
        )
        conn.execute("delete from public.positions where id = 1")
        sent = conn.execute(
            "select body::text, array(select array[key, value] from jsonb_each_text(headers)) "
            "from net.calls order by id"
        ).fetchall()

    recorded = {json.loads(r["body_raw"])["type"] + r["request_line"]: r for r in captured[:4]}
    expected = [
        recorded["INSERTPOST /webhooks/signal-analyses HTTP/1.1"],
        recorded["INSERTPOST /webhooks/positions HTTP/1.1"],
        recorded["UPDATEPOST /webhooks/positions HTTP/1.1"],
        recorded["DELETEPOST /webhooks/positions HTTP/1.1"],
    ]
    assert [body for body, _headers in sent] == [r["body_raw"] for r in expected]
    # The trigger-configured headers, in the order pg_net put them on the wire (between
    # its own Host/Accept and User-Agent/Content-Length); the recording's positions
    # webhook used x-supabase-webhook-source, as ours does.
    for (_body, headers), request in zip(sent[1:], expected[1:], strict=True):
        assert headers == [list(h) for h in request["headers"][2:-2]]
