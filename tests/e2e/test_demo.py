"""`cmon demo --json --short` end to end, in-process: the newcomer's first command.

It starts its own embedded Postgres, moto and stub llm-proxy, plays one wave of the
brief's scenarios through the real handlers and tears everything down. The summary it
prints is the contract: every outcome at least once, zero duplicate analyses, exit 0.
"""

from __future__ import annotations

import json
import os

import pytest

from functions.cli import main

pytestmark = pytest.mark.slow

OUTCOMES = ("entered", "expired", "bad_setup", "auto_disabled", "position_closed")


def test_short_demo_plays_every_scenario_with_zero_duplicates(capsys: pytest.CaptureFixture[str]) -> None:
    aws_before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}

    status = main(["demo", "--json", "--short"])

    out = capsys.readouterr().out
    summary = json.loads(out)  # stdout is the JSON summary and nothing else
    assert status == 0, summary["checks"]
    assert summary["ok"] is True
    assert all(summary["checks"].values()), summary["checks"]
    for outcome in OUTCOMES:
        assert summary["workflows_by_outcome"][outcome] >= 1, (outcome, summary["workflows_by_outcome"])
    assert summary["workflows_by_outcome"]["active"] == 0
    assert summary["notifications"]["workflow_disabled"] >= 1
    decisions = summary["management_decisions"]
    assert decisions["by_action"].get("hold", 0) >= 1
    assert decisions["by_action"].get("adjust_sl", 0) >= 1
    assert decisions["rejected"] == 0
    assert summary["errors"]["by_kind"]["llm_unavailable"] == 5
    # One wave: 4 initial analyses; then wait+enter, wait x3, bad_setup; the failing one none.
    assert (summary["analyses"]["initial"], summary["analyses"]["monitoring"]) == (4, 6)
    assert summary["webhooks"]["failed"] == 0
    assert summary["webhooks"]["by_action"]["queued"] == 4  # one per signal INSERT
    assert summary["latency_ms"]["non_llm_per_job"]["count"] > 0
    assert all(row["ok"] for row in summary["scenarios"]), summary["scenarios"]
    # The demo restores the process environment it changed (it ran in-process).
    assert {k: v for k, v in os.environ.items() if k.startswith("AWS_")} == aws_before


def test_short_demo_over_the_edge_function_transport(capsys: pytest.CaptureFixture[str]) -> None:
    """The same demo with llm-proxy called as a Supabase Edge Function (the stub's
    `/functions/v1/llm-proxy/…` layout, which 401s a wrong `Authorization` or `apikey`)."""
    status = main(["demo", "--json", "--short", "--llm-transport", "edge"])

    summary = json.loads(capsys.readouterr().out)
    assert status == 0, summary["checks"]
    assert summary["llm_transport"] == "edge"
    assert all(summary["checks"].values()), summary["checks"]
    assert (summary["analyses"]["initial"], summary["analyses"]["monitoring"]) == (4, 6)
    # The failing scenario's 500s arrive as FunctionsHttpError and still count as outages.
    assert summary["errors"]["by_kind"]["llm_unavailable"] == 5
    assert summary["duplicate_analyses"] == 0


def test_demo_refuses_an_unknown_llm_transport(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_PROXY_TRANSPORT", "carrier-pigeon")

    status = main(["demo", "--json", "--short"])

    assert status == 2
    assert "LLM_PROXY_TRANSPORT" in capsys.readouterr().err
