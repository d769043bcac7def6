"""LISTEN/NOTIFY webhook relay: Supabase database webhooks, on a local Postgres.

On Supabase, a row change fires an AFTER trigger that POSTs
`{"type", "table", "record", "schema", "old_record"}` to the API through pg_net, after
COMMIT, once, without retry. Locally there is no pg_net, so `install()` adds triggers
that `pg_notify` the very same body (built by the same `jsonb_build_object`, see
`local_bootstrap_webhooks.sql`), and `WebhookRelay` LISTENs and POSTs each payload to
`/webhooks/supabase` with the secret header, as pg_net would. NOTIFY is sent at commit
and in commit order, which is exactly pg_net's "after COMMIT" guarantee.

Like pg_net, the relay does not retry a failed delivery: the reconciler is what makes
the system complete, and a local run should show the same behaviour as production.

Delivery is pluggable: `http_deliver` for `cmon local` (a real POST to uvicorn),
`lambda_deliver` for `cmon demo` (the API Lambda called in-process through Mangum with
an API Gateway HTTP API event, so no port is needed).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "cmon_webhooks"
WEBHOOK_PATH = "/webhooks/supabase"
SQL_FILE = Path(__file__).with_name("local_bootstrap_webhooks.sql")
# Headers as pg_net sends them for a Supabase webhook configured with a bearer secret.
USER_AGENT = "cmon-relay (pg_net compatible)"
_MARKER_KEY = "cmon_marker"
_OVERFLOW_KEY = "cmon_overflow_id"

_UNINSTALL_SQL = """
drop trigger if exists cmon_local_webhook on public.signal_analyses;
drop trigger if exists cmon_local_webhook on public.positions;
drop trigger if exists cmon_local_webhook on public.signals;
drop schema if exists cmon_local cascade;
"""


@dataclass(frozen=True)
class Response:
    """What the API answered: the status and the JSON body (None if not JSON)."""

    status: int
    body: Any


Deliver = Callable[[str], Response]


@dataclass(frozen=True)
class Delivery:
    """One webhook the relay delivered (or failed to): for the log lines and the summary."""

    table: str
    type: str
    record_id: str | None
    status: int | None
    answer: Any
    error: str | None
    elapsed_ms: float

    @property
    def action(self) -> str:
        if isinstance(self.answer, dict) and "action" in self.answer:
            return str(self.answer["action"])
        return "error" if self.status is None or self.status >= 400 else "ok"

    def describe(self) -> str:
        what = f"{self.table} {self.type}"
        if self.error is not None:
            return f"{what} -> not delivered ({self.error})"
        detail = self.action
        if isinstance(self.answer, dict):
            if self.answer.get("workflow_id"):
                detail += f" workflow {str(self.answer['workflow_id'])[:8]}"
            if self.answer.get("reason"):
                detail += f" ({self.answer['reason']})"
        return f"{what} -> {self.status} {detail}"


def is_local_url(url: str) -> bool:
    """True for a Unix-socket or loopback database: the only kind the relay may alter."""
    parts = urlsplit(url)
    hosts = [h for h in (parts.hostname or "").split(",") if h]
    hosts += parse_qs(parts.query).get("host", [])
    if not hosts:
        return True  # libpq's default: the local Unix socket
    return all(h.startswith("/") or h in ("localhost", "127.0.0.1", "::1") for h in hosts)


def install(database_url: str) -> None:
    """Create (or replace) the NOTIFY triggers. Refuses a non-local database: a real
    Supabase project has its own webhooks and must not get a second set."""
    if not is_local_url(database_url):
        raise ValueError("the webhook relay installs triggers on a local database only")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL_FILE.read_text())  # a trusted file, not user input


def uninstall(database_url: str) -> None:
    """Drop the triggers and the relay's schema (used when the database outlives the run)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_UNINSTALL_SQL)


def http_deliver(api_url: str, secret: str, *, timeout_s: float = 5.0) -> tuple[Deliver, Callable[[], None]]:
    """POST to `<api_url>/webhooks/supabase` like pg_net; returns (deliver, close)."""
    import httpx

    client = httpx.Client(
        base_url=api_url,
        timeout=timeout_s,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {secret}",
            "User-Agent": USER_AGENT,
        },
    )

    def deliver(body: str) -> Response:
        response = client.post(WEBHOOK_PATH, content=body.encode())
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        return Response(response.status_code, answer)

    return deliver, client.close


def http_api_event(body: str, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for `POST /webhooks/supabase`, as the
    `$default` stage hands it to the API Lambda."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": WEBHOOK_PATH,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "local.execute-api.localhost",
            "domainPrefix": "local",
            "http": {
                "method": "POST",
                "path": WEBHOOK_PATH,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": USER_AGENT,
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def lambda_deliver(secret: str) -> Deliver:
    """Deliver in-process to the API Lambda (FastAPI behind Mangum), no port needed."""
    from functions.handlers import api
    from functions.local.runner import LambdaContext

    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {secret}",
        "User-Agent": USER_AGENT,
    }

    def deliver(body: str) -> Response:
        response = api.handler(http_api_event(body, headers), LambdaContext("api"))
        try:
            answer: Any = json.loads(response.get("body") or "null")
        except ValueError:
            answer = None
        return Response(int(response["statusCode"]), answer)

    return deliver


@dataclass
class RelayStats:
    delivered: int = 0
    failed: int = 0
    by_action: Counter[str] = field(default_factory=Counter)


class WebhookRelay:
    """LISTEN on `cmon_webhooks` and deliver each payload, in order, once.

    Use `drain()` to deliver everything committed so far (the demo, tests), or `run(stop)`
    in a thread to relay continuously (`cmon local`). One connection, used by one thread.
    """

    def __init__(
        self,
        database_url: str,
        deliver: Deliver,
        *,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._url = database_url
        self._deliver = deliver
        self._on_delivery = on_delivery
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.stats = RelayStats()

    # -- connection --------------------------------------------------------------------

    def listen(self) -> None:
        """Open the listening connection. Notifications sent before this are not seen, as
        with pg_net a webhook fired while the API was unreachable is lost."""
        if self._conn is not None and not self._conn.closed:
            return
        self._conn = psycopg.connect(self._url, autocommit=True, application_name="cmon-relay")
        self._conn.execute(f"listen {CHANNEL}")  # a constant

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        self.listen()
        assert self._conn is not None
        return self._conn

    # -- relaying ----------------------------------------------------------------------

    def pump(self, timeout_s: float) -> int:
        """Deliver what arrives within `timeout_s` (returning early once something came);
        return how many were delivered."""
        payloads = self._receive(timeout_s, stop_after=1)
        return sum(1 for payload in payloads if self._handle(payload) is not None)

    def drain(self, timeout_s: float = 10.0) -> int:
        """Deliver every notification committed before this call, then return.

        A marker is notified last; notifications from different transactions arrive in
        commit order, so once the marker is back, everything before it was delivered.
        """
        conn = self._connection()
        marker = uuid.uuid4().hex
        conn.execute("select pg_notify(%s, %s)", (CHANNEL, json.dumps({_MARKER_KEY: marker})))
        deadline = time.monotonic() + timeout_s
        count = 0
        while True:
            seen = False
            for payload in self._receive(0.01):
                if _marker_of(payload) == marker:
                    seen = True
                elif self._handle(payload) is not None:
                    count += 1
            if seen:
                return count
            if time.monotonic() > deadline:
                raise TimeoutError(f"webhook relay: marker not seen within {timeout_s} s")

    def _receive(self, timeout_s: float, stop_after: int | None = None) -> list[str]:
        # Collected first, handled after: the generator holds the connection's lock, and
        # handling may query the connection (an overflowed body).
        notifies = self._connection().notifies(timeout=timeout_s, stop_after=stop_after)
        return [notify.payload for notify in notifies]

    def run(self, stop: threading.Event, *, poll_s: float = 0.25) -> None:
        """Relay until `stop` is set; reconnect (capped backoff) if the database goes away."""
        backoff = 0.5
        while not stop.is_set():
            try:
                self.pump(poll_s)
                backoff = 0.5
            except psycopg.OperationalError as exc:
                log.warning("webhook relay lost its connection (%s); reconnecting in %.1f s", exc, backoff)
                self.close()
                if stop.wait(backoff):
                    break
                backoff = min(backoff * 2, 10.0)
        self.close()

    def _handle(self, payload: str) -> Delivery | None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("webhook relay: notification is not JSON, dropped")
            return None
        if isinstance(message, dict) and _MARKER_KEY in message:
            return None  # another relay's drain marker
        if isinstance(message, dict) and _OVERFLOW_KEY in message:
            body = self._take_overflow(int(message[_OVERFLOW_KEY]))
            if body is None:
                return None  # another relay took it
            payload, message = body, json.loads(body)
        delivery = self._send(payload, message if isinstance(message, dict) else {})
        if self._on_delivery is not None:
            self._on_delivery(delivery)
        return delivery

    def _take_overflow(self, overflow_id: int) -> str | None:
        row = (
            self._connection()
            .execute(
                "delete from cmon_local.webhook_overflow where id = %s returning body::text", (overflow_id,)
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def _send(self, body: str, message: dict[str, Any]) -> Delivery:
        row = message.get("record") or message.get("old_record") or {}
        record_id = str(row["id"]) if isinstance(row, dict) and row.get("id") is not None else None
        table, kind = str(message.get("table", "?")), str(message.get("type", "?"))
        started = time.perf_counter()
        try:
            response = self._deliver(body)
        except Exception as exc:  # pg_net records a failed request and moves on; so do we
            elapsed = (time.perf_counter() - started) * 1000
            self.stats.failed += 1
            log.warning("webhook %s %s not delivered: %s", table, kind, exc)
            return Delivery(table, kind, record_id, None, None, f"{type(exc).__name__}: {exc}", elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        delivery = Delivery(table, kind, record_id, response.status, response.body, None, elapsed)
        if response.status >= 400:
            self.stats.failed += 1
            log.warning("webhook %s %s answered %s: %s", table, kind, response.status, response.body)
        else:
            self.stats.delivered += 1
        self.stats.by_action[delivery.action] += 1
        return delivery


def _marker_of(payload: str) -> str | None:
    if _MARKER_KEY not in payload:
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    return str(message.get(_MARKER_KEY)) if isinstance(message, dict) else None
