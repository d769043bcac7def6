"""Operator flows end to end through the real handlers: a rollback and its undo followed by
the next candle, resume over the admin API, and who does a signal's initial analysis
(`INITIAL_ANALYSIS_BY`) through the real webhook and reconciler handlers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.cli import main
from functions.core.contracts import AnalysisJob, JobKind
from functions.handlers import api, reconciler
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.events import http_api_event, webhook_body
from tests.support.stack import ADMIN_KEY, WEBHOOK_SECRET, Stack, candle, next_candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def post_webhook(body: str) -> dict[str, Any]:
    event = http_api_event(
        "POST", "/webhooks/supabase", body=body, headers={"x-supabase-webhook-source": WEBHOOK_SECRET}
    )
    response = api.handler(event, LambdaContext("api"))
    assert response["statusCode"] == 200, response
    answer: dict[str, Any] = json.loads(response["body"])
    return answer


def admin(method: str, path: str, key: str | None = ADMIN_KEY) -> tuple[int, Any]:
    headers = {"x-api-key": key} if key else {}
    response = api.handler(http_api_event(method, path, headers=headers), LambdaContext("api"))
    return response["statusCode"], json.loads(response["body"])


def run_reconciler() -> dict[str, Any]:
    out: dict[str, Any] = reconciler.handler(
        {"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext("reconciler")
    )
    return out


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def monitoring(s: Stack, signal: uuid.UUID) -> list[Any]:
    rows = s.db.fetch_all(
        "select candle_time from public.signal_analyses"
        " where signal_id = %(s)s and analysis_type = 'monitoring' order by candle_time",
        {"s": signal},
    )
    return [r["candle_time"] for r in rows]


def decisions(s: Stack, position: uuid.UUID) -> list[Any]:
    rows = s.db.fetch_all(
        "select candle_time from public.management_decisions where position_id = %(p)s order by candle_time",
        {"p": position},
    )
    return [r["candle_time"] for r in rows]


def test_after_an_undo_the_next_candle_is_analysed_for_every_restored_workflow(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db, f.user(s.db, "elite"), interval="1m", auto_analyze=True)
        signals = [f.signal(s.db, trader) for _ in range(2)]
        for signal in signals:
            wait = post_webhook(
                webhook_body(
                    "signal_analyses", "INSERT", {"id": str(f.analysis(s.db, signal)), "decision": "wait"}
                )
            )
            assert wait["action"] == "registered"
        position = f.position(s.db, trader, stop_loss="40000", take_profit="60000")
        assert (
            post_webhook(webhook_body("positions", "INSERT", {"id": str(position), "status": "open"}))[
                "action"
            ]
            == "registered"
        )
        c1 = candle()
        s.close_candle(c1)
        assert [len(monitoring(s, sig)) for sig in signals] == [1, 1] and len(decisions(s, position)) == 1

        rollback_id = cli_json(capsys, "rollback", "--database-url", db_url, "--yes", "--reason", "e2e")[
            "rollback_id"
        ]
        c2 = next_candle(c1)
        s.close_candle(c2)  # nothing is analysed while rolled back
        assert [len(monitoring(s, sig)) for sig in signals] == [1, 1] and len(decisions(s, position)) == 1
        # The runbook: reopening the gate and reconciling brings nothing back, and a new
        # webhook for a stopped entity says it is stopped (not "registered").
        cli_json(capsys, "rollout", "set", "--database-url", db_url, "--enable")
        assert run_reconciler()["active_setup"] == 0
        again = post_webhook(webhook_body("positions", "UPDATE", {"id": str(position), "status": "open"}))
        assert (again["action"], again["reason"]) == ("already_stopped", "rollback")

        undo = cli_json(capsys, "rollback", "undo", rollback_id, "--database-url", db_url, "--yes")
        assert undo["workflows_restored"] == 3
        calls_before = len(s.llm.calls)
        c3 = next_candle(c2)
        s.close_candle(c3)
        assert [monitoring(s, sig)[-1] for sig in signals] == [c3.close_time, c3.close_time]
        assert decisions(s, position)[-1] == c3.close_time
        assert len(s.llm.calls) - calls_before == 3  # one call per restored workflow, no more


def test_an_auto_disabled_workflow_is_resumed_over_the_admin_api_and_analysed_again(db_url: str) -> None:
    with running_stack(db_url, max_consecutive_errors=2) as s:
        trader = f.trader(s.db, interval="1m")
        signal = f.signal(s.db, trader)
        wf = post_webhook(
            webhook_body(
                "signal_analyses", "INSERT", {"id": str(f.analysis(s.db, signal)), "decision": "wait"}
            )
        )["workflow_id"]
        s.llm.fail(str(signal), times=2, status=500)
        c1 = candle()
        s.close_candle(c1)
        c2 = next_candle(c1)
        s.close_candle(c2)
        assert (f.workflow(s.db, wf)["is_active"], f.workflow(s.db, wf)["stopped_reason"]) == (
            False,
            "auto_disabled",
        )
        late = s.db.fetch_one(
            "insert into public.signal_analyses (signal_id, decision, analysis_type, candle_time)"
            " values (%(s)s, 'wait', 'monitoring', %(t)s) returning id",
            {"s": signal, "t": c1.close_time.replace(year=2020)},
        )
        assert late is not None
        stopped = post_webhook(
            webhook_body("signal_analyses", "INSERT", {"id": str(late["id"]), "decision": "wait"})
        )
        assert (stopped["action"], stopped["reason"], stopped["workflow_id"]) == (
            "already_stopped",
            "auto_disabled",
            wf,
        )

        assert admin("POST", f"/workflows/{wf}/resume", key=None)[0] == 401
        assert admin("POST", f"/workflows/{wf}/resume", key="wrong")[0] == 401
        assert not f.workflow(s.db, wf)["is_active"]
        status, body = admin("POST", f"/workflows/{wf}/resume")
        assert (status, body["action"], body["workflow_id"], body["previous_reason"]) == (
            200,
            "resumed",
            wf,
            "auto_disabled",
        )
        assert f.workflow(s.db, wf)["consecutive_errors"] == 0
        assert admin("POST", f"/workflows/{wf}/resume")[1]["action"] == "already_active"

        c3 = next_candle(c2)
        s.close_candle(c3)
        assert monitoring(s, signal)[-1] == c3.close_time

        assert admin("POST", f"/workflows/{uuid.uuid4()}/resume")[0] == 404
        assert admin("POST", "/workflows/not-a-uuid/resume")[0] == 422
        s.db.call("stop_workflow", workflow_id=wf, reason="stopped_by_admin")
        s.db.fetch_one(
            "update public.signals set status = 'expired' where id = %(s)s returning id", {"s": signal}
        )
        status, body = admin("POST", f"/workflows/{wf}/resume")
        assert (status, body["error"], body["reason"]) == (409, "conflict", "signal_expired")
        assert not f.workflow(s.db, wf)["is_active"]


def test_the_resume_route_declares_its_answers_in_the_openapi_schema() -> None:
    route = api.app.openapi()["paths"]["/workflows/{workflow_id}/resume"]["post"]
    assert set(route["responses"]) >= {"200", "401", "404", "409", "422"}
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ResumeResult"
    )


# -- who does the initial analysis --------------------------------------------------------------------


def new_signal(s: Stack) -> tuple[uuid.UUID, str]:
    trader = f.trader(s.db, interval="1m", auto_analyze=True)
    signal = f.signal(s.db, trader)
    body = webhook_body("signals", "INSERT", {"id": str(signal), "trader_id": str(trader), "status": "new"})
    return signal, body


def lost_signal(s: Stack) -> uuid.UUID:
    """A signal whose INSERT webhook never arrived, old enough for the reconciler."""
    signal, _ = new_signal(s)
    s.db.fetch_one(
        "update public.signals set created_at = now() - interval '5 minutes' where id = %(s)s returning id",
        {"s": signal},
    )
    return signal


def test_with_the_platform_doing_initial_analysis_cmon_never_runs_its_own(db_url: str) -> None:
    with running_stack(db_url, initial_analysis_by="platform") as s:
        signal, body = new_signal(s)
        answer = post_webhook(body)
        assert (answer["action"], answer["reason"]) == ("ignored", "initial_analysis_by_platform")
        lost = lost_signal(s)
        assert run_reconciler()["initial_queued"] == []
        s.runner.run_until_idle()
        assert s.queue_depth(s.aws.setup_queue_url) == 0
        assert s.llm.calls == []
        assert (
            s.db.fetch_all(
                "select 1 from public.signal_analyses where signal_id = any(%(s)s)", {"s": [signal, lost]}
            )
            == []
        )
        # The platform's analysis arrives as a row; its `wait` starts monitoring as usual.
        analysis = f.analysis(s.db, signal, "wait")
        wait = post_webhook(
            webhook_body("signal_analyses", "INSERT", {"id": str(analysis), "decision": "wait"})
        )
        assert wait["action"] == "registered"


def test_an_initial_job_queued_before_the_switch_to_platform_is_skipped(db_url: str) -> None:
    """The job was queued while cmon did initial analyses; the worker now runs with
    INITIAL_ANALYSIS_BY=platform: no claim, no LLM call, no row; the signal stays new
    for the platform's own analysis."""
    with running_stack(db_url, initial_analysis_by="platform") as s:
        signal, _ = new_signal(s)
        job = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=signal)
        s.sqs.send_message(QueueUrl=s.aws.setup_queue_url, MessageBody=job.model_dump_json())
        s.runner.run_until_idle()
        assert s.queue_depth(s.aws.setup_queue_url) == 0  # done with, not retried
        assert s.llm.calls == []
        row = s.db.fetch_one(
            "select s.status, s.initial_claimed_at, (select count(*) from public.signal_analyses a"
            " where a.signal_id = s.id) as analyses, (select count(*) from public.llm_calls c"
            " where c.signal_id = s.id) as calls from public.signals s where s.id = %(s)s",
            {"s": signal},
        )
        assert row == {"status": "new", "initial_claimed_at": None, "analyses": 0, "calls": 0}


def test_with_cmon_doing_initial_analysis_the_webhook_and_the_reconciler_queue_it(db_url: str) -> None:
    with running_stack(db_url, initial_analysis_by="cmon") as s:
        signal, body = new_signal(s)
        assert post_webhook(body)["action"] == "queued"
        lost = lost_signal(s)
        assert run_reconciler()["initial_queued"] == [str(lost)]
        s.runner.run_until_idle()
        rows = s.db.fetch_all(
            "select signal_id from public.signal_analyses where analysis_type = 'initial' order by signal_id"
        )
        assert sorted(str(r["signal_id"]) for r in rows) == sorted([str(signal), str(lost)])
        assert len([c for c in s.llm.calls if c.path == "/analyze-signal"]) == 2


def test_cmon_is_the_default_and_the_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.core.operator import InitialAnalysisBy
    from functions.settings import Settings

    monkeypatch.delenv("INITIAL_ANALYSIS_BY", raising=False)
    assert Settings().initial_analysis_by is InitialAnalysisBy.CMON
    monkeypatch.setenv("INITIAL_ANALYSIS_BY", "platform")
    assert Settings().initial_analysis_by is InitialAnalysisBy.PLATFORM
    monkeypatch.setenv("INITIAL_ANALYSIS_BY", "both")
    with pytest.raises(ValueError):
        Settings()
