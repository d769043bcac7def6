"""Install cmon's three Supabase database webhooks with the secret in Supabase Vault.

The SQL (`supabase_webhooks.sql`, shipped in the package) is applied by
`cmon db install-webhooks`, not by a migration: it needs pg_net and Vault, which exist on
Supabase but not on the plain Postgres of tests and `cmon local` (whose webhooks are the
LISTEN/NOTIFY relay), and its URL differs per deployment. Secret, function and triggers
change in one transaction: a failure leaves the previous installation as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import psycopg

from functions.core.errors import DatabaseError, DatabaseUnavailable, InvalidInput

SQL_FILE = Path(__file__).with_name("supabase_webhooks.sql")
DEFAULT_SECRET_NAME = "cmon_webhook_secret"  # noqa: S105 - the name of the Vault entry
# pg_net gives up on a request after this long and never retries (see README, webhooks).
DEFAULT_TIMEOUT_MS = 5000
TRIGGERS = (
    ("signal_analyses", "cmon_signal_analyses_webhook"),
    ("positions", "cmon_positions_webhook"),
    ("signals", "cmon_signals_webhook"),
)


@dataclass(frozen=True)
class InstallResult:
    url: str
    timeout_ms: int
    secret_name: str
    secret: Literal["created", "updated", "kept"]
    triggers: list[str]


def validate(url: str, timeout_ms: int, secret_name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput(f"--url must be an http(s) URL, got {url!r}", field="url")
    if not 1000 <= timeout_ms <= 10000:
        raise InvalidInput("--timeout-ms must be 1000..10000 (the dashboard's range)", field="timeout_ms")
    if not secret_name or not secret_name.replace("_", "").isalnum():
        raise InvalidInput("--secret-name: letters, digits and _ only", field="secret_name")


def install(
    database_url: str,
    *,
    url: str,
    secret: str | None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    secret_name: str = DEFAULT_SECRET_NAME,
) -> InstallResult:
    """Store `secret` in Vault under `secret_name` (create or update; `None` keeps the
    stored one, which must exist), then (re)create the trigger function and triggers."""
    validate(url, timeout_ms, secret_name)
    if secret is not None and not secret.strip():
        raise InvalidInput("the webhook secret is empty", field="secret")
    try:
        with psycopg.connect(database_url, prepare_threshold=None) as conn, conn.transaction():
            if conn.execute("select to_regclass('vault.secrets')").fetchone() == (None,):
                raise InvalidInput("Supabase Vault is missing (vault.secrets): enable supabase_vault")
            row = conn.execute("select id from vault.secrets where name = %s", (secret_name,)).fetchone()
            action: Literal["created", "updated", "kept"]
            if secret is None:
                if row is None:
                    raise InvalidInput(
                        f"no Vault secret named {secret_name}: pass the secret", field="secret"
                    )
                action = "kept"
            elif row is None:
                conn.execute(
                    "select vault.create_secret(%s, %s, %s)",
                    (secret, secret_name, "cmon: x-supabase-webhook-source of the database webhooks"),
                )
                action = "created"
            else:
                conn.execute("select vault.update_secret(%s, %s)", (row[0], secret))
                action = "updated"
            for key, value in (
                ("cmon.webhook_url", url),
                ("cmon.webhook_timeout_ms", str(timeout_ms)),
                ("cmon.webhook_secret_name", secret_name),
            ):
                conn.execute("select set_config(%s, %s, true)", (key, value))
            conn.execute(SQL_FILE.read_text())
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"installing the webhooks failed: {str(exc).splitlines()[0]}") from exc
    return InstallResult(url, timeout_ms, secret_name, action, [name for _table, name in TRIGGERS])
