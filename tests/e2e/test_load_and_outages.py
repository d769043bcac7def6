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


def test_a_simulated_day_records_what_the_llm_served_and_matches_the_projection(db_url: str) -> None:
    """3.2 at the brief's volumes: 100 signals, 20 wait and are re-analysed 3 times,
    10 positions are managed for 8 candles each. The stub draws every answer's token
    counts from a seeded distribution around 950 + 150, so nothing is exact by
    construction: what the database recorded must equal what the stub served, and the
    `cmon cost` projection must be within 10 % of it."""
    plan = {"side": "long", "entry": "50000", "stop_loss": "49000", "take_profit": "52000"}
    with running_stack(db_url, max_reanalyses=3) as s:
        s.llm.configure(prompt_tokens=950, completion_tokens=150, token_jitter=0.3, seed=20261201)
        trader = f.trader(s.db, interval="1m", auto_analyze=True)
        signals = [f.signal(s.db, trader) for _ in range(100)]
        waiting, entering, rejected = signals[:20], signals[20:30], signals[30:]
        for signal in waiting:
            s.llm.queue_setup(str(signal), "wait", "wait", "wait", "bad_setup")
        for signal in entering:
            s.llm.queue_setup(str(signal), {"decision": "enter_trade", "trade_plan": plan})
        for signal in rejected:
            s.llm.queue_setup(str(signal), "bad_setup")
        # The platform's signals INSERT webhooks queue the initial analyses:
        queue = wiring.container().queue
        assert queue is not None
        queue.send_jobs([AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=x) for x in signals])
        s.runner.run_until_idle()
        positions = [r["id"] for r in s.db.fetch_all("select id from public.positions order by id")]
        assert len(positions) == 10
        for position in positions:
            s.llm.queue_management(str(position), *(["hold"] * 7), "close")
        c = candle()
        for _ in range(10):  # two more closes than needed: every workflow has stopped by then
            s.close_candle(c)
            c = next_candle(c)

        counts = s.db.fetch_one(
            "select (select count(*) from public.signal_analyses where analysis_type = 'initial') as initial,"
            " (select count(*) from public.signal_analyses where analysis_type = 'monitoring') as monitoring,"
            " (select count(*) from public.management_decisions) as decisions,"
            " (select count(*) from public.workflow_schedules where is_active) as active"
        )
        assert counts == {"initial": 100, "monitoring": 60, "decisions": 80, "active": 0}
        recorded = s.db.fetch_one(
            "select (select sum(total_tokens) from public.signal_analyses)"
            " + (select sum(total_tokens) from public.management_decisions) as total,"
            " (select sum(prompt_tokens) from public.signal_analyses)"
            " + (select sum(prompt_tokens) from public.management_decisions) as prompt,"
            " (select count(distinct total_tokens) from public.signal_analyses) as distinct_counts"
        )
        assert recorded is not None
        served = s.llm.served_usage()
        assert served["answers"] == 240
        assert (recorded["total"], recorded["prompt"]) == (served["total_tokens"], served["prompt_tokens"])
        assert recorded["distinct_counts"] > 50  # drawn, not one constant

        projected = project(Projection())["tokens_per_day"]
        assert projected == 264_000  # the brief's figure, from the brief's defaults
        assert abs(recorded["total"] - projected) <= 0.10 * projected


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
