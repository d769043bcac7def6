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

from aws_lambda_powertools.logging import correlation_paths
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from mangum import Mangum
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.adapters.tracing import service_tracer
from functions.core.errors import CmonError, InvalidInput, NotFound, TransientError, Unauthorized
from functions.core.logs import service_logger
from functions.core.operator import ResumeResult
from functions.handlers import wiring
from functions.handlers.api_models import (
    ADMIN_ERRORS,
    AUTH_ERROR,
    NOT_FOUND_ERROR,
    UNAVAILABLE_ERROR,
    VALIDATION_ERROR,
    DbText,
    ErrorBody,
    Health,
    SupabaseWebhook,
    WebhookAnswer,
    WorkflowAction,
    WorkflowDetail,
    WorkflowList,
)
from functions.services.operator import Operator
from functions.services.register import handle_webhook

Deps = Annotated[wiring.Container, Depends(wiring.container)]

# Declared as security schemes so the OpenAPI says how to authenticate (either one will do).
_webhook_bearer = HTTPBearer(auto_error=False, scheme_name="WebhookBearer")
_webhook_source = APIKeyHeader(
    name="x-supabase-webhook-source", auto_error=False, scheme_name="WebhookSource"
)
_admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminBearer")
_admin_key = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="AdminApiKey")
Bearer = HTTPAuthorizationCredentials | None


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


def _token(credentials: Bearer) -> str | None:
    return credentials.credentials.strip() if credentials is not None else None


async def require_webhook_secret(
    deps: WebhookDeps,
    bearer: Annotated[Bearer, Security(_webhook_bearer)],
    source: Annotated[str | None, Security(_webhook_source)],
) -> None:
    current = deps.settings.secret("webhook_secret")  # Secrets Manager (cached) or the env var
    secret = current.get_secret_value() if current else None
    if not (_secret_matches(_token(bearer), secret) or _secret_matches(source, secret)):
        raise Unauthorized("missing or wrong webhook secret")


def require_admin(
    deps: Deps,
    bearer: Annotated[Bearer, Security(_admin_bearer)],
    api_key: Annotated[str | None, Security(_admin_key)],
) -> None:
    current = deps.settings.secret("admin_api_key")
    key = current.get_secret_value() if current else None
    if not (_secret_matches(_token(bearer), key) or _secret_matches(api_key, key)):
        raise Unauthorized("missing or wrong admin API key")


webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])

# The body is parsed by functions.core.webhooks (so that every recorded Supabase payload is
# read exactly as before, and the secret is checked before the body); the OpenAPI still
# describes it, from the same model.
_WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SupabaseWebhook.model_json_schema(by_alias=True)}},
    }
}


@webhooks.post(
    "/supabase",
    dependencies=[Depends(require_webhook_secret)],
    response_model=WebhookAnswer,
    response_model_exclude_none=True,
    responses={**AUTH_ERROR, **VALIDATION_ERROR, **UNAVAILABLE_ERROR},
    openapi_extra=_WEBHOOK_BODY,
)
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


@workflows.get("", response_model=WorkflowList, responses=ADMIN_ERRORS)
def list_workflows(
    deps: Deps,
    active: bool | None = None,
    workflow_type: Annotated[str | None, Query(pattern="^(setup_monitoring|position_management)$")] = None,
    symbol: Annotated[str | None, Query(pattern="^[A-Z0-9]{2,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = deps.reads.list_workflows(active=active, workflow_type=workflow_type, symbol=symbol, limit=limit)
    return {"workflows": rows, "count": len(rows)}


@workflows.get("/{workflow_id}", response_model=WorkflowDetail, responses={**ADMIN_ERRORS, **NOT_FOUND_ERROR})
def get_workflow(workflow_id: UUID, deps: Deps) -> dict[str, Any]:
    return deps.reads.workflow_detail(workflow_id)


@workflows.post(
    "/{workflow_id}/stop", response_model=WorkflowAction, responses={**ADMIN_ERRORS, **NOT_FOUND_ERROR}
)
def stop_workflow(workflow_id: UUID, deps: Deps, reason: DbText = "stopped_by_admin") -> dict[str, Any]:
    result = deps.repo.stop_workflow(workflow_id, reason)
    if result.reason == "workflow_not_found":
        raise NotFound(f"workflow {workflow_id} not found")
    return {"action": result.action, "workflow_id": str(workflow_id)}


@workflows.post(
    "/{workflow_id}/resume",
    response_model=ResumeResult,
    responses={
        **ADMIN_ERRORS,
        **NOT_FOUND_ERROR,
        409: {"model": ErrorBody, "description": "Its signal is finished or its position closed."},
    },
)
def resume_workflow(workflow_id: UUID, deps: Deps) -> ResumeResult | JSONResponse:
    """Active again, errors reset, analysed at the next candle (`resume_workflow` in SQL)."""
    if deps.operator_store is None:
        raise TransientError("no operator store configured")
    result = Operator(deps.operator_store, actor="api:admin").resume_workflow(workflow_id)
    if result.action == "refused":
        return _error(
            409, "conflict", detail=f"workflow {workflow_id} cannot be resumed", reason=result.reason
        )
    return result


# Our errors → HTTP, most specific first; anything else of ours is a 500 (a bug, not input).
_STATUS_OF: tuple[tuple[type[CmonError], int, str], ...] = (
    (Unauthorized, 401, "unauthorized"),
    (InvalidInput, 422, "invalid_payload"),
    (NotFound, 404, "not_found"),
    (TransientError, 503, "unavailable"),
)


def _error(
    status: int, error: str, *, field: str | None = None, detail: str | None = None, reason: str | None = None
) -> JSONResponse:
    body = ErrorBody(error=error, field=field, detail=detail, reason=reason)
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True))


def install_error_handlers(app: FastAPI) -> None:
    """One mapping from our errors to HTTP, and FastAPI's own errors in the same body shape."""

    @app.exception_handler(CmonError)
    async def domain_error(_: Request, exc: CmonError) -> JSONResponse:
        for kind, status, code in _STATUS_OF:
            if isinstance(exc, kind):
                return _error(status, code, field=getattr(exc, "field", None), detail=str(exc))
        return _error(500, type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        field = ".".join(str(p) for p in first["loc"])
        return _error(422, "invalid_request", field=field, detail=str(first["msg"]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, "http_error", detail=str(exc.detail))
        response.headers.update(exc.headers or {})  # 405 keeps its Allow header
        return response


def create_app() -> FastAPI:
    """The app; settings and connections come from the container on first request."""
    app = FastAPI(title="cmon", version="0.1.0", docs_url="/docs", redoc_url=None)

    @app.get("/health", tags=["health"], response_model=Health)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(webhooks)
    app.include_router(workflows)
    install_error_handlers(app)
    app.add_middleware(_FlushMetrics)
    return app


class _FlushMetrics:
    """Flush the request's metrics (EMF lines in Lambda) once it is answered.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through an extra task and memory streams, a measurable share of a
    webhook's CPU when pg_net sends 200 at once."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                deps = wiring.current()
                if deps is not None:
                    deps.metrics.flush()


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


logger = service_logger()
tracer = service_tracer()
app = create_app()
_mangum = _LambdaHandler(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> Any:
    """Mangum behind Powertools' context: every line carries the request ids."""
    return _mangum(event, context)
