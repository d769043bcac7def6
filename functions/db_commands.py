"""`cmon db status` (and the other `cmon db` commands beyond `migrate`): the command logic,
so that functions/cli.py only registers parsers."""

from __future__ import annotations

import json
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
