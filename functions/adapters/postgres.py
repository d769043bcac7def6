"""Postgres connection for Lambda containers and local runs (psycopg 3).

One connection per container, opened on first use and reused across invocations;
a broken connection is dropped and reopened on the next call. The connection is in
autocommit mode: a single statement (every `call` of a SQL function, which is atomic
on its own) is one round trip, where BEGIN / statement / COMMIT would be three;
`transaction()` still wraps several statements in one explicit transaction. `prepare_threshold=None`
because Supabase's transaction pooler (Supavisor, port 6543) cannot keep server-side
prepared statements across transactions. psycopg's errors never leave this module:
connection trouble becomes `DatabaseUnavailable` (retry later), a rejected statement
`DatabaseError` or `NotFound`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from functions.core.errors import DatabaseError, DatabaseUnavailable, NotFound

log = logging.getLogger(__name__)

Row = dict[str, Any]
# Connection (08), resources (53), shutdown (57P), serialization/deadlock, and timeouts
# (statement 57014, lock 55P03): all may succeed if the same statement runs again later.
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "57014", "55P03", "40001", "40P01")


def _translate(exc: psycopg.Error) -> Exception:
    state = exc.sqlstate or ""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or state.startswith(
        _TRANSIENT_SQLSTATES
    ):
        return DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}")
    if state == "P0002":
        return NotFound(str(exc).splitlines()[0])
    return DatabaseError(f"{type(exc).__name__} [{state}]: {str(exc).splitlines()[0]}")


class Database:
    """A lazily opened, self-healing connection; thread-safe by serialising use.

    A Lambda container handles one event at a time, so one connection is enough; local
    runs share one `Database` per worker. Each `transaction()` commits or rolls back.

    `clock` is time as a port, in SQL too: when given (`cmon replay` passes the replayed
    candle's time), every transaction first sets the transaction-local `cmon.now`, which
    `public.cmon_now()` reads in place of `now()`, so claims, leases and staleness behave
    as they did when the candle was live. Without it the database's own clock rules.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        connect_timeout_s: int = 5,
        application_name: str = "cmon",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._url = url
        self._clock = clock
        self._connect_timeout_s = connect_timeout_s
        self._application_name = application_name
        self._conn: psycopg.Connection[Row] | None = None
        self._lock = threading.RLock()

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            self._conn = psycopg.connect(
                self._url() if callable(self._url) else self._url,
                row_factory=dict_row,
                prepare_threshold=None,
                connect_timeout=self._connect_timeout_s,
                application_name=self._application_name,
                autocommit=True,
            )
        except psycopg.Error as exc:
            self._conn = None
            raise _translate(exc) from exc
        return self._conn

    @contextmanager
    def _connected(self) -> Iterator[psycopg.Connection[Row]]:
        """The connection, held by this thread; psycopg errors translated at the boundary
        (a broken connection is reopened by the next `_connection()`)."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Row]]:
        """Run a block in one explicit transaction (BEGIN ... COMMIT, or ROLLBACK on error)."""
        with self._connected() as conn, conn.transaction():
            if self._clock is not None:
                moment = self._clock()
                if moment.tzinfo is None:
                    raise ValueError("the database clock must return an aware datetime")
                conn.execute("select set_config('cmon.now', %s, true)", (moment.isoformat(),))
            yield conn

    def call(self, function: str, **params: Any) -> Any:
        """`select public.<function>(p_name => value, ...)` in its own transaction.

        Named arguments (`=>`) keep calls readable and immune to parameter order; dicts
        and lists are sent as jsonb.
        """
        if not function.replace("_", "").isalnum():
            raise ValueError(f"not a function name: {function!r}")
        args = ", ".join(f"p_{name} => %({name})s" for name in params)
        values = {k: Jsonb(v) if isinstance(v, Mapping | list) else v for k, v in params.items()}
        row = self._one_statement(f"select public.{function}({args}) as result", values, all_rows=False)
        return None if row is None else row["result"]

    def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        rows: list[Row] = self._one_statement(sql, params or {}, all_rows=True)
        return rows

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        row: Row | None = self._one_statement(sql, params or {}, all_rows=False)
        return row

    def _one_statement(self, sql: str, params: Mapping[str, Any], *, all_rows: bool) -> Any:
        """One statement, one round trip: on the autocommit connection it is its own
        transaction. With a clock, `cmon.now` must be set in the same transaction first,
        so it takes the explicit `transaction()` path."""
        scope = self.transaction() if self._clock is not None else self._connected()
        with scope as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if all_rows else cursor.fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
