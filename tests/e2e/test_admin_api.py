"""Admin routes of the API Lambda, behind ADMIN_API_KEY, through Mangum."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from functions.handlers import api
from functions.local.runner import LambdaContext
from tests.support import factories as f
from tests.support.events import http_api_event
from tests.support.stack import ADMIN_KEY, candle, running_stack

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def call(method: str, path: str, key: str | None = ADMIN_KEY, query: str = "") -> tuple[int, Any]:
    headers = {"x-api-key": key} if key else {}
    response = api.handler(http_api_event(method, path, headers=headers, query=query), LambdaContext("api"))
    return response["statusCode"], json.loads(response["body"])


def test_health_needs_no_key(db_url: str) -> None:
    with running_stack(db_url):
        assert call("GET", "/health", key=None) == (200, {"status": "ok"})


def test_workflow_routes_list_show_and_stop(db_url: str) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db)
        signal = f.signal(s.db, trader)
        analysis = f.analysis(s.db, signal, "wait")
        wf = s.db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=5)["workflow_id"]
        s.llm.fail(str(signal), times=1, status=500)
        s.close_candle(candle())

        assert call("GET", "/workflows", key=None)[0] == 401
        assert call("GET", "/workflows", key="wrong")[0] == 401
        status, listing = call("GET", "/workflows", query="active=true&workflow_type=setup_monitoring")
        assert status == 200
        assert [w["id"] for w in listing["workflows"]] == [wf]

        status, detail = call("GET", f"/workflows/{wf}")
        assert status == 200
        assert [a["analysis_type"] for a in detail["analyses"]] == ["initial"]
        assert [e["error_kind"] for e in detail["errors"]] == ["llm_unavailable"]

        assert call("POST", f"/workflows/{wf}/stop")[1]["action"] == "stopped"
        assert call("POST", f"/workflows/{wf}/stop")[1]["action"] == "already_stopped"
        status, detail = call("GET", f"/workflows/{wf}")
        assert (detail["is_active"], detail["stopped_reason"]) == (False, "stopped_by_admin")
        assert call("GET", f"/workflows/{uuid.uuid4()}")[0] == 404
        assert call("GET", "/workflows/not-a-uuid")[0] == 422
        assert call("GET", "/workflows", query="symbol=btc")[0] == 422


def test_the_api_handler_still_answers_after_asyncio_run_in_the_same_process(db_url: str) -> None:
    import asyncio

    async def nothing() -> None:
        return None

    with running_stack(db_url):
        asyncio.run(nothing())  # leaves the main thread without a current event loop
        assert call("GET", "/health", key=None) == (200, {"status": "ok"})


@pytest.mark.parametrize("reason", ["with%00nul", "x" * 201, ""], ids=["nul", "over-long", "empty"])
def test_a_stop_reason_postgres_cannot_store_is_422_naming_the_field_and_stops_nothing(
    db_url: str, reason: str
) -> None:
    with running_stack(db_url) as s:
        trader = f.trader(s.db)
        analysis = f.analysis(s.db, f.signal(s.db, trader), "wait")
        wf = s.db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=5)["workflow_id"]
        status, body = call("POST", f"/workflows/{wf}/stop", query=f"reason={reason}")
        assert (status, body["error"], body["field"]) == (422, "invalid_request", "query.reason")
        assert f.workflow(s.db, wf)["is_active"] is True
        assert call("POST", f"/workflows/{wf}/stop", query="reason=" + "y" * 200)[1]["action"] == "stopped"


def test_errors_share_one_body_shape_and_405_names_the_allowed_methods(db_url: str) -> None:
    with running_stack(db_url):
        assert call("GET", "/workflows", key="wrong") == (
            401,
            {"error": "unauthorized", "detail": "missing or wrong admin API key"},
        )
        status, body = call("GET", f"/workflows/{uuid.uuid4()}")
        assert (status, body["error"]) == (404, "not_found")
        status, body = call("GET", "/nowhere")
        assert (status, body["error"]) == (404, "http_error")
        response = api.handler(http_api_event("DELETE", "/health"), LambdaContext("api"))
        assert response["statusCode"] == 405
        assert response["headers"]["allow"] == "GET"
