"""Operator queries behind `cmon metrics` and `cmon cost`.

The brief's dashboard numbers computed straight from the tables (the same numbers the
CloudWatch dashboard shows from EMF). The rollout gate and the rollback are recording
SQL functions behind `functions.adapters.operator_db`.
"""

from __future__ import annotations

from typing import Any

from functions.adapters.postgres import Database

# Analyses and errors are what the tables recorded; everything about LLM calls (tokens,
# latency, duplicates) comes from the one ledger, `llm_calls`, through llm_ledger_summary.
_METRICS_SQL = """
with since as (select public.cmon_now() - make_interval(secs => %(secs)s) as t)
select
    (select count(*) from public.workflow_schedules
      where is_active and workflow_type = 'setup_monitoring') as active_setup_workflows,
    (select count(*) from public.workflow_schedules
      where is_active and workflow_type = 'position_management') as active_position_workflows,
    (select count(*) from public.signal_analyses, since where created_at >= since.t)
  + (select count(*) from public.management_decisions, since
      where created_at >= since.t and source = 'llm') as analyses,
    (select count(*) from public.workflow_errors, since where created_at >= since.t) as errors,
    (select count(*) from public.workflow_schedules, since
      where stopped_reason = 'auto_disabled' and stopped_at >= since.t) as auto_disabled,
    (select public.llm_ledger_summary(since.t) from since) as ledger,
    public.rollout_admitted_share() as admitted_share,
    -- The shadow cohort apart: recorded, never applied (tokens still paid for).
    (select count(*) from public.signal_analyses, since where created_at >= since.t and shadow)
  + (select count(*) from public.management_decisions, since
      where created_at >= since.t and source = 'llm' and shadow) as shadow_analyses,
    (select count(*) from public.management_decisions, since where created_at >= since.t) as decisions,
    (select count(*) from public.management_decisions, since
      where created_at >= since.t and shadow) as shadow_decisions,
    (select coalesce(sum(total_tokens), 0) from public.llm_calls, since
      where created_at >= since.t and shadow) as shadow_tokens
"""


def usd(tokens: int, usd_per_1k_tokens: float) -> float:
    """Tokens as money, rounded to the cent's hundredth (cost figures, not accounting)."""
    return round(tokens * usd_per_1k_tokens / 1000, 4)


def metrics_report(url: str, *, hours: float, usd_per_1k_tokens: float) -> dict[str, Any]:
    db = Database(url)
    try:
        row = db.fetch_one(_METRICS_SQL, {"secs": hours * 3600})
    finally:
        db.close()
    assert row is not None
    ledger = row["ledger"]
    attempts = row["analyses"] + row["errors"]
    tokens = int(ledger["total_tokens"])
    return {
        "window_hours": hours,
        "active_setup_workflows": row["active_setup_workflows"],
        "active_position_workflows": row["active_position_workflows"],
        "analyses": row["analyses"],
        "analyses_per_hour": round(row["analyses"] / hours, 2),
        "llm_calls": ledger["calls"],
        "llm_calls_by_outcome": ledger["by_outcome"],
        "tokens": tokens,
        "prompt_tokens": int(ledger["prompt_tokens"]),
        "completion_tokens": int(ledger["completion_tokens"]),
        "tokens_per_hour": round(tokens / hours, 1),
        "cost_usd": usd(tokens, usd_per_1k_tokens),
        "usd_per_1k_tokens": usd_per_1k_tokens,
        "errors": row["errors"],
        "error_rate": round(row["errors"] / attempts, 4) if attempts else 0.0,
        "avg_latency_ms": None if ledger["avg_latency_ms"] is None else float(ledger["avg_latency_ms"]),
        "duplicate_candles": ledger["duplicate_calls"],
        "users_at_token_cap_today": ledger["users_at_cap_today"],
        "rollout_admitted_share": float(row["admitted_share"]),
        "auto_disabled": row["auto_disabled"],
        # Live and shadow apart (the totals above are their sums).
        "analyses_live": row["analyses"] - row["shadow_analyses"],
        "analyses_shadow": row["shadow_analyses"],
        "decisions_live": row["decisions"] - row["shadow_decisions"],
        "decisions_shadow": row["shadow_decisions"],
        "tokens_live": tokens - int(row["shadow_tokens"]),
        "tokens_shadow": int(row["shadow_tokens"]),
        "cost_usd_shadow": usd(int(row["shadow_tokens"]), usd_per_1k_tokens),
    }


def format_metrics(m: dict[str, Any]) -> str:
    thresholds = {
        "error_rate": "warn > 1%, critical > 5%",
        "avg_latency_ms": "warn > 10000, critical > 20000",
        "duplicate_candles": "critical > 0: llm-proxy calls for a (workflow, candle) that already had one",
        "users_at_token_cap_today": "informational",
        "auto_disabled": "informational",
        "analyses_shadow": "shadow cohort: recorded, nothing applied",
    }
    width = max(len(k) for k in m)
    return "\n".join(
        f"{k.ljust(width)}  {v}" + (f"   ({thresholds[k]})" if k in thresholds else "") for k, v in m.items()
    )


def token_usage(url: str, *, hours: float, usd_per_1k_tokens: float) -> dict[str, Any]:
    """The ledger's tokens over the window and the share of users the rollout admits."""
    report = metrics_report(url, hours=hours, usd_per_1k_tokens=usd_per_1k_tokens)
    return {
        "window_hours": hours,
        "total_tokens": report["tokens"],
        "cost_usd": report["cost_usd"],
        "llm_calls": report["llm_calls"],
        "analyses": report["analyses"],
        "rollout_admitted_share": report["rollout_admitted_share"],
    }
