"""X-Ray tracing through Powertools Tracer: spans around the steps that cost time.

One trace per invocation (`Tracing: Active` in the template; the handlers use
`@tracer.capture_lambda_handler`), with subsegments for the claim, the llm-proxy call and
the record step. The trace header goes to llm-proxy (`X-Amzn-Trace-Id`), so its Braintrust
trace can be joined to ours. Without an X-Ray daemon (tests, `cmon local`) the Tracer is
disabled: Powertools does so outside Lambda and whenever POWERTOOLS_TRACE_DISABLED=true,
and every span below is then a no-op.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from functions.core.telemetry import SERVICE

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

P = ParamSpec("P")
R = TypeVar("R")
_state: dict[str, Any] = {}


def service_tracer() -> Tracer:
    """The process's Tracer (Powertools shares its configuration between instances)."""
    tracer: Tracer | None = _state.get("tracer")
    if tracer is None:
        from aws_lambda_powertools import Tracer

        tracer = Tracer(service=SERVICE)
        _state["tracer"] = tracer
    return tracer


def _enabled() -> bool:
    return not service_tracer().disabled


@contextmanager
def span(name: str, **annotations: str | bool | None) -> Iterator[None]:
    """A subsegment `name`, annotated (searchable in X-Ray) with the non-None values."""
    if not _enabled():
        yield
        return
    with service_tracer().provider.in_subsegment(f"## {name}") as subsegment:
        for key, value in annotations.items():
            if value is not None:
                subsegment.put_annotation(key, value)
        yield


def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function in `span(name)`."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(name):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def trace_header() -> str | None:
    """`X-Amzn-Trace-Id` for an outgoing call: the current subsegment as its parent.

    Falls back to the invocation's header from the Lambda runtime (`_X_AMZN_TRACE_ID`),
    so the root trace id is passed on even when the SDK is disabled.
    """
    if _enabled():
        from aws_xray_sdk.core import xray_recorder

        entity = xray_recorder.get_trace_entity()
        trace_id = getattr(entity, "trace_id", None)
        if trace_id and getattr(entity, "id", None):
            sampled = int(bool(getattr(entity, "sampled", True)))
            return f"Root={trace_id};Parent={entity.id};Sampled={sampled}"
    return os.environ.get("_X_AMZN_TRACE_ID") or None
