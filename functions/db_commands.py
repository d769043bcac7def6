"""`cmon db status` and `cmon db install-webhooks`: the command logic,
so that functions/cli.py only registers parsers."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any


def db_status(database_url: str, *, migrations_dir: Path | None, as_json: bool) -> int:
    """Applied, pending, changed (and unverified/missing) migrations; exit 1 when one changed,
    so CI can gate on it before `cmon db migrate` refuses in production."""
    from functions.adapters.migrations import status

    rows = status(database_url, migrations_dir=migrations_dir)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    data: dict[str, Any] = {"counts": counts, "migrations": [asdict(r) for r in rows]}
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        width = max([len(f"{r.version}_{r.name}") for r in rows] or [9])
        print(f"{'migration'.ljust(width)}  state")
        print(f"{'-' * width}  ----------")
        for row in rows:
            print(f"{(row.version + '_' + row.name).ljust(width)}  {row.state}")
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no migrations"
        print(f"\n{summary}")
        if counts.get("changed"):
            print("changed files must be restored; put the change in a new migration (append-only)")
    return 1 if counts.get("changed") else 0


def install_webhooks(database_url: str, args: argparse.Namespace) -> int:
    """The secret comes from an environment variable (never argv, which `ps` shows) and
    goes to Vault as a bound parameter; the output names it, never prints it."""
    from functions.adapters.supabase_webhooks import install
    from functions.core.errors import InvalidInput

    secret: str | None = None
    if not args.keep_secret:
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise InvalidInput(
                f"${args.secret_env} is empty: export the webhook secret, or pass --keep-secret"
            )
    result = install(
        database_url, url=args.url, secret=secret, timeout_ms=args.timeout_ms, secret_name=args.secret_name
    )
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(
            f"installed {', '.join(result.triggers)} -> {result.url} (timeout {result.timeout_ms} ms); "
            f"Vault secret {result.secret_name}: {result.secret}"
        )
    return 0
