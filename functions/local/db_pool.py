"""One Postgres connection per thread, for the API under uvicorn in `cmon local`.

A Lambda container handles one request at a time, so the production `Database` is one
connection, serialised. Under uvicorn the webhook work runs in a thread pool (40 threads
by default) and a burst -- pg_net sends up to 200 requests at once -- would queue behind
that one connection: each commit waits for the previous one (measured: p99 8.8 s for a
burst of 200 on this machine). Giving each thread its own connection lets Postgres work
on them in parallel and group their commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

from functions.adapters.postgres import Database, Row


class PerThreadDatabase(Database):
    """A `Database` whose every thread has its own lazily opened `Database`.

    Only `transaction`, `_one_statement` and `close` are overridden: every other method
    goes through them, so the behaviour (errors translated, reconnect after a break) is
    the production class's own."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._pool_url = url
        self._pool_kwargs = kwargs
        self._local = threading.local()
        self._members: list[Database] = []
        self._members_lock = threading.Lock()

    def _mine(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = Database(self._pool_url, **self._pool_kwargs)
            self._local.db = db
            with self._members_lock:
                self._members.append(db)
        return db

    @property
    def connections(self) -> int:
        """How many threads have their own connection (a test and the bench read it)."""
        with self._members_lock:
            return len(self._members)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Row]]:
        with self._mine().transaction() as conn:
            yield conn

    def _one_statement(self, sql: str, params: Mapping[str, Any], *, all_rows: bool) -> Any:
        return self._mine()._one_statement(sql, params, all_rows=all_rows)

    def close(self) -> None:
        with self._members_lock:
            members = list(self._members)
        for db in members:
            db.close()
        super().close()
