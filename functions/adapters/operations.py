"""The operator's reads: every query an operator (or the demo's summary) runs against the tables.

One adapter, five faces: `cmon metrics` / `cmon cost` / `cmon workflows`, the admin API's
`GET /workflows` and `GET /workflows/{id}` (the `AdminReads` port), `cmon demo`'s live
view and summary (`OperatorReads.for_traders`), `cmon report`'s rows (`ReviewReads`) and
`cmon replay`'s summary (`ReplayReads`). The dashboard numbers are computed
straight from the tables (the same numbers the CloudWatch dashboard shows from EMF).
The operator's *writes* (rollout gate, rollback, resume) are recording SQL functions
behind `functions.adapters.operator_db`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from functions.adapters.postgres import Database, Row
from functions.core.errors import NotFound

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


def json_ready(row: Row) -> dict[str, Any]:
    """Row values as JSON-friendly primitives (API answers, `--json`, the prompt)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            out[key] = format(value, "f")
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out


class OperatorReads:
    """Read-only queries; implements the `AdminReads` port."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # the dashboard ------------------------------------------------------------------------

    def metrics(self, *, hours: float, usd_per_1k_tokens: float) -> dict[str, Any]:
        row = self.db.fetch_one(_METRICS_SQL, {"secs": hours * 3600})
        if row is None:  # a select without from always returns its row
            raise RuntimeError("the metrics query returned no row")
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

    # the admin API and `cmon workflows` ---------------------------------------------------

    def list_workflows(
        self,
        *,
        active: bool | None = None,
        workflow_type: str | None = None,
        symbol: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        rows = self.db.fetch_all(
            "select * from public.workflow_schedules"
            " where (%(active)s::boolean is null or is_active = %(active)s)"
            "   and (%(type)s::text is null or workflow_type = %(type)s)"
            "   and (%(symbol)s::text is null or symbol = %(symbol)s)"
            " order by created_at desc, id limit %(limit)s",
            {"active": active, "type": workflow_type, "symbol": symbol, "limit": limit},
        )
        return [json_ready(r) for r in rows]

    def workflow_detail(self, workflow_id: UUID) -> dict[str, Any]:
        row = self.db.fetch_one(
            "select * from public.workflow_schedules where id = %(id)s", {"id": workflow_id}
        )
        if row is None:
            raise NotFound(f"workflow {workflow_id} not found")
        detail = json_ready(row)
        detail["analyses"] = (
            [
                json_ready(r)
                for r in self.db.fetch_all(
                    "select id, decision, confidence, reasoning, analysis_type, candle_time, total_tokens,"
                    " latency_ms, created_at from public.signal_analyses where signal_id = %(s)s"
                    " order by created_at, id",
                    {"s": row["signal_id"]},
                )
            ]
            if row["signal_id"] is not None and row["workflow_type"] == "setup_monitoring"
            else []
        )
        detail["decisions"] = (
            [
                json_ready(r)
                for r in self.db.fetch_all(
                    "select id, candle_time, action, params, source, status, rejection_reason, price,"
                    " realized_pnl, total_tokens, latency_ms, created_at from public.management_decisions"
                    " where position_id = %(p)s order by candle_time",
                    {"p": row["position_id"]},
                )
            ]
            if row["position_id"] is not None
            else []
        )
        detail["errors"] = [
            json_ready(r)
            for r in self.db.fetch_all(
                "select candle_time, error_kind, message, created_at from public.workflow_errors"
                " where workflow_id = %(w)s order by created_at, id",
                {"w": workflow_id},
            )
        ]
        return detail

    # one set of traders (the demo's waves) ------------------------------------------------

    def for_traders(self, traders: Sequence[UUID], users: Sequence[UUID]) -> TraderReads:
        return TraderReads(self.db, list(traders), list(users))


class TraderReads:
    """What happened to the rows of some traders and their users, oldest first: the demo's
    live view and its summary read the database (the truth), never their own counters."""

    def __init__(self, db: Database, traders: list[UUID], users: list[UUID]) -> None:
        self.db = db
        self._t = {"t": traders}
        self._u = {"u": users}

    def analyses(self) -> list[Row]:
        return self.db.fetch_all(
            "select a.id, a.signal_id, a.analysis_type, a.decision, a.confidence, a.prompt_tokens,"
            " a.completion_tokens, a.total_tokens"
            " from public.signal_analyses a join public.signals s on s.id = a.signal_id"
            " where s.trader_id = any(%(t)s) order by a.created_at, a.id",
            self._t,
        )

    def decisions(self) -> list[Row]:
        return self.db.fetch_all(
            "select d.id, p.signal_id, d.action, d.params, d.status, d.rejection_reason, d.source,"
            " d.prompt_tokens, d.completion_tokens, d.total_tokens"
            " from public.management_decisions d join public.positions p on p.id = d.position_id"
            " where p.trader_id = any(%(t)s) order by d.created_at, d.id",
            self._t,
        )

    def positions(self) -> list[Row]:
        return self.db.fetch_all(
            "select p.id, p.signal_id, p.status, p.entry_price, p.stop_loss, p.take_profit, p.exit_price,"
            " p.realized_pnl from public.positions p where p.trader_id = any(%(t)s)",
            self._t,
        )

    def position_of(self, signal_id: UUID) -> UUID | None:
        row = self.db.fetch_one("select id from public.positions where signal_id = %(s)s", {"s": signal_id})
        return None if row is None else UUID(str(row["id"]))

    def errors(self) -> list[Row]:
        return self.db.fetch_all(
            "select e.id, w.signal_id, e.error_kind, row_number() over (partition by e.workflow_id"
            " order by e.created_at, e.id) as streak from public.workflow_errors e"
            " join public.workflow_schedules w on w.id = e.workflow_id"
            " where w.trader_id = any(%(t)s) order by e.created_at, e.id",
            self._t,
        )

    def workflows(self) -> list[Row]:
        return self.db.fetch_all(
            "select w.id, w.workflow_type, coalesce(w.signal_id, p.signal_id) as signal_id, w.is_active,"
            " w.stopped_reason, w.reanalysis_count, w.consecutive_errors, w.last_candle_time"
            " from public.workflow_schedules w left join public.positions p on p.id = w.position_id"
            " where w.trader_id = any(%(t)s) order by w.created_at, w.id",
            self._t,
        )

    def notifications(self) -> list[Row]:
        return self.db.fetch_all(
            "select id, kind, workflow_id, user_id, title from public.notifications"
            " where user_id = any(%(u)s) order by created_at, id",
            self._u,
        )

    def duplicate_analyses(self) -> int:
        """(signal, candle) pairs analysed more than once (a unique key forbids it)."""
        return len(
            self.db.fetch_all(
                "select a.signal_id, a.candle_time from public.signal_analyses a"
                " join public.signals s on s.id = a.signal_id where s.trader_id = any(%(t)s)"
                " group by a.signal_id, a.candle_time having count(*) > 1",
                self._t,
            )
        )

    def duplicate_decisions(self) -> int:
        """(position, candle) pairs decided more than once (a unique key forbids it)."""
        return len(
            self.db.fetch_all(
                "select d.position_id, d.candle_time from public.management_decisions d"
                " join public.positions p on p.id = d.position_id where p.trader_id = any(%(t)s)"
                " group by d.position_id, d.candle_time having count(*) > 1",
                self._t,
            )
        )


class ReviewReads:
    """`cmon report`'s rows: those of some traders (a replay's run) or, with `traders`
    None, those of a time window of a live database, oldest first."""

    def __init__(
        self, db: Database, *, traders: Sequence[UUID] | None, since: datetime, until: datetime
    ) -> None:
        self.db = db
        self._traders = traders
        self._params = {"traders": None if traders is None else list(traders), "since": since, "until": until}

    def _scope(self, alias: str, time_sql: str) -> str:
        if self._traders is not None:
            return f"{alias}.trader_id = any(%(traders)s)"
        return f"{time_sql} >= %(since)s and {time_sql} <= %(until)s"

    def analyses(self) -> list[Row]:
        a_time = "coalesce(a.candle_time, a.created_at)"
        return self.db.fetch_all(
            "select a.signal_id, s.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval,"
            f" a.analysis_type, a.decision, a.confidence, {a_time} as at, a.candle_time, a.total_tokens,"
            " a.latency_ms, a.trade_plan, a.shadow from public.signal_analyses a"
            " join public.signals s on s.id = a.signal_id"
            " join public.traders t on t.id = s.trader_id"
            " left join public.workflow_schedules w on w.id = a.workflow_id"
            f" where {self._scope('s', a_time)} order by at",
            self._params,
        )

    def decisions(self) -> list[Row]:
        return self.db.fetch_all(
            "select d.position_id, p.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval,"
            " d.candle_time as at, d.action, d.params, d.source, d.status, d.rejection_reason, d.confidence,"
            " d.price, d.after_state, d.total_tokens, d.latency_ms, d.shadow"
            " from public.management_decisions d join public.positions p on p.id = d.position_id"
            " join public.traders t on t.id = p.trader_id"
            " left join public.workflow_schedules w on w.id = d.workflow_id"
            f" where {self._scope('p', 'd.candle_time')} order by d.candle_time",
            self._params,
        )

    def positions(self) -> list[Row]:
        return self.db.fetch_all(
            "select p.id, p.symbol, coalesce(w.interval, t.filter->>'interval', '1h') as interval, p.side,"
            " p.entry_price, p.stop_loss, p.take_profit, p.status, p.exit_price, p.realized_pnl,"
            " coalesce((select a.candle_time from public.signal_analyses a where a.signal_id = p.signal_id"
            "   and a.decision = 'enter_trade' order by a.candle_time limit 1), p.opened_at) as opened,"
            " (select min(d.candle_time) from public.management_decisions d where d.position_id = p.id"
            "   and d.status = 'applied' and d.after_state->>'status' = 'closed') as closed,"
            " (select d.before_state from public.management_decisions d where d.position_id = p.id"
            "   order by d.candle_time limit 1) as first_state"
            " from public.positions p join public.traders t on t.id = p.trader_id"
            " left join public.workflow_schedules w on w.position_id = p.id"
            f" where {self._scope('p', 'p.opened_at')} order by p.opened_at",
            self._params,
        )

    def errors(self) -> list[Row]:
        return self.db.fetch_all(
            "select e.error_kind, e.message, e.created_at, e.candle_time from public.workflow_errors e"
            " join public.workflow_schedules w on w.id = e.workflow_id"
            f" where {self._scope('w', 'e.created_at')} order by e.created_at",
            self._params,
        )

    def auto_disabled(self) -> list[Row]:
        return self.db.fetch_all(
            "select w.id, w.symbol, w.interval, w.workflow_type, w.stopped_at"
            " from public.workflow_schedules w"
            f" where w.stopped_reason = 'auto_disabled' and {self._scope('w', 'w.stopped_at')}",
            self._params,
        )


class ReplayReads:
    """What a `cmon replay` run recorded, read back for its summary: the rows of the run's
    traders (a throw-away set, or the only ones on a throw-away database)."""

    def __init__(self, db: Database, traders: Sequence[UUID]) -> None:
        self.db = db
        self._t = {"t": list(traders)}

    def analyses(self) -> list[Row]:
        """Every analysis, the initial ones first, then by candle."""
        return self.db.fetch_all(
            "select a.signal_id, s.symbol, a.analysis_type, a.decision, a.confidence, a.candle_time,"
            " a.prompt_tokens, a.completion_tokens, a.total_tokens, a.latency_ms, a.trade_plan"
            " from public.signal_analyses a join public.signals s on s.id = a.signal_id"
            " where s.trader_id = any(%(t)s) order by a.candle_time nulls first, a.signal_id",
            self._t,
        )

    def positions(self) -> list[Row]:
        """Every position, in the order they opened."""
        return self.db.fetch_all(
            "select p.id, p.signal_id, p.symbol, p.side, p.entry_price, p.contracts, p.initial_contracts,"
            " p.stop_loss, p.take_profit, p.status, p.exit_price, p.realized_pnl, p.close_reason"
            " from public.positions p where p.trader_id = any(%(t)s) order by p.opened_at, p.id",
            self._t,
        )

    def decisions(self) -> list[Row]:
        """Every management decision, by candle."""
        return self.db.fetch_all(
            "select d.position_id, d.candle_time, d.action, d.params, d.source, d.status, d.rejection_reason,"
            " d.confidence, d.price, d.before_state, d.after_state, d.prompt_tokens, d.completion_tokens,"
            " d.total_tokens, d.latency_ms from public.management_decisions d"
            " join public.positions p on p.id = d.position_id where p.trader_id = any(%(t)s)"
            " order by d.candle_time, d.position_id",
            self._t,
        )

    def workflows(self) -> list[Row]:
        """How each workflow ended (or that it is still active)."""
        return self.db.fetch_all(
            "select w.workflow_type, w.is_active, w.stopped_reason from public.workflow_schedules w"
            " where w.trader_id = any(%(t)s)",
            self._t,
        )

    def errors(self) -> list[Row]:
        """The kind of every failed attempt."""
        return self.db.fetch_all(
            "select e.error_kind from public.workflow_errors e join public.workflow_schedules w"
            " on w.id = e.workflow_id where w.trader_id = any(%(t)s)",
            self._t,
        )


def metrics_report(url: str, *, hours: float, usd_per_1k_tokens: float) -> dict[str, Any]:
    """`cmon metrics`: `OperatorReads.metrics` over a connection opened and closed here."""
    db = Database(url)
    try:
        return OperatorReads(db).metrics(hours=hours, usd_per_1k_tokens=usd_per_1k_tokens)
    finally:
        db.close()


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
