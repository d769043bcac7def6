"""Brief 4.3, whole: the database is unreachable when the candle closes.

The candle reaches the fan-out (EventBridge on moto → the rule's target), which needs
Postgres to find the workflows. It must raise, so that Lambda's async retry (template:
`EventInvokeConfig`, within the staleness window) delivers the same event again; once
the database is back, the retry analyses every workflow exactly once, and a further
delivery of the same event analyses nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from functions.core.errors import DatabaseUnavailable
from functions.handlers import fanout
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.stack import Stack, candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


@contextmanager
def database_down(db_url: str, admin_url: str) -> Iterator[None]:
    """A real outage of this test's database: live connections killed, new ones refused."""
    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'alter database "{name}" allow_connections false')
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            admin.execute(f'alter database "{name}" allow_connections true')


def the_event_on_the_bus(s: Stack) -> dict[str, Any]:
    """The EventBridge event the rule delivers to the fan-out (kept: Lambda retries it)."""
    messages = s.sqs.receive_message(QueueUrl=s.aws.fanout_queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    s.sqs.delete_message(QueueUrl=s.aws.fanout_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return dict(json.loads(messages[0]["Body"]))


def test_a_candle_closing_during_an_outage_is_analysed_once_when_the_database_is_back(
    db_url: str, pg_admin_url: str
) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signals = [f.signal(s.db, trader) for _ in range(3)]
        for signal in signals:
            s.db.call("register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=5)
        c = candle()
        s.publish(c)
        event = the_event_on_the_bus(s)

        with database_down(db_url, pg_admin_url):
            # The first invocation and Lambda's first retry both fail: nothing is queued.
            for _ in range(2):
                with pytest.raises(DatabaseUnavailable):
                    fanout.handler(event, LambdaContext("fanout"))
            assert s.queue_depth(s.aws.setup_queue_url) == 0

        # Lambda's second retry, the database back and the candle still inside the window.
        assert fanout.handler(event, LambdaContext("fanout")) == {
            "workflows": 3,
            "jobs_sent": 3,
            "stale": False,
        }
        # EventBridge delivers at least once: the same event again finds every workflow
        # past this candle once the jobs ran.
        s.runner.run_until_idle()
        again = fanout.handler(event, LambdaContext("fanout"))
        s.runner.run_until_idle()

        assert again["jobs_sent"] == 0
        rows = s.db.fetch_all(
            "select signal_id, count(*) as n from public.signal_analyses"
            " where candle_time = %(t)s group by signal_id",
            {"t": c.close_time},
        )
        assert sorted((r["signal_id"], r["n"]) for r in rows) == sorted((x, 1) for x in signals)
        assert len([call for call in s.llm.calls if call.path == "/analyze-signal"]) == 3
