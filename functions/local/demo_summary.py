"""The demo's summary: every scenario's outcome, read back from the database, and the checks
that make `cmon demo`'s exit code (every scenario as expected, zero duplicate analyses)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from functions.core.stats import percentiles
from functions.local.demo_story import MAX_CONSECUTIVE_ERRORS, MAX_REANALYSES, SCENARIOS

if TYPE_CHECKING:
    from functions.local.demo_story import Demo, Wave

EXPECTED = {  # in the same words as the summary's "got" column
    "enter": "entered; position hold/adjust_sl/close; closed",
    "expire": f"{1 + MAX_REANALYSES} analyses, max_reanalyses",
    "bad": "wait/bad_setup, bad_setup",
    "fail": f"{MAX_CONSECUTIVE_ERRORS} errors, auto_disabled, notified",
}
OUTCOMES = {  # workflow_schedules.stopped_reason → the summary's name for it
    "entered": "entered",
    "max_reanalyses": "expired",
    "bad_setup": "bad_setup",
    "auto_disabled": "auto_disabled",
    "position_closed": "position_closed",
}
POINTS = (50, 95)


def summarise(demo: Demo) -> dict[str, Any]:
    reads = demo.reads()
    workflows = reads.workflows()
    analyses = reads.analyses()
    decisions = reads.decisions()
    errors = reads.errors()
    notifications = reads.notifications()
    duplicate_analyses = reads.duplicate_analyses()
    duplicate_decisions = reads.duplicate_decisions()
    by_outcome = Counter(dict.fromkeys((*OUTCOMES.values(), "active"), 0))
    for row in workflows:
        name = "active" if row["is_active"] else OUTCOMES.get(row["stopped_reason"], "other")
        by_outcome[name] += 1
    scenarios = [
        _scenario(wave, kind, workflows, analyses, decisions, errors, notifications)
        for wave in demo.waves
        for kind in SCENARIOS
    ]
    metrics = demo.services.metrics
    timers = demo.services.timers
    jobs_ms = timers["setup"].samples_ms + timers["position"].samples_ms
    checks = {
        "entered": by_outcome["entered"] > 0,
        "position_closed": by_outcome["position_closed"] > 0,
        "expired": by_outcome["expired"] > 0,
        "bad_setup": by_outcome["bad_setup"] > 0,
        "auto_disabled": by_outcome["auto_disabled"] > 0,
        "user_notified": any(n["kind"] == "workflow_disabled" for n in notifications),
        "every_scenario_played_out": bool(scenarios) and all(s["ok"] for s in scenarios),
        "zero_duplicate_analyses": not duplicate_analyses
        and not duplicate_decisions
        and not metrics.counts.get("DuplicateCandlesProcessed", 0),
    }
    tokens = {
        part: sum(int(r[f"{part}_tokens"]) for r in (*analyses, *decisions))
        for part in ("prompt", "completion", "total")
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "candles": demo.candles,
        "waves": len(demo.waves),
        "workflows_by_outcome": dict(by_outcome),
        "workflows": len(workflows),
        "analyses": {
            "total": len(analyses),
            "initial": sum(1 for a in analyses if a["analysis_type"] == "initial"),
            "monitoring": sum(1 for a in analyses if a["analysis_type"] == "monitoring"),
            "by_decision": dict(Counter(a["decision"] for a in analyses)),
        },
        "management_decisions": {
            "total": len(decisions),
            "applied": sum(1 for d in decisions if d["status"] == "applied"),
            "rejected": sum(1 for d in decisions if d["status"] == "rejected"),
            "by_action": dict(
                Counter(
                    d["action"] + (" (paper)" if d["source"] == "paper" else "")
                    for d in decisions
                    if d["status"] == "applied"
                )
            ),
        },
        "tokens": tokens,
        "errors": {"total": len(errors), "by_kind": dict(Counter(e["error_kind"] for e in errors))},
        "notifications": dict(Counter(n["kind"] for n in notifications)),
        "webhooks": {
            "delivered": demo.relay.stats.delivered,
            "failed": demo.relay.stats.failed,
            "by_action": dict(demo.relay.stats.by_action),
        },
        "latency_ms": {
            "non_llm_per_job": percentiles(jobs_ms, POINTS),
            "fanout_per_candle": percentiles(timers["fanout"].samples_ms, POINTS),
            "llm_call": percentiles(demo.services.llm.samples_ms, POINTS),
        },
        "duplicate_analyses": duplicate_analyses,
        "duplicate_decisions": duplicate_decisions,
        "duplicate_claims_skipped": int(metrics.counts.get("DuplicateClaimsSkipped", 0)),
        "scenarios": scenarios,
    }


def _scenario(
    wave: Wave,
    kind: str,
    workflows: list[dict[str, Any]],
    analyses: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    notifications: list[dict[str, Any]],
) -> dict[str, Any]:
    signal = wave.signals[kind]
    mine = [w for w in workflows if w["signal_id"] == signal]
    setup = next((w for w in mine if w["workflow_type"] == "setup_monitoring"), None)
    position = next((w for w in mine if w["workflow_type"] == "position_management"), None)
    decided = [a["decision"] for a in analyses if a["signal_id"] == signal]
    actions = [
        d["action"] + ("[paper]" if d["source"] == "paper" else "")
        for d in decisions
        if d["signal_id"] == signal and d["status"] == "applied"
    ]
    failures = sum(1 for e in errors if e["signal_id"] == signal)
    reason = setup["stopped_reason"] if setup and not setup["is_active"] else "active"
    if kind == "enter":
        closed = position is not None and position["stopped_reason"] == "position_closed"
        ok = (
            reason == "entered"
            and closed
            and len(decided) == 3
            and bool(actions)
            and actions[-1].startswith("close")
        )
        got = f"{reason}; position {'/'.join(actions) or '-'}{'; closed' if closed else ''}"
    elif kind == "expire":
        ok = reason == "max_reanalyses" and decided == ["wait"] * (1 + MAX_REANALYSES)
        got = f"{len(decided)} analyses, {reason}"
    elif kind == "bad":
        ok = reason == "bad_setup" and decided == ["wait", "bad_setup"]
        got = f"{'/'.join(decided)}, {reason}"
    else:
        notified = any(n["workflow_id"] == (setup or {}).get("id") for n in notifications)
        ok = reason == "auto_disabled" and failures == MAX_CONSECUTIVE_ERRORS and notified
        got = f"{failures} errors, {reason}{', notified' if notified else ''}"
    return {
        "wave": wave.number,
        "scenario": kind,
        "signal_id": str(signal),
        "expected": EXPECTED[kind],
        "got": got,
        "ok": ok,
    }
