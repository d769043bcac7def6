"""The migration runner against a real, empty Postgres."""

from __future__ import annotations

import psycopg

from functions.adapters.migrations import discover, migrate, supabase_dir


def test_migrate_applies_everything_then_nothing(pg_admin_url: str) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists migrate_twice with (force)")
        conn.execute("create database migrate_twice")
    url = (
        pg_admin_url.replace("/postgres?", "/migrate_twice?")
        if "?" in pg_admin_url
        else pg_admin_url.rsplit("/", 1)[0] + "/migrate_twice"
    )
    files = discover(supabase_dir() / "migrations")

    first = migrate(url)
    second = migrate(url)

    assert [m.version for m in first.applied] == [m.version for m in files]
    assert second.applied == []
    assert second.already_applied == [m.version for m in files]
    with psycopg.connect(url) as conn:
        recorded = conn.execute(
            "select version, name from supabase_migrations.schema_migrations order by version"
        ).fetchall()
        assert recorded == [(m.version, m.name) for m in files]
        tables = {
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'public'"
            )
        }
    assert {
        "user_profiles",
        "traders",
        "signals",
        "signal_analyses",
        "positions",
        "workflow_schedules",
        "management_decisions",
        "notifications",
    } <= tables
