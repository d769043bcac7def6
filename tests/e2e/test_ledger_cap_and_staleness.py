"""The LLM-call ledger, the per-user daily token cap and staleness at the claim, end to end:
jobs on the real queues (moto), the real worker handlers, the stub llm-proxy over HTTP and
the real SQL functions on the embedded Postgres."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.core.contracts import AnalysisJob, CandleClosed, JobKind, WorkflowType
from functions.handlers import setup_analysis, wiring
from functions.local.runner import LambdaContext, sqs_event
from functions.services.ports import LlmProxy
from tests.support import factories as f
from tests.support.stack import Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")

TOKENS = 1100  # the stub's answers: 950 prompt + 150 completion


def _setup_workflow(s: Stack, user: uuid.UUID | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(s.db, user, interval="1m")
    signal = f.signal(s.db, trader)
    out = s.db.call("register_setup_monitoring", analysis_id=f.analysis(s.db, signal), max_reanalyses=50)
    assert out["action"] == "registered"
    return signal, uuid.UUID(str(out["workflow_id"]))


def _position_workflow(s: Stack, user: uuid.UUID | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    trader = f.trader(s.db, user, interval="1m")
    position = f.position(s.db, trader, stop_loss="49000", take_profit="52000")
    out = s.db.call("register_position_management", position_id=position, check_gate=True)
    assert out["action"] == "registered"
    return position, uuid.UUID(str(out["workflow_id"]))


def _enqueue(*jobs: AnalysisJob) -> None:
    queue = wiring.container().queue
    assert queue is not None
    queue.send_jobs(list(jobs))


def _job(workflow_id: uuid.UUID, c: CandleClosed, kind: WorkflowType) -> AnalysisJob:
    return AnalysisJob(workflow_id=workflow_id, workflow_type=kind, candle=c)


def _ledger(s: Stack) -> list[dict[str, Any]]:
    return s.db.fetch_all("select * from public.llm_calls order by created_at, id")


def _set_cap(s: Stack, cap: int, by_tier: dict[str, int] | None = None) -> None:
    s.db.fetch_one(
        "update public.rollout_settings set daily_token_cap = %(c)s, daily_token_cap_by_tier = %(t)s"
        " where id returning id",
        {"c": cap, "t": json.dumps(by_tier or {})},
    )


# ---------------------------------------------------------------------------- the ledger


def test_every_llm_call_is_a_ledger_row_with_its_user_workflow_candle_and_outcome(db_url: str) -> None:
    with running_stack(db_url) as s:
        s.llm.configure(prompt_tokens=950, completion_tokens=150)
        user = f.user(s.db, "pro")
        signal, setup_wf = _setup_workflow(s, user)
        position, position_wf = _position_workflow(s, user)
        s.llm.queue_setup(signal, "wait", {"decision": "maybe"})  # the second answer is invalid
        c1 = candle()
        s.close_candle(c1)
        c2 = next_candle(c1)
        s.close_candle(c2)

        rows = _ledger(s)
        setup_rows = [r for r in rows if r["workflow_id"] == setup_wf]
        assert [(r["candle_time"], r["outcome"]) for r in setup_rows] == [
            (c1.close_time, "ok"),
            (c2.close_time, "llm_invalid_answer"),  # paid for, so counted, though nothing was recorded
        ]
        for r in setup_rows:
            assert (r["user_id"], r["signal_id"], r["operation"], r["analysis_type"]) == (
                user,
                signal,
                "analyze_signal",
                "monitoring",
            )
            assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) == (950, 150, TOKENS)
            assert r["model"] == "stub-llm" and r["latency_ms"] is not None
        assert setup_rows[0]["trace_id"] != setup_rows[1]["trace_id"]
        manage = [r for r in rows if r["workflow_id"] == position_wf]
        assert [(r["position_id"], r["operation"], r["analysis_type"], r["outcome"]) for r in manage] == [
            (position, "manage_position", "position_management", "ok")
        ] * 2
        assert s.db.fetch_one(
            "select count(*) as n from public.workflow_errors where error_kind = 'llm_invalid_answer'"
        ) == {"n": 1}


def test_an_llm_outage_reports_no_usage_and_writes_no_ledger_row(db_url: str) -> None:
    with running_stack(db_url) as s:
        signal, wf = _setup_workflow(s)
        s.llm.fail(signal, times=1, status=503)
        s.close_candle(candle())
        assert f.workflow(s.db, wf)["consecutive_errors"] == 1
        assert _ledger(s) == []


def test_a_signals_initial_analysis_is_in_the_ledger(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader)
        s.llm.queue_setup(signal, "bad_setup")
        _enqueue(AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=signal))
        s.runner.run_until_idle()
        (row,) = _ledger(s)
        assert (row["signal_id"], row["workflow_id"], row["candle_time"]) == (signal, None, None)
        assert (row["analysis_type"], row["outcome"], row["total_tokens"]) == ("initial", "ok", TOKENS)


# ---------------------------------------------------------------------------- the daily cap


def test_a_user_at_the_daily_cap_is_skipped_before_the_llm_is_called(db_url: str) -> None:
    with running_stack(db_url) as s:
        s.llm.configure(prompt_tokens=950, completion_tokens=150)
        capped = f.user(s.db, "pro")
        other = f.user(s.db, "elite")
        signal, wf = _setup_workflow(s, capped)
        position, pwf = _position_workflow(s, capped)
        other_signal, other_wf = _setup_workflow(s, other)
        _set_cap(s, 2 * TOKENS, {"elite": 0})  # two calls a day; elite users have no cap

        c = candle()
        s.close_candle(c)  # `capped`: setup + management = 2 calls, now at the cap
        spent = s.db.fetch_one(
            "select coalesce(sum(total_tokens), 0) as n from public.llm_calls where user_id = %(u)s",
            {"u": capped},
        )
        assert spent == {"n": 2 * TOKENS}
        calls_before = len(s.llm.calls)
        c = next_candle(c)
        s.close_candle(c)
        c = next_candle(c)
        s.close_candle(c)

        # Only the uncapped user's workflow reached llm-proxy after the cap was hit.
        later = s.llm.calls[calls_before:]
        assert [call.entity_id for call in later] == [str(other_signal), str(other_signal)]
        for workflow_id in (wf, pwf):
            row = f.workflow(s.db, workflow_id)
            assert row["is_active"] and row["consecutive_errors"] == 0 and row["stopped_reason"] is None
            assert row["last_candle_time"] < c.close_time  # the refused candles were never claimed
        assert s.db.fetch_one(
            "select count(*) as n from public.workflow_errors where workflow_id in (%(a)s, %(b)s)",
            {"a": wf, "b": pwf},
        ) == {"n": 0}
        assert s.metrics.counts["TokenCapSkipped"] == 4  # 2 workflows x 2 candles
        notes = s.db.fetch_all(
            "select user_id, payload from public.notifications where kind = 'token_cap_reached'"
        )
        assert [n["user_id"] for n in notes] == [capped]  # one per user per day, not one per skip
        assert notes[0]["payload"]["day"] == datetime.now(UTC).date().isoformat()
        assert f.workflow(s.db, other_wf)["last_candle_time"] == c.close_time
        assert {call.entity_id for call in s.llm.calls[:calls_before]} == {
            str(signal),
            str(position),
            str(other_signal),
        }


def test_the_cap_is_per_utc_day_and_per_tier(db_url: str) -> None:
    with running_stack(db_url) as s:
        free = f.user(s.db, "free")
        elite = f.user(s.db, "elite")
        free_signal, free_wf = _setup_workflow(s, free)
        elite_signal, elite_wf = _setup_workflow(s, elite)
        _set_cap(s, 0, {"free": TOKENS})  # only free users are capped, at one call a day
        c = candle()
        s.close_candle(c)
        c = next_candle(c)
        s.close_candle(c)
        assert [call.entity_id for call in s.llm.calls].count(str(free_signal)) == 1
        assert [call.entity_id for call in s.llm.calls].count(str(elite_signal)) == 2
        # Yesterday's tokens do not count today.
        s.db.fetch_one(
            "update public.llm_calls set created_at = created_at - interval '1 day'"
            " where user_id = %(u)s returning 1",
            {"u": free},
        )
        c = next_candle(c)
        s.close_candle(c)
        assert [call.entity_id for call in s.llm.calls].count(str(free_signal)) == 2
        assert f.workflow(s.db, free_wf)["last_candle_time"] == c.close_time
        assert f.workflow(s.db, elite_wf)["last_candle_time"] == c.close_time


def test_a_capped_users_initial_analysis_is_not_claimed(db_url: str) -> None:
    with running_stack(db_url) as s:
        user = f.user(s.db, "elite")
        _, wf = _setup_workflow(s, user)
        s.close_candle(candle())  # one call: the user is at the cap below
        _set_cap(s, TOKENS)
        signal = f.signal(s.db, f.trader(s.db, user, interval="1m"))
        before = len(s.llm.calls)
        _enqueue(AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=signal))
        s.runner.run_until_idle()
        assert len(s.llm.calls) == before
        row = s.db.fetch_one(
            "select status, initial_claimed_at from public.signals where id = %(id)s", {"id": signal}
        )
        assert row == {"status": "new", "initial_claimed_at": None}
        assert s.metrics.counts["TokenCapSkipped"] == 1
        del wf


def test_rollout_set_daily_token_cap_through_the_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from functions.cli import main

    assert main(["rollout", "set", "--database-url", db_url, "--daily-token-cap", "50000", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["daily_token_cap"] == 50000
    assert (
        main(["rollout", "set", "--database-url", db_url, "--daily-token-cap-tier", "free=2000", "--json"])
        == 0
    )
    state = json.loads(capsys.readouterr().out)
    assert (state["daily_token_cap"], state["daily_token_cap_by_tier"]) == (50000, {"free": 2000})
    for bad in (
        ["--daily-token-cap", "-1"],
        ["--daily-token-cap", "lots"],
        ["--daily-token-cap-tier", "gold=5"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["rollout", "set", "--database-url", db_url, *bad])
        assert exc.value.code != 0
    assert main(["rollout", "show", "--database-url", db_url, "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert (state["daily_token_cap"], state["daily_token_cap_by_tier"]) == (50000, {"free": 2000})


# ---------------------------------------------------------------------------- staleness


def test_a_three_hour_old_job_on_the_queue_is_never_analysed(db_url: str) -> None:
    """Issue 13 item 1: an SQS backlog or a DLQ redrive of a candle that closed 3 hours ago."""
    with running_stack(db_url, stale_candle_intervals=2) as s:
        signal, wf = _setup_workflow(s)
        position, pwf = _position_workflow(s)
        old = candle(close_time=datetime.now(UTC) - timedelta(hours=3))
        _enqueue(
            _job(wf, old, WorkflowType.SETUP_MONITORING), _job(pwf, old, WorkflowType.POSITION_MANAGEMENT)
        )
        stats = s.runner.run_until_idle()
        assert stats.setup_records == 1 and stats.position_records == 1 and stats.failed_records == 0
        assert s.llm.calls == []
        assert s.db.fetch_one(
            "select count(*) as n from public.signal_analyses where candle_time is not null"
        ) == {"n": 0}
        assert s.db.fetch_one("select count(*) as n from public.management_decisions") == {"n": 0}
        for workflow_id in (wf, pwf):
            row = f.workflow(s.db, workflow_id)
            assert row["is_active"] and row["consecutive_errors"] == 0 and row["last_candle_time"] is None
        assert s.metrics.counts["StaleJobsSkipped"] == 2
        # A fresh candle is analysed as usual afterwards.
        s.close_candle(candle())
        assert {call.entity_id for call in s.llm.calls} == {str(signal), str(position)}


def test_staleness_is_measured_in_intervals_of_the_workflows_stream(db_url: str) -> None:
    with running_stack(db_url, stale_candle_intervals=3) as s:
        _, wf = _setup_workflow(s)  # 1m stream: 3 intervals = 3 minutes (the setting, not a default)
        within = candle(close_time=datetime.now(UTC) - timedelta(seconds=150))
        _enqueue(_job(wf, within, WorkflowType.SETUP_MONITORING))
        s.runner.run_until_idle()
        assert len(s.llm.calls) == 1
        beyond = candle(close_time=datetime.now(UTC) - timedelta(minutes=4))
        s.db.fetch_one(
            "update public.workflow_schedules set last_candle_time = null, last_completed_candle_time = null"
            " where id = %(id)s returning 1",
            {"id": wf},
        )
        _enqueue(_job(wf, beyond, WorkflowType.SETUP_MONITORING))
        s.runner.run_until_idle()
        assert len(s.llm.calls) == 1
        assert s.metrics.counts["StaleJobsSkipped"] == 1


# ---------------------------------------------------------------------------- duplicates


class _TakenOverWhileWaiting:
    """An LLM port whose first answer comes back only after the claim's lease ran out and
    a redelivery of the same job took the claim over and was analysed (a slow llm-proxy)."""

    def __init__(self, inner: LlmProxy, stack: Stack, job: AnalysisJob) -> None:
        self._inner = inner
        self._stack = stack
        self._job = job
        self.taken_over = False

    def analyze_signal(self, request: Any, *, idempotency_key: str, deadline: float | None = None) -> Any:
        if not self.taken_over:
            self.taken_over = True
            self._stack.db.fetch_one(
                "update public.workflow_schedules set claimed_at = claimed_at - interval '1 hour'"
                " where id = %(id)s returning 1",
                {"id": self._job.workflow_id},
            )
            redelivery = {"MessageId": "m2", "ReceiptHandle": "r2", "Body": self._job.model_dump_json()}
            out = setup_analysis.handler(sqs_event([redelivery], "arn:aws:sqs:x:0:q"), LambdaContext("setup"))
            assert out == {"batchItemFailures": []}
        return self._inner.analyze_signal(request, idempotency_key=idempotency_key, deadline=deadline)

    def manage_position(self, request: Any, *, idempotency_key: str, deadline: float | None = None) -> Any:
        return self._inner.manage_position(request, idempotency_key=idempotency_key, deadline=deadline)


def _metrics(db_url: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from functions.cli import main

    assert main(["metrics", "--database-url", db_url, "--hours", "1", "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_a_lease_takeover_that_calls_the_llm_twice_is_a_duplicate(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(db_url) as s:
        _, wf = _setup_workflow(s)
        job = _job(wf, candle(), WorkflowType.SETUP_MONITORING)
        container = wiring.container()
        assert container.llm is not None
        slow = _TakenOverWhileWaiting(container.llm, s, job)
        container.llm = slow
        first = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": job.model_dump_json()}
        out = setup_analysis.handler(sqs_event([first], "arn:aws:sqs:x:0:q"), LambdaContext("setup"))
        assert out == {"batchItemFailures": []} and slow.taken_over

        rows = [r for r in _ledger(s) if r["workflow_id"] == wf]
        assert [r["outcome"] for r in rows] == ["ok", "duplicate"]
        assert s.db.fetch_one(
            "select count(*) as n from public.signal_analyses where workflow_id = %(w)s", {"w": wf}
        ) == {"n": 1}
        assert s.metrics.counts["DuplicateCandlesProcessed"] == 1
        assert _metrics(db_url, capsys)["duplicate_candles"] == 1


def test_duplicate_deliveries_refused_by_the_claim_are_not_duplicates(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(db_url) as s:
        _, wf = _setup_workflow(s)
        c = candle()
        s.publish(c)
        s.publish(c)
        _enqueue(_job(wf, c, WorkflowType.SETUP_MONITORING))
        s.runner.run_until_idle()
        assert len(_ledger(s)) == 1
        assert s.metrics.counts["DuplicateClaimsSkipped"] == 2
        assert s.metrics.counts.get("DuplicateCandlesProcessed", 0) == 0
        report = _metrics(db_url, capsys)
        assert (report["duplicate_candles"], report["llm_calls"], report["tokens"]) == (0, 1, TOKENS)
