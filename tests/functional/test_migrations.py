"""The migration runner against a real, empty Postgres."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from functions.adapters.migrations import MigrationChanged, discover, migrate, status, supabase_dir
from functions.cli import main


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


# Append-only, enforced: checksums ------------------------------------------------------


@pytest.fixture
def empty_db(pg_admin_url: str) -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "20260101000000_first.sql").write_text("create table public.first (id int primary key);\n")
    (d / "20260101000100_second.sql").write_text("create table public.second (id int primary key);\n")
    return d


def _recorded(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select version, sha256 from supabase_migrations.cmon_checksums").fetchall()
    return dict(rows)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrate_records_the_sha256_of_every_file_it_applies(empty_db: str, folder: Path) -> None:
    migrate(empty_db, migrations_dir=folder)

    assert _recorded(empty_db) == {
        "20260101000000": _sha(folder / "20260101000000_first.sql"),
        "20260101000100": _sha(folder / "20260101000100_second.sql"),
    }
    assert [(s.version, s.state) for s in status(empty_db, migrations_dir=folder)] == [
        ("20260101000000", "applied"),
        ("20260101000100", "applied"),
    ]


def test_an_edited_applied_migration_is_refused_by_name_and_nothing_is_applied(
    empty_db: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(empty_db, migrations_dir=folder)
    edited = folder / "20260101000000_first.sql"
    edited.write_text(edited.read_text() + "-- a comment is a change too\n")
    (folder / "20260101000200_third.sql").write_text("create table public.third (id int);\n")

    with pytest.raises(MigrationChanged, match=r"20260101000000_first\.sql") as refused:
        migrate(empty_db, migrations_dir=folder)

    assert "20260101000100_second.sql" not in str(refused.value)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("select to_regclass('public.third')").fetchone() == (None,)
    states = {s.version: s.state for s in status(empty_db, migrations_dir=folder)}
    assert states == {"20260101000000": "changed", "20260101000100": "applied", "20260101000200": "pending"}
    # The CLI: a clear line naming the file, exit 1; `db status` exits 1 too.
    assert main(["db", "migrate", "--database-url", empty_db, "--migrations-dir", str(folder)]) == 1
    assert "20260101000000_first.sql" in capsys.readouterr().err
    assert main(["db", "status", "--database-url", empty_db, "--migrations-dir", str(folder)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^20260101000000_first +changed$", out, re.M)
    assert "1 applied, 1 changed, 1 pending" in out


def test_migrations_applied_before_checksums_get_theirs_on_the_next_run(empty_db: str, folder: Path) -> None:
    migrate(empty_db, migrations_dir=folder)
    with psycopg.connect(empty_db) as conn:  # as a database migrated by an older cmon looks
        conn.execute("drop table supabase_migrations.cmon_checksums")
    assert {s.state for s in status(empty_db, migrations_dir=folder)} == {"unverified"}

    result = migrate(empty_db, migrations_dir=folder)

    assert result.applied == []
    assert result.checksums_recorded == ["20260101000000", "20260101000100"]
    assert _recorded(empty_db)["20260101000100"] == _sha(folder / "20260101000100_second.sql")
    second = folder / "20260101000100_second.sql"
    second.write_text("create table public.second (id bigint primary key);\n")
    with pytest.raises(MigrationChanged, match=r"20260101000100_second\.sql"):
        migrate(empty_db, migrations_dir=folder)


def test_status_json_shows_pending_on_a_fresh_database_and_missing_files(
    empty_db: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["db", "status", "--json", "--database-url", empty_db, "--migrations-dir", str(folder)]
    assert main(args) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["counts"] == {"pending": 2}

    migrate(empty_db, migrations_dir=folder)
    (folder / "20260101000100_second.sql").unlink()
    assert main(args) == 0
    after = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["state"]) for m in after["migrations"]] == [
        ("20260101000000", "applied"),
        ("20260101000100", "missing"),
    ]
    assert after["migrations"][0]["recorded_checksum"] == after["migrations"][0]["file_checksum"]
