"""Operator queries behind `cmon metrics`, `cmon rollout`, `cmon rollback`, `cmon cost`.

The brief's dashboard numbers computed straight from the tables (the same numbers the
CloudWatch dashboard shows from EMF), the rollout gate, and the brief's emergency
rollback — each a single transaction.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

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
    public.rollout_admitted_share() as admitted_share
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
    }


def format_metrics(m: dict[str, Any]) -> str:
    thresholds = {
        "error_rate": "warn > 1%, critical > 5%",
        "avg_latency_ms": "warn > 10000, critical > 20000",
        "duplicate_candles": "critical > 0: llm-proxy calls for a (workflow, candle) that already had one",
        "users_at_token_cap_today": "informational",
        "auto_disabled": "informational",
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


def _rollout_row(db: Database) -> dict[str, Any]:
    row = db.fetch_one(
        "select enabled, percent, tiers, allow_user_ids, deny_user_ids, daily_token_cap,"
        " daily_token_cap_by_tier, updated_at, updated_by from public.rollout_settings where id"
    )
    assert row is not None
    return {
        k: ([str(u) for u in v] if isinstance(v, list) and v and isinstance(v[0], UUID) else v)
        for k, v in row.items()
    }


def rollout_show(url: str) -> dict[str, Any]:
    db = Database(url)
    try:
        return _rollout_row(db)
    finally:
        db.close()


def rollout_set(
    url: str,
    *,
    percent: int | None,
    tiers: list[str] | None,
    allow: list[str] | None,
    deny: list[str] | None,
    enabled: bool | None,
    actor: str | None,
    daily_token_cap: int | None = None,
    daily_token_cap_by_tier: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Change only what was given; `tiers=[]` means every tier (null). Per-tier caps are
    merged into the existing ones (a tier's 0 means that tier has no cap)."""
    db = Database(url)
    try:
        db.fetch_one(
            "update public.rollout_settings set"
            " percent = coalesce(%(percent)s, percent),"
            " tiers = case when %(set_tiers)s then %(tiers)s::text[] else tiers end,"
            " allow_user_ids = coalesce(%(allow)s::uuid[], allow_user_ids),"
            " deny_user_ids = coalesce(%(deny)s::uuid[], deny_user_ids),"
            " enabled = coalesce(%(enabled)s, enabled),"
            " daily_token_cap = coalesce(%(cap)s, daily_token_cap),"
            " daily_token_cap_by_tier = daily_token_cap_by_tier || coalesce(%(tier_caps)s::jsonb, '{}'),"
            " updated_at = now(), updated_by = %(actor)s"
            " where id returning id",
            {
                "percent": percent,
                "set_tiers": tiers is not None,
                "tiers": tiers or None,
                "allow": [str(UUID(u)) for u in allow] if allow is not None else None,
                "deny": [str(UUID(u)) for u in deny] if deny is not None else None,
                "enabled": enabled,
                "cap": daily_token_cap,
                "tier_caps": Jsonb(daily_token_cap_by_tier) if daily_token_cap_by_tier else None,
                "actor": actor or "cmon",
            },
        )
        return _rollout_row(db)
    finally:
        db.close()


def format_rollout(r: dict[str, Any]) -> str:
    width = max(len(k) for k in r)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in r.items())


def rollback(url: str, *, tiers: list[str]) -> dict[str, Any]:
    """The brief's rollback plan in one transaction: no new workflows, none active."""
    db = Database(url)
    try:
        with db.transaction() as conn:
            traders = conn.execute(
                "update public.traders set auto_analyze_signals = false"
                " where auto_analyze_signals and user_id in"
                " (select id from public.user_profiles where subscription_tier = any(%(tiers)s))",
                {"tiers": tiers},
            ).rowcount
            workflows = conn.execute(
                "update public.workflow_schedules set is_active = false, stopped_reason = 'rollback',"
                " stopped_at = now(), updated_at = now() where is_active"
            ).rowcount
            conn.execute(
                "update public.rollout_settings set enabled = false, updated_at = now(),"
                " updated_by = 'cmon rollback' where id"
            )
        return {"traders_disabled": traders, "workflows_stopped": workflows, "rollout_enabled": False}
    finally:
        db.close()
