"""Real event shapes from tests/events (copied verbatim from shared/fixtures)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load(relative: str) -> Any:
    return json.loads((EVENTS / relative).read_text())


def http_api_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, from the recorded Powertools sample."""
    event = copy.deepcopy(load("aws/powertools_apiGatewayProxyV2Event.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event.pop("queryStringParameters", None)
    event.pop("cookies", None)
    event["headers"] = {
        "content-type": "application/json",
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    event["body"] = body.decode() if isinstance(body, bytes) else body
    event["isBase64Encoded"] = False
    return event


def webhook_body(
    table: str, type_: str, record: dict[str, Any] | None, old_record: dict[str, Any] | None = None
) -> str:
    """The exact envelope pg_net sends: keys in jsonb order, as in the recordings."""
    return json.dumps(
        {"type": type_, "table": table, "record": record, "schema": "public", "old_record": old_record}
    )
