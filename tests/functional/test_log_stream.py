"""One JSON log stream: a worker handler's real stdout, parsed line by line.

The handler runs in its own interpreter (as in Lambda: Powertools writes to the process's
stdout), over a real Postgres, with llm-proxy unreachable so that the adapter
(`functions.adapters.llm_proxy`), the service (`cmon.worker`) and the handler all log.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from typing import Any

from functions.adapters.postgres import Database
from tests.support import factories as f
from tests.support.events import load
from tests.support.stack import candle

SCRIPT = r"""
import json, logging, os, sys
from pydantic import SecretStr
from functions.handlers import setup_analysis
from functions.local.runner import LambdaContext

event = json.loads(sys.stdin.read())
# Before anything is built: a URL with a password, a SecretStr extra.
logging.getLogger("functions.adapters.postgres").warning(
    "connecting to %s", "postgresql://cmon:pw-in-a-url-1234@db.example:6543/postgres"
)
logging.getLogger("cmon.settings").info("loaded", extra={"api_key": SecretStr("secret-str-value-77")})
print(json.dumps({"handler_result": setup_analysis.handler(event, LambdaContext("setup"))}))
# After the settings were read: the raw value of a secret setting, in a message.
logging.getLogger("functions.adapters.llm_proxy").error("proxy key %s", os.environ["LLM_PROXY_API_KEY"])
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_handler(db_url: str, event: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "LLM_PROXY_URL": f"http://127.0.0.1:{_closed_port()}",
        "LLM_PROXY_API_KEY": "llm-key-never-logged-42",
        "LLM_PROXY_MAX_ATTEMPTS": "2",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_METRICS_NAMESPACE": "Cmon",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return lines, done.stdout + done.stderr


def test_every_logger_of_ours_reaches_one_json_stream_with_the_correlation_ids(
    db: Database, db_url: str
) -> None:
    trader = f.trader(db)
    analysis = f.analysis(db, f.signal(db, trader), "wait")
    workflow = db.call("register_setup_monitoring", analysis_id=analysis, max_reanalyses=5)["workflow_id"]
    c = candle()
    event = copy.deepcopy(load("aws/powertools_sqsEvent.json"))
    event["Records"] = event["Records"][:1]
    job = {"kind": "candle", "workflow_id": workflow, "candle": c.model_dump(mode="json")}
    event["Records"][0]["body"] = json.dumps(job)

    lines, raw = run_handler(db_url, event)

    logs = [line for line in lines if "level" in line]
    by_logger = {line.get("name"): line for line in logs}
    assert {"functions.adapters.llm_proxy", "cmon.worker", "functions.adapters.postgres"} <= set(by_logger)
    # The lines logged while the job ran carry the job's ids and the Lambda request id.
    during = [line for line in logs if line.get("workflow_id") == workflow]
    assert {line["name"] for line in during} >= {"functions.adapters.llm_proxy", "cmon.worker"}
    expected_candle = f"{c.symbol}@{c.interval}@{c.close_time.isoformat()}"
    assert all(line["candle"] == expected_candle for line in during)
    assert all(line["function_request_id"] for line in during)
    # ... and the service's own `extra` fields.
    error = next(line for line in during if line["message"] == "Error")
    assert (error["error_kind"], error["consecutive_errors"]) == ("llm_unavailable", 1)
    retry = next(line for line in during if line["name"] == "functions.adapters.llm_proxy")
    assert retry["level"] == "WARNING" and "attempt 1/2" in retry["message"]
    # Keys appended for a job do not leak onto lines logged after it.
    assert "workflow_id" not in lines[-1] and "candle" not in lines[-1]

    for secret in ("pw-in-a-url-1234", "secret-str-value-77", "llm-key-never-logged-42"):
        assert secret not in raw
    assert "postgresql://cmon:**********@db.example" in raw
    assert lines[-1]["message"] == "proxy key **********"
