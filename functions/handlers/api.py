"""API Lambda: Supabase database webhooks in, admin reads and stops.

Supabase waits 1 s by default and never retries, so the webhook route does one SQL
call (plus one SQS send for an initial analysis) and answers. Bad input is a 401 or a
422 naming the field, never a 500, and nothing is written before the input is known
good. FastAPI stays out of the worker functions' import path (it costs ~0.65 s cold).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools import Logger
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import BaseModel

from functions.core.errors import CmonError, InvalidInput, NotFound, TransientError
from functions.core.operator import ResumeResult
from functions.core.telemetry import SERVICE
from functions.handlers import wiring
from functions.services.operator import Operator
from functions.services.register import handle_webhook

# The services log the brief's lines on `cmon.*` loggers; this gives them the JSON handler.
logger = Logger(service=SERVICE)

Deps = Annotated[wiring.Container, Depends(wiring.container)]


async def _container_on_loop() -> wiring.Container:
    """The container without a thread hop: FastAPI runs a sync dependency in its thread
    pool, and under a burst of webhooks (pg_net sends 200 at once) every hop queues for
    one of its 40 threads. Building it is instant once built (the first Lambda request
    builds it; one request at a time there)."""
    return wiring.container()


WebhookDeps = Annotated[wiring.Container, Depends(_container_on_loop)]


def _secret_matches(candidate: str | None, secret: str | None) -> bool:
    if not candidate or not secret:
        return False
    return hmac.compare_digest(candidate.encode(), secret.encode())


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


async def require_webhook_secret(
    deps: WebhookDeps,
    authorization: Annotated[str | None, Header()] = None,
    x_supabase_webhook_source: Annotated[str | None, Header()] = None,
) -> None:
    secret = deps.settings.webhook_secret.get_secret_value() if deps.settings.webhook_secret else None
    if not (
        _secret_matches(_bearer(authorization), secret) or _secret_matches(x_supabase_webhook_source, secret)
    ):
        raise HTTPException(status_code=401, detail="missing or wrong webhook secret")


def require_admin(
    deps: Deps,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    key = deps.settings.admin_api_key.get_secret_value() if deps.settings.admin_api_key else None
    if not (_secret_matches(_bearer(authorization), key) or _secret_matches(x_api_key, key)):
        raise HTTPException(status_code=401, detail="missing or wrong admin API key")


webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


@webhooks.post("/supabase", dependencies=[Depends(require_webhook_secret)])
async def supabase_webhook(request: Request, deps: WebhookDeps) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body: not JSON ({exc})", field="body") from exc
    # The body must be awaited, the work is blocking I/O: keep it off the event loop so a
    # uvicorn server (cmon local) serves other requests meanwhile.
    return await run_in_threadpool(
        handle_webhook,
        body,
        repo=deps.repo,
        queue=deps.queue,
        metrics=deps.metrics,
        max_reanalyses=deps.settings.max_reanalyses,
        initial_analysis_by=deps.settings.initial_analysis_by,
    )


workflows = APIRouter(prefix="/workflows", tags=["workflows"], dependencies=[Depends(require_admin)])


@workflows.get("")
def list_workflows(
    deps: Deps,
    active: bool | None = None,
    workflow_type: Annotated[str | None, Query(pattern="^(setup_monitoring|position_management)$")] = None,
    symbol: Annotated[str | None, Query(pattern="^[A-Z0-9]{2,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = deps.repo.list_workflows(active=active, workflow_type=workflow_type, symbol=symbol, limit=limit)
    return {"workflows": rows, "count": len(rows)}


@workflows.get("/{workflow_id}")
def get_workflow(workflow_id: UUID, deps: Deps) -> dict[str, Any]:
    return deps.repo.workflow_detail(workflow_id)


@workflows.post("/{workflow_id}/stop")
def stop_workflow(workflow_id: UUID, deps: Deps, reason: str = "stopped_by_admin") -> dict[str, Any]:
    result = deps.repo.stop_workflow(workflow_id, reason)
    if result.reason == "workflow_not_found":
        raise NotFound(f"workflow {workflow_id} not found")
    return {"action": result.action, "workflow_id": str(workflow_id)}


class ErrorBody(BaseModel):
    error: str
    detail: str
    reason: str | None = None


class AuthError(BaseModel):
    detail: str


@workflows.post(
    "/{workflow_id}/resume",
    response_model=ResumeResult,
    responses={
        401: {"model": AuthError, "description": "missing or wrong admin API key"},
        404: {"model": ErrorBody, "description": "no such workflow"},
        409: {"model": ErrorBody, "description": "its signal is finished or its position closed"},
    },
)
def resume_workflow(workflow_id: UUID, deps: Deps) -> ResumeResult | JSONResponse:
    """Active again, errors reset, analysed at the next candle (`resume_workflow` in SQL)."""
    if deps.operator_store is None:
        raise TransientError("no operator store configured")
    result = Operator(deps.operator_store, actor="api:admin").resume_workflow(workflow_id)
    if result.action == "refused":
        return JSONResponse(
            status_code=409,
            content={
                "error": "conflict",
                "detail": f"workflow {workflow_id} cannot be resumed",
                "reason": result.reason,
            },
        )
    return result


def create_app() -> FastAPI:
    """The app; settings and connections come from the container on first request."""
    app = FastAPI(title="cmon", version="0.1.0", docs_url="/docs", redoc_url=None)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(webhooks)
    app.include_router(workflows)

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse(
            status_code=422, content={"error": "invalid_payload", "field": exc.field, "detail": str(exc)}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        field = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            status_code=422, content={"error": "invalid_request", "field": field, "detail": first["msg"]}
        )

    @app.exception_handler(CmonError)
    async def domain_error(_: Request, exc: CmonError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return JSONResponse(status_code=404, content={"error": "not_found", "detail": str(exc)})
        if isinstance(exc, TransientError):
            return JSONResponse(status_code=503, content={"error": "unavailable", "detail": str(exc)})
        return JSONResponse(status_code=500, content={"error": type(exc).__name__})

    @app.middleware("http")
    async def flush_metrics(request: Request, call_next: Any) -> Any:
        try:
            return await call_next(request)
        finally:
            deps = wiring.current()
            if deps is not None:
                deps.metrics.flush()

    return app


class _LambdaHandler(Mangum):
    """Mangum 0.22 runs each request with `asyncio.get_event_loop().run_until_complete`,
    which fails once anything in the process has called `asyncio.run()` (it leaves the
    thread with no current loop). A fresh Lambda never has; an in-process caller (the
    demo, tests, a warm container reused by a tool) may. Give it a loop when it has none."""

    def __call__(self, event: Any, context: Any) -> Any:
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
            usable = not loop.is_closed() and not loop.is_running()
        except RuntimeError:
            usable = False
        if not usable:
            asyncio.set_event_loop(asyncio.new_event_loop())
        return super().__call__(event, context)


app = create_app()
handler = _LambdaHandler(app, lifespan="off")
