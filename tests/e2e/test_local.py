"""`cmon local` as a user runs it: a separate process on the simulated market.

The test plays the platform: it writes a trader, a signal and a `wait` initial analysis
with plain SQL, and then only watches the database. The row must reach the API through
the LISTEN/NOTIFY relay (the local Supabase webhook), register a workflow, and be
re-analysed at the next candle close by fan-out → SQS → worker → stub llm-proxy. Then
SIGINT must stop everything with exit code 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], log: Path, within_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {within_s} s; cmon local said:\n{log.read_text()[-4000:]}")


@pytest.fixture
def local_stack(db_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    log = tmp_path / "cmon-local.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "DATABASE_URL"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "functions.cli", "local", "--market", "simulate", "--speed", "120",
             "--database-url", db_url, "--port", str(port), "--reconcile-every", "0"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield process, f"http://127.0.0.1:{port}", log
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def test_a_wait_written_with_sql_is_analysed_at_the_next_candle_close(
    local_stack: tuple[subprocess.Popen[bytes], str, Path], db_url: str
) -> None:
    process, api, log = local_stack

    def healthy() -> bool:
        assert process.poll() is None, f"cmon local exited early:\n{log.read_text()[-4000:]}"
        try:
            return httpx.get(f"{api}/health", timeout=1).json() == {"status": "ok"}
        except httpx.HTTPError:
            return False

    wait_for("the API answering /health", healthy, log)

    user = uuid.uuid4()
    with psycopg.connect(db_url, row_factory=dict_row) as conn:  # one transaction, as the platform would
        conn.execute(
            "insert into public.user_profiles (id, email, subscription_tier)"
            " values (%s, 'e2e@example.test', 'elite')",
            (user,),
        )
        trader = conn.execute(
            "insert into public.traders (user_id, name, auto_analyze_signals, filter)"
            " values (%s, 'local e2e', false, %s) returning id",
            (user, json.dumps({"interval": "1m"})),
        ).fetchone()
        assert trader is not None
        signal_row = conn.execute(
            "insert into public.signals (trader_id, symbol) values (%s, 'BTCUSDT') returning id",
            (trader["id"],),
        ).fetchone()
        assert signal_row is not None
        signal_id = signal_row["id"]
        conn.execute(
            "insert into public.signal_analyses (signal_id, decision, confidence, reasoning, analysis_type)"
            " values (%s, 'wait', 0.6, 'initial, written by the platform', 'initial')",
            (signal_id,),
        )

    def rows(sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(db_url, row_factory=dict_row) as conn:
            return conn.execute(sql, {"s": signal_id}).fetchall()

    workflows = wait_for(
        "a setup workflow registered through the relay and the API",
        lambda: rows("select * from public.workflow_schedules where signal_id = %(s)s"),
        log,
    )
    assert [(w["workflow_type"], w["symbol"], w["interval"]) for w in workflows] == [
        ("setup_monitoring", "BTCUSDT", "1m")
    ]
    monitoring = wait_for(
        "a monitoring analysis at a candle close",
        lambda: rows(
            "select * from public.signal_analyses where signal_id = %(s)s and analysis_type = 'monitoring'"
        ),
        log,
    )
    assert monitoring[0]["candle_time"] is not None
    assert monitoring[0]["workflow_id"] == workflows[0]["id"]
    assert monitoring[0]["model"] == "stub-llm"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, log.read_text()[-4000:]
    output = log.read_text()
    assert "webhook   signal_analyses INSERT -> 200 registered" in output
    assert "stopped cleanly" in output
    # The relay's triggers are removed from a database the run did not create.
    assert rows("select tgname from pg_trigger where tgname = 'cmon_local_webhook'") == []


# -- the relay on its own: the exact Supabase body, after COMMIT only ----------------------


def test_relay_delivers_the_exact_supabase_body_after_commit_only(db_url: str) -> None:
    from functions.local import relay

    relay.install(db_url)
    bodies: list[str] = []

    def deliver(body: str) -> relay.Response:
        bodies.append(body)
        return relay.Response(200, {"action": "ignored"})

    webhooks = relay.WebhookRelay(db_url, deliver)
    webhooks.listen()
    try:
        with psycopg.connect(db_url, row_factory=dict_row) as conn:
            user = uuid.uuid4()
            conn.execute("insert into public.user_profiles (id) values (%s)", (user,))
            trader = conn.execute(
                "insert into public.traders (user_id) values (%s) returning id", (user,)
            ).fetchone()
            assert trader is not None
        with psycopg.connect(db_url) as plain:  # rolled back: pg_net would never send it
            plain.execute(
                "insert into public.signals (trader_id, symbol) values (%s, 'ETHUSDT')", (trader["id"],)
            )
            plain.rollback()
        with psycopg.connect(db_url, row_factory=dict_row) as conn:
            signal_row = conn.execute(
                "insert into public.signals (trader_id, symbol) values (%s, 'BTCUSDT') returning id",
                (trader["id"],),
            ).fetchone()
            assert signal_row is not None
        long_reasoning = "because " * 2000  # 16 kB: more than a NOTIFY payload may carry
        with psycopg.connect(db_url) as plain:
            plain.execute(
                "insert into public.signal_analyses (signal_id, decision, confidence, reasoning)"
                " values (%s, 'wait', 0.6200, %s)",
                (signal_row["id"], long_reasoning),
            )
        with psycopg.connect(db_url) as plain:
            position = plain.execute(
                "insert into public.positions (trader_id, symbol, side, entry_price, contracts)"
                " values (%s, 'BTCUSDT', 'long', 50000.50, 1) returning id",
                (trader["id"],),
            ).fetchone()
            assert position is not None
            plain.execute("update public.positions set status = 'closed' where id = %s", (position[0],))
        assert webhooks.drain() == 4
    finally:
        webhooks.close()
        relay.uninstall(db_url)

    parsed = [json.loads(body) for body in bodies]
    assert [(p["table"], p["type"]) for p in parsed] == [
        ("signals", "INSERT"),
        ("signal_analyses", "INSERT"),
        ("positions", "INSERT"),
        ("positions", "UPDATE"),
    ]
    assert all(list(p) == ["type", "table", "record", "schema", "old_record"] for p in parsed)
    assert bodies[0].startswith('{"type": "INSERT", "table": "signals", "record": {')  # jsonb text, as pg_net
    assert parsed[0]["record"]["symbol"] == "BTCUSDT" and parsed[0]["old_record"] is None
    assert parsed[1]["record"]["reasoning"] == long_reasoning
    assert '"confidence": 0.6200' in bodies[1]  # numbers keep their scale
    assert parsed[3]["old_record"]["status"] == "open" and parsed[3]["record"]["status"] == "closed"
    with psycopg.connect(db_url) as plain:
        left = plain.execute("select count(*) from pg_trigger where tgname = 'cmon_local_webhook'").fetchone()
    assert left == (0,)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("postgresql://postgres:@/postgres?host=/tmp/cmon-pg/pgdata", True),
        ("postgresql://postgres@localhost:5432/postgres", True),
        ("postgresql://postgres@127.0.0.1/postgres", True),
        ("postgresql:///postgres", True),
        ("postgresql://postgres:secret@db.abcdefgh.supabase.co:5432/postgres", False),
        ("postgresql://u@localhost,db.example.com/postgres", False),
    ],
)
def test_the_relay_only_alters_a_local_database(url: str, local: bool) -> None:
    from functions.local.relay import install, is_local_url

    assert is_local_url(url) is local
    if not local:
        with pytest.raises(ValueError, match="local database only"):
            install(url)
