"""Operator queries behind `cmon metrics` and `cmon cost`.

The brief's dashboard numbers computed straight from the tables (the same numbers the
CloudWatch dashboard shows from EMF). The rollout gate and the rollback are recording
SQL functions behind `functions.adapters.operator_db`.
"""

from __future__ import annotations

from typing import Any

from functions.adapters.postgres import Database

_METRICS_SQL = """
with window_analyses as (
    select total_tokens, latency_ms from public.signal_analyses
     where created_at >= now() - make_interval(secs => %(secs)s)
    union all
    select total_tokens, latency_ms from public.management_decisions
     where created_at >= now() - make_interval(secs => %(secs)s) and source = 'llm'
), errors as (
    select count(*) as n from public.workflow_errors
     where created_at >= now() - make_interval(secs => %(secs)s)
)
select
    (select count(*) from public.workflow_schedules
      where is_active and workflow_type = 'setup_monitoring') as active_setup_workflows,
    (select count(*) from public.workflow_schedules
      where is_active and workflow_type = 'position_management') as active_position_workflows,
    (select count(*) from window_analyses) as analyses,
    (select coalesce(sum(total_tokens), 0) from window_analyses) as tokens,
    (select n from errors) as errors,
    (select avg(latency_ms) from window_analyses where latency_ms is not null) as avg_latency_ms,
    (select count(*) from (select 1 from public.signal_analyses where candle_time is not null
                            group by signal_id, candle_time having count(*) > 1) d)
  + (select count(*) from (select 1 from public.management_decisions
                            group by position_id, candle_time having count(*) > 1) d) as duplicate_candles,
    (select count(*) from public.workflow_schedules
      where stopped_reason = 'auto_disabled'
        and stopped_at >= now() - make_interval(secs => %(secs)s)) as auto_disabled
"""


def metrics_report(url: str, *, hours: float) -> dict[str, Any]:
    db = Database(url)
    try:
        row = db.fetch_one(_METRICS_SQL, {"secs": hours * 3600})
    finally:
        db.close()
    assert row is not None
    attempts = row["analyses"] + row["errors"]
    return {
        "window_hours": hours,
        "active_setup_workflows": row["active_setup_workflows"],
        "active_position_workflows": row["active_position_workflows"],
        "analyses": row["analyses"],
        "analyses_per_hour": round(row["analyses"] / hours, 2),
        "tokens": int(row["tokens"]),
        "tokens_per_hour": round(int(row["tokens"]) / hours, 1),
        "errors": row["errors"],
        "error_rate": round(row["errors"] / attempts, 4) if attempts else 0.0,
        "avg_latency_ms": None if row["avg_latency_ms"] is None else round(float(row["avg_latency_ms"]), 1),
        "duplicate_candles": row["duplicate_candles"],
        "auto_disabled": row["auto_disabled"],
    }


def format_metrics(m: dict[str, Any]) -> str:
    thresholds = {
        "error_rate": "warn > 1%, critical > 5%",
        "avg_latency_ms": "warn > 10000, critical > 20000",
        "duplicate_candles": "critical > 0",
        "auto_disabled": "informational",
    }
    width = max(len(k) for k in m)
    return "\n".join(
        f"{k.ljust(width)}  {v}" + (f"   ({thresholds[k]})" if k in thresholds else "") for k, v in m.items()
    )


def token_usage(url: str, *, hours: float) -> dict[str, Any]:
    report = metrics_report(url, hours=hours)
    return {"window_hours": hours, "total_tokens": report["tokens"], "analyses": report["analyses"]}
