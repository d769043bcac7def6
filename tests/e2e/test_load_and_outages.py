"""The brief's load, token and outage scenarios (seed 002, phases 3 and 4), on real parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
import pytest

from functions.core.contracts import AnalysisJob, JobKind
from functions.core.cost import Projection, project
from functions.handlers import wiring
from tests.support import factories as f
from tests.support.stack import candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def test_fifty_monitors_on_one_stream_are_all_analysed_once(db_url: str) -> None:
    """3.1: 50 waiting signals on BTCUSDT-1m; one close analyses each exactly once,
    even when the event is delivered twice (timing is the benchmark's job, not this test's)."""
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signals = [f.signal(s.db, trader) for _ in range(50)]
        for signal in signals:
            out = s.db.call(
                "register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=5
            )
            assert out["action"] == "registered"
        c = candle()
        s.publish(c)
        s.publish(c)
        s.runner.run_until_idle()
        rows = s.db.fetch_all(
            "select signal_id, count(*) as n from public.signal_analyses"
            " where candle_time = %(t)s group by signal_id",
            {"t": c.close_time},
        )
        assert len(rows) == 50
        assert {r["n"] for r in rows} == {1}
        assert s.metrics.counts.get("DuplicateCandlesProcessed", 0) == 0
        assert len([call for call in s.llm.calls if call.path == "/analyze-signal"]) == 50


def test_token_usage_matches_the_projection(db_url: str) -> None:
    """3.2, scaled down: 10 signals, 20 % wait and are re-analysed 3 times, 1 position
    managed for 8 candles, 1,100 tokens a call → exactly what `cmon cost` projects."""
    with running_stack(db_url, max_reanalyses=3) as s:
        s.llm.configure(prompt_tokens=950, completion_tokens=150)
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        waiting = [f.signal(s.db, trader) for _ in range(2)]
        others = [f.signal(s.db, trader) for _ in range(8)]
        for signal in waiting:
            s.llm.queue_setup(str(signal), "wait", "wait", "wait", "wait")
        for signal in others:
            s.llm.queue_setup(str(signal), "bad_setup")
        # The platform's signals INSERT webhooks queue the initial analyses:
        queue = wiring.container().queue
        assert queue is not None
        queue.send_jobs([AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=x) for x in waiting + others])
        s.runner.run_until_idle()
        position = f.position(s.db, trader)
        s.db.call("register_position_management", position_id=position, check_gate=True)
        c = candle()
        for _ in range(8):
            s.close_candle(c)
            c = next_candle(c)

        used = s.db.fetch_one(
            "select (select coalesce(sum(total_tokens), 0) from public.signal_analyses)"
            " + (select coalesce(sum(total_tokens), 0) from public.management_decisions) as tokens"
        )
        expected = project(
            Projection(
                signals_per_day=10,
                wait_rate=0.2,
                reanalyses_per_wait=3,
                positions_per_day=1,
                candles_per_position=8,
                tokens_per_analysis=1100,
            )
        )
        assert used == {"tokens": expected["tokens_per_day"]} == {"tokens": 26_400}


@contextmanager
def database_refusing_connections(db_url: str, admin_url: str) -> Iterator[None]:
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


def test_a_real_database_outage_keeps_jobs_queued_until_it_is_back(db_url: str, pg_admin_url: str) -> None:
    """4.3: the connection is lost and new ones refused while a candle closes; the jobs
    fail back to the queue (nothing recorded, nothing lost) and are processed once the
    database is back."""
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signals = [f.signal(s.db, trader) for _ in range(3)]
        for signal in signals:
            s.db.call("register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=5)
        c = candle()
        s.publish(c)
        s.runner.pump_fanout()  # the jobs are on the queue
        with database_refusing_connections(db_url, pg_admin_url):
            assert s.runner.pump_setup() == 0
            assert s.runner.stats.failed_records == 3
            assert s.queue_depth(s.aws.setup_queue_url) == 3
        assert s.runner.pump_setup() == 3
        assert s.db.fetch_one(
            "select count(*) as n from public.signal_analyses where candle_time = %(t)s", {"t": c.close_time}
        ) == {"n": 3}
