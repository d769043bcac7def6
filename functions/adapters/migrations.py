"""Apply `supabase/migrations/*.sql` in order, recorded where the Supabase CLI records them.

`supabase_migrations.schema_migrations(version, name, statements)` is the CLI's own
table, so `supabase db push` and `cmon db migrate` agree on what is applied. Each file
runs in its own transaction under an advisory lock, so two migrators never interleave
and a failed file leaves nothing half-applied. The local bootstrap (Supabase-only roles
and `auth.uid()`, created only where missing) runs first on every call.

Migrations are append-only: the sha256 of every file applied is kept in a table of our
own, `supabase_migrations.cmon_checksums` (the CLI's table stays exactly as the CLI
expects), and `migrate` refuses to run while an applied file differs from what was
applied -- a database that applied the old text would never get the edit. Files applied
before checksums existed (or by `supabase db push`) get theirs recorded on the next run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from functions.core.errors import DatabaseError, DatabaseUnavailable, InvalidInput

_FILE_RE = re.compile(r"^(?P<version>\d{14})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 7_210_025_103  # any constant; identifies "cmon migrations" among advisory locks


def supabase_dir() -> Path:
    """The `supabase/` folder this installation ships: migrations, local bootstrap, seed.

    A wheel carries it as the `functions.supabase` package data (see setup.py); an
    editable install or a source checkout uses the repository's own `supabase/`. Never
    `site-packages/supabase`, where the `supabase` client package lives.
    """
    package = Path(__file__).resolve().parents[1]  # .../functions
    packaged = package / "supabase"
    if (packaged / "migrations").is_dir():
        return packaged
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "supabase" / "migrations").is_dir():
        return checkout / "supabase"
    raise InvalidInput(
        f"this installation of cmon ships no SQL (neither {packaged} nor a source checkout): "
        "reinstall the package, or pass --migrations-dir"
    )


def seed_sql() -> Path:
    """Demo rows (`supabase db reset` applies them too)."""
    return supabase_dir() / "seed.sql"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        """sha256 of the file's bytes: any edit, even whitespace, is a change."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrateResult:
    applied: list[Migration]
    already_applied: list[str]
    checksums_recorded: list[str]


class MigrationChanged(InvalidInput):
    """An applied migration's file differs from what was applied: append a new file instead."""


MigrationState = Literal["applied", "pending", "changed", "unverified", "missing"]


@dataclass(frozen=True)
class MigrationStatus:
    """One version as the database and the folder see it.

    `unverified`: applied, no checksum recorded yet (the next `migrate` records it);
    `missing`: applied, but no file of that version in the folder.
    """

    version: str
    name: str
    state: MigrationState
    file_checksum: str | None
    recorded_checksum: str | None


_CHECKSUM_TABLE = "supabase_migrations.cmon_checksums"
_CREATE_CHECKSUMS = f"""
create table if not exists {_CHECKSUM_TABLE} (
    version text primary key,
    name text not null,
    sha256 text not null check (sha256 ~ '^[0-9a-f]{{64}}$'),
    recorded_at timestamptz not null default now()
)"""
_UPSERT_CHECKSUM = (
    f"insert into {_CHECKSUM_TABLE} (version, name, sha256) values (%s, %s, %s) "
    "on conflict (version) do update set name = excluded.name, sha256 = excluded.sha256, "
    "recorded_at = now()"
)


def discover(migrations_dir: Path) -> list[Migration]:
    """Migrations in version order; a file not named `<14 digits>_<name>.sql` is an error."""
    found: list[Migration] = []
    for path in sorted(migrations_dir.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise InvalidInput(f"migration file name must be <YYYYMMDDHHMMSS>_<name>.sql: {path.name}")
        found.append(Migration(match["version"], match["name"], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise InvalidInput("two migrations share a version")
    return found


def migrate(
    database_url: str,
    *,
    migrations_dir: Path | None = None,
    bootstrap: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> MigrateResult:
    """Apply pending migrations; return what was applied and what already was.

    Raises `MigrationChanged` (nothing applied) when an applied file has changed."""
    migrations = discover(_folder(migrations_dir))
    bootstrap_sql = (bootstrap or supabase_dir() / "local_bootstrap.sql").read_text()
    try:
        with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                conn.execute(bootstrap_sql)
                conn.execute("create schema if not exists supabase_migrations")
                conn.execute(
                    "create table if not exists supabase_migrations.schema_migrations "
                    "(version text primary key, statements text[], name text)"
                )
                conn.execute(_CREATE_CHECKSUMS)
                done, recorded = _applied_and_recorded(conn)
                changed = [
                    m for m in migrations if m.version in recorded and recorded[m.version] != m.checksum
                ]
                if changed:
                    raise MigrationChanged(_changed_message(changed))
                backfilled: list[str] = []
                for migration in migrations:
                    if migration.version in done and migration.version not in recorded:
                        conn.execute(
                            _UPSERT_CHECKSUM, (migration.version, migration.name, migration.checksum)
                        )
                        backfilled.append(migration.version)
                if backfilled:
                    progress(f"recorded the checksum of {len(backfilled)} migration(s) applied before")
                applied: list[Migration] = []
                for migration in migrations:
                    if migration.version in done:
                        continue
                    progress(f"applying {migration.path.name}")
                    raw = migration.path.read_bytes()
                    sql = raw.decode()
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute(
                            "insert into supabase_migrations.schema_migrations (version, name, statements) "
                            "values (%s, %s, %s)",
                            (migration.version, migration.name, [sql]),
                        )
                        conn.execute(
                            _UPSERT_CHECKSUM,
                            (migration.version, migration.name, hashlib.sha256(raw).hexdigest()),
                        )
                    applied.append(migration)
            finally:
                conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    return MigrateResult(applied=applied, already_applied=sorted(done), checksums_recorded=backfilled)


def status(database_url: str, *, migrations_dir: Path | None = None) -> list[MigrationStatus]:
    """Every version in the folder or the database, in order, with its state. Read-only:
    a database never migrated shows everything pending."""
    migrations = discover(_folder(migrations_dir))
    try:
        with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
            done, recorded = _applied_and_recorded(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read the migration history: {str(exc).splitlines()[0]}") from exc
    rows: list[MigrationStatus] = []
    files = {m.version: m for m in migrations}
    for version in sorted(set(files) | set(done)):
        migration = files.get(version)
        file_sum = migration.checksum if migration else None
        recorded_sum = recorded.get(version)
        state: MigrationState
        if migration is None:
            state = "missing"
        elif version not in done:
            state = "pending"
        elif recorded_sum is None:
            state = "unverified"
        elif recorded_sum != file_sum:
            state = "changed"
        else:
            state = "applied"
        rows.append(
            MigrationStatus(
                version, migration.name if migration else done[version], state, file_sum, recorded_sum
            )
        )
    return rows


def _folder(migrations_dir: Path | None) -> Path:
    folder = migrations_dir or supabase_dir() / "migrations"
    if not folder.is_dir():
        raise InvalidInput(f"no migrations folder at {folder} (pass --migrations-dir)")
    return folder


def _applied_and_recorded(
    conn: psycopg.Connection[tuple[object, ...]],
) -> tuple[dict[str, str], dict[str, str]]:
    """(applied version -> name, version -> recorded sha256); empty where a table is missing."""
    tables = {
        str(row[0])
        for row in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'supabase_migrations'"
        )
    }
    done: dict[str, str] = {}
    if "schema_migrations" in tables:
        done = {
            str(v): str(n or "")
            for v, n in conn.execute("select version, name from supabase_migrations.schema_migrations")
        }
    recorded: dict[str, str] = {}
    if "cmon_checksums" in tables:
        recorded = {str(v): str(s) for v, s in conn.execute(f"select version, sha256 from {_CHECKSUM_TABLE}")}
    return done, recorded


def _changed_message(changed: list[Migration]) -> str:
    names = ", ".join(m.path.name for m in changed)
    return (
        f"applied migration(s) changed since they were applied: {names}. Migrations are "
        "append-only: restore the file(s) as applied and put the change in a new migration "
        "(`create or replace` in supabase/migrations/<new timestamp>_<name>.sql)"
    )
