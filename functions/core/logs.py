"""One JSON log stream for every logger of ours, with secrets masked.

Our modules log through the standard library (`logging.getLogger("cmon.…")` in services,
`logging.getLogger(__name__)` in adapters and the feed). In Lambda those would reach the
runtime's root text handler, losing their `extra` fields and (below WARNING) the line
itself. `service_logger()` creates the process's Powertools Logger once and hangs its
JSON handler on the roots of our logger names (`cmon`, `functions`, `feed_service`), so
every line is one JSON object with the keys the handler appended (request id, workflow,
candle) and the line's own `extra`.

Secrets never appear: the formatter masks URL passwords (`postgresql://u:***@h`), every
value registered with `register_secret()` (the settings do it for each SecretStr) and
`SecretStr` extras (pydantic already renders them as `**********`).

Nothing happens at import (the Powertools import and the handler are made on first call),
so this pure module stays cheap for the feed and the CLI.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from functions.core.telemetry import SERVICE

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

# The roots of every logger name we use: services log under `cmon.*`, modules under
# their `__name__`.
OUR_LOGGERS = (SERVICE, "functions", "feed_service")
REDACTED = "**********"
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/?#@\s\"']*:)(?P<password>[^@/\s\"']+)@", re.I
)
_secrets: set[str] = set()
_state: dict[str, Any] = {}


def register_secret(*values: str | None) -> None:
    """Mask these values wherever they would appear in a log line (short ones are ignored)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    """`text` with URL passwords and registered secrets replaced by `**********`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret:
            text = text.replace(escaped, REDACTED)
    return text


def _formatter() -> Any:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class RedactingFormatter(LambdaPowertoolsFormatter):
        """Powertools' JSON, then masked: the last step before a line leaves the process."""

        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    # `name`: which logger spoke (Powertools shows only the service by default).
    return RedactingFormatter(name="%(name)s")


def service_logger(
    service: str = SERVICE, *, stream: IO[str] | None = None, level: str | int | None = None
) -> Logger:
    """The process's Powertools Logger, made on first call and attached to all our loggers.

    Later calls return the same Logger (the first call's service and stream win), so every
    handler module may call it at import like `Logger(service=...)`.
    """
    logger: Logger | None = _state.get("logger")
    if logger is None:
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.filters import SuppressFilter

        logger = Logger(service=service, stream=stream or sys.stdout, logger_formatter=_formatter())
        handlers = list(logger._logger.handlers)
        for name in OUR_LOGGERS:
            ours = logging.getLogger(name)
            if ours is logger._logger:
                continue
            for old in [h for h in ours.handlers if getattr(h, "_cmon_json", False)]:
                ours.removeHandler(old)
            for handler in handlers:
                handler._cmon_json = True  # type: ignore[attr-defined]
                ours.addHandler(handler)
            # As Powertools does for its own logger: records still propagate (pytest's caplog
            # sees them) but the runtime's root text handler does not print them a second time.
            for root_handler in logging.root.handlers:
                if type(root_handler).__module__ != "_pytest.logging":
                    root_handler.addFilter(SuppressFilter(name))
        _state["logger"] = logger
        set_level(logger.log_level)
    if level is not None:
        set_level(level)
    return logger


def set_level(level: str | int) -> None:
    """One level for all our loggers (`cmon -v`, `--log-level`, POWERTOOLS_LOG_LEVEL)."""
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(resolved, int):
        raise ValueError(f"unknown log level: {level!r}")
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(resolved)
    logger: Logger | None = _state.get("logger")
    if logger is not None:
        logger.setLevel(resolved)


def candle_key(symbol: str, interval: str, close_time: datetime) -> str:
    """The `candle` correlation id, the same in the feed, the fan-out and the workers."""
    return f"{symbol}@{interval}@{close_time.isoformat()}"
