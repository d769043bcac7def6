"""Apply `supabase/migrations/*.sql` in order, recorded where the Supabase CLI records them.

`supabase_migrations.schema_migrations(version, name, statements)` is the CLI's own
table, so `supabase db push` and `cmon db migrate` agree on what is applied. Each file
runs in its own transaction under an advisory lock, so two migrators never interleave
and a failed file leaves nothing half-applied. The local bootstrap (Supabase-only roles
and `auth.uid()`, created only where missing) runs first on every call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class MigrateResult:
    applied: list[Migration]
    already_applied: list[str]


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
    """Apply pending migrations; return what was applied and what already was."""
    folder = migrations_dir or supabase_dir() / "migrations"
    if not folder.is_dir():
        raise InvalidInput(f"no migrations folder at {folder} (pass --migrations-dir)")
    migrations = discover(folder)
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
                done = {
                    row[0]
                    for row in conn.execute("select version from supabase_migrations.schema_migrations")
                }
                applied: list[Migration] = []
                for migration in migrations:
                    if migration.version in done:
                        continue
                    progress(f"applying {migration.path.name}")
                    sql = migration.path.read_text()
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute(
                            "insert into supabase_migrations.schema_migrations (version, name, statements) "
                            "values (%s, %s, %s)",
                            (migration.version, migration.name, [sql]),
                        )
                    applied.append(migration)
            finally:
                conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    return MigrateResult(applied=applied, already_applied=sorted(done))
