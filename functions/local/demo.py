"""`cmon demo`: the brief's scenarios, played through the real handlers in under a minute.

Nothing is mocked inside the system: rows are written with SQL as the platform writes
them; the NOTIFY triggers and the relay turn them into the exact Supabase webhook
bodies for the API Lambda (FastAPI behind Mangum, called in-process); candles from the
feed's simulator go through the feed's real `EventBridgePublisher` to a moto bus whose
rule feeds the fan-out; the trigger runner hands SQS batches to the real workers, which
call the stub llm-proxy over HTTP and record + apply in Postgres. Only the stub's
answers are scripted, per signal or position and just in time (a plan or a stop needs
the candle's price), so every run tells the same story:

a wave = one elite trader (`auto_analyze_signals`, filter interval 1m) and four signals,
all analysed `wait` initially (signal INSERT webhook → initial analysis), then
- enter:  wait, enter_trade (a position opens, in SQL) → hold, adjust_sl, close;
- expire: wait, max_reanalyses (3) times → the signal expires;
- bad:    bad_setup → the signal expires;
- fail:   llm-proxy answers 500 five times → the workflow is auto-disabled and its
          user gets a notification.

A wave needs five candles; waves start three candles apart; one more candle at the end
shows that stopped workflows stay stopped. The exit code says whether every scenario
ended as expected with zero duplicate analyses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from functions.adapters.postgres import Database
    from functions.core.contracts import CandleClosed
    from functions.local.live_view import View
    from functions.local.relay import Delivery
    from functions.local.runner import TriggerRunner
    from functions.local.serve import Services
    from functions.local.stub_llm import StubLlmProxy

SCENARIOS = ("enter", "expire", "bad", "fail")
MAX_REANALYSES = 3
MAX_CONSECUTIVE_ERRORS = 5
EXPECTED = {  # in the same words as the summary's "got" column
    "enter": "entered; position hold/adjust_sl/close; closed",
    "expire": f"{1 + MAX_REANALYSES} analyses, max_reanalyses",
    "bad": "wait/bad_setup, bad_setup",
    "fail": f"{MAX_CONSECUTIVE_ERRORS} errors, auto_disabled, notified",
}
WAVE_LENGTH = 5  # candles a wave's workflows need
WAVE_SPACING = 3  # candles between two waves' starts
SYMBOL, INTERVAL = "BTCUSDT", "1m"
WEBHOOK_SECRET = "local-demo-webhook-secret"  # noqa: S105 - a throw-away local secret
ADMIN_KEY = "local-demo-admin-key"
CENT = Decimal("0.01")

OUTCOMES = {  # workflow_schedules.stopped_reason → the summary's name for it
    "entered": "entered",
    "max_reanalyses": "expired",
    "bad_setup": "bad_setup",
    "auto_disabled": "auto_disabled",
    "position_closed": "position_closed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print only the summary, as JSON, on stdout (no live view)"
    )
    parser.add_argument(
        "--short", action="store_true", help="one wave at 4x the speed (about 6 candles; what the tests run)"
    )
    parser.add_argument("--waves", type=int, default=3, help="waves of the four scenarios (default 3)")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second (default 60: a 1m candle a second; 240 with --short)",
    )
    parser.add_argument("--seed", type=int, default=7, help="the simulated market's seed (default 7)")
    parser.add_argument(
        "--database-url", help="use this local Postgres (migrated first) instead of an embedded one"
    )
    parser.add_argument(
        "--llm-latency-ms", type=int, default=25, help="the stub llm-proxy's answer time (default 25)"
    )
    parser.add_argument(
        "--llm-transport",
        choices=("http", "edge"),
        default=None,
        help="the stub llm-proxy over plain HTTP or as a Supabase Edge Function through the "
        "supabase functions client (default: $LLM_PROXY_TRANSPORT, else http)",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines instead of the live panel")
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


def _q(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


def _current_loop() -> asyncio.AbstractEventLoop | None:
    """The thread's event loop as `asyncio.get_event_loop()` would give it (creating it,
    as the policy does), so it can be put back: Mangum calls `get_event_loop()`."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            return None


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)

    return {
        "count": len(ordered),
        "p50": at(0.5),
        "p95": at(0.95),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }


@dataclass
class Wave:
    number: int
    start: int  # the first candle its workflows see
    user_id: uuid.UUID
    trader_id: uuid.UUID
    signals: dict[str, uuid.UUID]
    stop_loss: Decimal | None = None  # the enter scenario's plan, for a valid tighter stop
    position_id: uuid.UUID | None = None


@dataclass
class _Seen:
    analyses: set[Any] = field(default_factory=set)
    decisions: set[Any] = field(default_factory=set)
    errors: set[Any] = field(default_factory=set)
    notifications: set[Any] = field(default_factory=set)
    positions: dict[Any, str] = field(default_factory=dict)
    workflows: dict[Any, bool] = field(default_factory=dict)


class Demo:
    """Plays the waves candle by candle; the system is idle between two candles."""

    def __init__(
        self, services: Services, platform: Database, view: View, *, waves: int, speed: float, seed: int
    ) -> None:
        from functions.local.relay import WebhookRelay, lambda_deliver

        assert services.stub is not None
        self.services = services
        self.stub: StubLlmProxy = services.stub
        # Webhooks go to the API Lambda in-process (Mangum), no port needed.
        self.relay = WebhookRelay(
            services.database_url, lambda_deliver(WEBHOOK_SECRET), on_delivery=self.on_delivery
        )
        self.platform = platform  # the rest of the platform, writing rows with SQL
        self.view = view
        self.speed = speed
        self.seed = seed
        self.runner: TriggerRunner = services.runner()
        self.starts = [1 + i * WAVE_SPACING for i in range(waves)]
        self.total = self.starts[-1] + WAVE_LENGTH
        self.waves: list[Wave] = []
        self.labels: dict[Any, str] = {}
        self.candles = 0
        self.pending: list[Delivery] = []
        self._seen = _Seen()

    # -- the platform's side ------------------------------------------------------------

    def create_wave(self, number: int, start: int) -> None:
        user, trader = uuid.uuid4(), uuid.uuid4()
        self.platform.fetch_one(
            "insert into public.user_profiles (id, email, subscription_tier)"
            " values (%(u)s, %(e)s, 'elite') returning id",
            {"u": user, "e": f"demo-wave{number}@example.test"},
        )
        self.platform.fetch_one(
            "insert into public.traders (id, user_id, name, auto_analyze_signals, filter)"
            " values (%(t)s, %(u)s, %(n)s, true, %(f)s) returning id",
            {"t": trader, "u": user, "n": f"demo wave {number}", "f": json.dumps({"interval": INTERVAL})},
        )
        wave = Wave(number, start, user, trader, {kind: uuid.uuid4() for kind in SCENARIOS})
        self.waves.append(wave)
        self.view.event(
            "wave",
            f"wave {number}: elite trader {str(trader)[:8]} (auto-analysis on, "
            f"{INTERVAL}), 4 signals on {SYMBOL}",
        )
        for kind, signal in wave.signals.items():
            self.labels[signal] = f"w{number}.{kind}"
            self.stub.queue_setup(signal, {"decision": "wait", "reasoning": "stub: no confirmation yet"})
            self.platform.fetch_one(
                "insert into public.signals (id, trader_id, symbol) values (%(s)s, %(t)s, %(y)s)"
                " returning id",
                {"s": signal, "t": trader, "y": SYMBOL},
            )
        self.settle()  # INSERT webhooks → initial analyses → workflows
        self.stub.fail(wave.signals["fail"], MAX_CONSECUTIVE_ERRORS, 500)
        self.observe()

    def script(self, index: int, candle: CandleClosed) -> None:
        """Queue the stub's answers for this candle, knowing its price."""
        close = candle.close
        for wave in self.waves:
            offset = index - wave.start
            enter, expire = wave.signals["enter"], wave.signals["expire"]
            if 0 <= offset < MAX_REANALYSES:
                self.stub.queue_setup(expire, "wait")
            if offset == 0:
                self.stub.queue_setup(enter, "wait")
                self.stub.queue_setup(
                    wave.signals["bad"],
                    {"decision": "bad_setup", "reasoning": "stub: the level broke, the setup is invalid"},
                )
            elif offset == 1:
                wave.stop_loss = _q(close * Decimal("0.99"))
                plan = {
                    "side": "long",
                    "entry": str(close),
                    "stop_loss": str(wave.stop_loss),
                    "take_profit": str(_q(close * Decimal("1.02"))),
                }
                self.stub.queue_setup(
                    enter,
                    {"decision": "enter_trade", "trade_plan": plan, "reasoning": "stub: breakout confirmed"},
                )
            elif offset >= 2:
                self._script_position(wave, offset, close)

    def _script_position(self, wave: Wave, offset: int, close: Decimal) -> None:
        if wave.position_id is None:
            row = self.platform.fetch_one(
                "select id from public.positions where signal_id = %(s)s", {"s": wave.signals["enter"]}
            )
            if row is None:
                return
            wave.position_id = row["id"]
            self.labels[wave.position_id] = f"w{wave.number}.enter"
        if offset == 2:
            self.stub.queue_management(wave.position_id, "hold")
        elif offset == 3 and wave.stop_loss is not None:
            tighter = _q((wave.stop_loss + close) / 2)  # above the old stop, below the price
            self.stub.queue_management(
                wave.position_id, {"action": "adjust_sl", "params": {"stop_loss": str(tighter)}}
            )
        elif offset == 4:
            self.stub.queue_management(wave.position_id, "close")

    # -- the system's side ----------------------------------------------------------------

    def settle(self) -> None:
        """Run triggers and relay webhooks until nothing moves (bounded)."""
        for _ in range(100):
            before = self.runner.stats.total
            self.runner.run_until_idle()
            delivered = self.relay.drain()
            if self.runner.stats.total == before and delivered == 0:
                return
        raise RuntimeError("the local stack did not become idle")

    def play(self) -> None:
        """Drive the simulator and the publisher on an event loop that runs only while they
        need it: between candles no loop is running, so the in-process API Lambda (Mangum
        runs its own `run_until_complete`) and the blocking handlers run plainly here."""
        import asyncio

        from feed_service.publisher import EventBridgePublisher
        from feed_service.sources import SimulatedMarket
        from feed_service.streams import StreamId
        from functions.core.telemetry import MetricName

        previous = _current_loop()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        market = SimulatedMarket(
            [StreamId(SYMBOL, INTERVAL)], speed=self.speed, seed=self.seed, limit=self.total
        )
        candles = market.candles()
        publisher = EventBridgePublisher(self.services.events, self.services.aws.bus_name)
        jobs_key = MetricName.JOBS_ENQUEUED.value

        async def next_candle() -> CandleClosed | None:
            try:
                return await candles.__anext__()
            except StopAsyncIteration:
                return None

        async def publish(candle: CandleClosed) -> None:
            await publisher.publish(candle)
            await publisher.flush()

        try:
            self.create_wave(1, self.starts[0])
            while (candle := loop.run_until_complete(next_candle())) is not None:
                self.candles += 1
                self.script(self.candles, candle)
                jobs_before = self.services.metrics.counts.get(jobs_key, 0)
                loop.run_until_complete(publish(candle))
                self.settle()
                jobs = int(self.services.metrics.counts.get(jobs_key, 0) - jobs_before)
                change = (candle.close - candle.open) / candle.open * 100
                self.view.candle(
                    self.candles,
                    self.total,
                    f"{SYMBOL} {INTERVAL} closed {candle.close_time:%H:%M} at {candle.close} "
                    f"({change:+.2f}%) -> {jobs} job(s)",
                )
                self.observe()
                for number, start in enumerate(self.starts, start=1):
                    if start == self.candles + 1 and number > 1:
                        self.create_wave(number, start)
        finally:
            # After a Ctrl-C mid-candle the simulator's generator cannot close cleanly; that
            # is expected, not an error worth a traceback.
            loop.set_exception_handler(
                lambda _loop, context: logging.getLogger(__name__).debug("demo teardown: %s", context)
            )
            try:
                loop.run_until_complete(publisher.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception as exc:  # interrupted mid-candle: the generator cannot close cleanly
                logging.getLogger(__name__).debug("demo: feed teardown: %s", exc)
            finally:
                asyncio.set_event_loop(previous)  # Mangum, later in this process, needs one
                loop.close()

    # -- what the view shows ----------------------------------------------------------------

    def on_delivery(self, delivery: Delivery) -> None:
        self.pending.append(delivery)

    def _label(self, key: Any) -> str:
        return self.labels.get(key, str(key)[:8])

    def observe(self) -> None:
        """Turn what changed in the database into view events (the database is the truth)."""
        for delivery in self.pending:
            self.view.event("webhook", delivery.describe())
        self.pending.clear()
        traders = [w.trader_id for w in self.waves]
        seen = self._seen
        db = self.services.db
        for row in db.fetch_all(
            "select a.id, a.signal_id, a.analysis_type, a.decision, a.confidence, a.total_tokens"
            " from public.signal_analyses a join public.signals s on s.id = a.signal_id"
            " where s.trader_id = any(%(t)s) order by a.created_at, a.id",
            {"t": traders},
        ):
            if row["id"] not in seen.analyses:
                seen.analyses.add(row["id"])
                self.view.event(
                    "analysis",
                    f"{self._label(row['signal_id'])}: {row['analysis_type']} -> "
                    f"{row['decision']} (confidence {row['confidence']:.2f}, "
                    f"{row['total_tokens']} tokens)",
                )
        for row in db.fetch_all(
            "select d.id, p.signal_id, d.action, d.params, d.status, d.rejection_reason, d.source"
            " from public.management_decisions d join public.positions p on p.id = d.position_id"
            " where p.trader_id = any(%(t)s) order by d.created_at, d.id",
            {"t": traders},
        ):
            if row["id"] not in seen.decisions:
                seen.decisions.add(row["id"])
                params = "".join(f" {k}={v}" for k, v in (row["params"] or {}).items())
                reason = f" ({row['rejection_reason']})" if row["rejection_reason"] else ""
                source = " [paper]" if row["source"] == "paper" else ""
                self.view.event(
                    "position",
                    f"{self._label(row['signal_id'])}: {row['action']}{params}"
                    f"{source} -> {row['status']}{reason}",
                )
        for row in db.fetch_all(
            "select p.id, p.signal_id, p.status, p.entry_price, p.stop_loss, p.take_profit, p.exit_price,"
            " p.realized_pnl from public.positions p where p.trader_id = any(%(t)s)",
            {"t": traders},
        ):
            label = self._label(row["signal_id"])
            if row["id"] not in seen.positions:
                self.view.event(
                    "position",
                    f"{label}: position opened long at {row['entry_price']} "
                    f"(stop {row['stop_loss']}, target {row['take_profit']})",
                )
            if row["status"] == "closed" and seen.positions.get(row["id"]) != "closed":
                self.view.event(
                    "position",
                    f"{label}: position closed at {row['exit_price']} (pnl {_q(row['realized_pnl'])})",
                )
            seen.positions[row["id"]] = row["status"]
        for row in db.fetch_all(
            "select e.id, w.signal_id, e.error_kind, row_number() over (partition by e.workflow_id"
            " order by e.created_at, e.id) as streak from public.workflow_errors e"
            " join public.workflow_schedules w on w.id = e.workflow_id"
            " where w.trader_id = any(%(t)s) order by e.created_at, e.id",
            {"t": traders},
        ):
            if row["id"] not in seen.errors:
                seen.errors.add(row["id"])
                self.view.event(
                    "error",
                    f"{self._label(row['signal_id'])}: llm-proxy failed "
                    f"({row['error_kind']}), error {row['streak']} of "
                    f"{MAX_CONSECUTIVE_ERRORS}",
                )
        for row in db.fetch_all(
            "select w.id, w.workflow_type, coalesce(w.signal_id, p.signal_id) as signal_id, w.is_active,"
            " w.stopped_reason, w.reanalysis_count, w.consecutive_errors, w.last_candle_time"
            " from public.workflow_schedules w left join public.positions p on p.id = w.position_id"
            " where w.trader_id = any(%(t)s) order by w.created_at, w.id",
            {"t": traders},
        ):
            label = self._label(row["signal_id"]) + (
                " position" if row["workflow_type"] != "setup_monitoring" else ""
            )
            if row["id"] not in seen.workflows:
                self.view.event("workflow", f"{label}: {row['workflow_type'].replace('_', ' ')} registered")
            if not row["is_active"] and seen.workflows.get(row["id"], True):
                self.view.event("stopped", f"{label}: workflow stopped ({row['stopped_reason']})")
            seen.workflows[row["id"]] = row["is_active"]
        users = [w.user_id for w in self.waves]
        for row in db.fetch_all(
            "select id, user_id, title from public.notifications where user_id = any(%(u)s)"
            " order by created_at, id",
            {"u": users},
        ):
            if row["id"] not in seen.notifications:
                seen.notifications.add(row["id"])
                self.view.event("notify", f"user {str(row['user_id'])[:8]} notified: {row['title']}")
        self.view.workflows([
            {"label": self._label(r_signal) + (" position" if r_type != "setup_monitoring" else ""),
             "type": r_type, "reanalyses": r_count, "errors": r_errors,
             "last_candle": f"{r_last:%H:%M}" if r_last else "-"}
            for r_signal, r_type, r_count, r_errors, r_last in (
                (r["signal_id"], r["workflow_type"], r["reanalysis_count"], r["consecutive_errors"],
                 r["last_candle_time"])
                for r in db.fetch_all(
                    "select coalesce(w.signal_id, p.signal_id) as signal_id, w.workflow_type,"
                    " w.reanalysis_count, w.consecutive_errors, w.last_candle_time"
                    " from public.workflow_schedules w left join public.positions p on p.id = w.position_id"
                    " where w.trader_id = any(%(t)s) and w.is_active order by w.created_at", {"t": traders})
            )
        ])  # fmt: skip

    # -- the summary ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        db = self.services.db
        traders = {"t": [w.trader_id for w in self.waves]}
        workflows = db.fetch_all(
            "select w.id, w.workflow_type, coalesce(w.signal_id, p.signal_id) as signal_id, w.is_active,"
            " w.stopped_reason, w.consecutive_errors from public.workflow_schedules w"
            " left join public.positions p on p.id = w.position_id where w.trader_id = any(%(t)s)",
            traders,
        )
        by_outcome = Counter(dict.fromkeys((*OUTCOMES.values(), "active"), 0))
        for row in workflows:
            name = "active" if row["is_active"] else OUTCOMES.get(row["stopped_reason"], "other")
            by_outcome[name] += 1
        analyses = db.fetch_all(
            "select a.signal_id, a.analysis_type, a.decision, a.prompt_tokens, a.completion_tokens,"
            " a.total_tokens from public.signal_analyses a join public.signals s on s.id = a.signal_id"
            " where s.trader_id = any(%(t)s)",
            traders,
        )
        decisions = db.fetch_all(
            "select p.signal_id, d.action, d.status, d.source, d.prompt_tokens, d.completion_tokens,"
            " d.total_tokens from public.management_decisions d"
            " join public.positions p on p.id = d.position_id"
            " where p.trader_id = any(%(t)s) order by d.candle_time",
            traders,
        )
        errors = db.fetch_all(
            "select w.signal_id, e.error_kind from public.workflow_errors e"
            " join public.workflow_schedules w on w.id = e.workflow_id"
            " where w.trader_id = any(%(t)s)",
            traders,
        )
        notifications = db.fetch_all(
            "select n.kind, n.workflow_id, n.user_id from public.notifications n"
            " where n.user_id = any(%(u)s)",
            {"u": [w.user_id for w in self.waves]},
        )
        duplicate_analyses = db.fetch_all(
            "select a.signal_id, a.candle_time, count(*) from public.signal_analyses a"
            " join public.signals s on s.id = a.signal_id where s.trader_id = any(%(t)s)"
            " group by a.signal_id, a.candle_time having count(*) > 1",
            traders,
        )
        duplicate_decisions = db.fetch_all(
            "select d.position_id, d.candle_time, count(*) from public.management_decisions d"
            " join public.positions p on p.id = d.position_id where p.trader_id = any(%(t)s)"
            " group by d.position_id, d.candle_time having count(*) > 1",
            traders,
        )

        scenarios = [
            self._scenario(wave, kind, workflows, analyses, decisions, errors, notifications)
            for wave in self.waves
            for kind in SCENARIOS
        ]
        metrics = self.services.metrics
        timers = self.services.timers
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
            "candles": self.candles,
            "waves": len(self.waves),
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
                "delivered": self.relay.stats.delivered,
                "failed": self.relay.stats.failed,
                "by_action": dict(self.relay.stats.by_action),
            },
            "latency_ms": {
                "non_llm_per_job": _percentiles(timers["setup"].samples_ms + timers["position"].samples_ms),
                "fanout_per_candle": _percentiles(timers["fanout"].samples_ms),
                "llm_call": _percentiles(self.services.llm.samples_ms),
            },
            "duplicate_analyses": len(duplicate_analyses),
            "duplicate_decisions": len(duplicate_decisions),
            "duplicate_claims_skipped": int(metrics.counts.get("DuplicateClaimsSkipped", 0)),
            "scenarios": scenarios,
        }

    def _scenario(
        self,
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


def run(args: argparse.Namespace) -> int:
    from functions.local import relay as relays
    from functions.local.live_view import make_view, print_summary

    started = time.monotonic()
    waves = 1 if args.short else max(1, args.waves)
    speed = args.speed or (240.0 if args.short else 60.0)
    view = make_view(json_mode=args.json, plain=args.plain)
    if args.database_url and not relays.is_local_url(args.database_url):
        print(
            "cmon demo: --database-url must be a local database (the demo installs triggers)", file=sys.stderr
        )
        return 2
    transport = args.llm_transport or os.environ.get("LLM_PROXY_TRANSPORT") or "http"
    if transport not in ("http", "edge"):
        print(f"cmon demo: LLM_PROXY_TRANSPORT must be http or edge, not {transport!r}", file=sys.stderr)
        return 2
    try:
        summary = _play(args, waves, speed, view, transport)
    except KeyboardInterrupt:
        print(
            "cmon demo: interrupted; every server was stopped and the temporary database removed",
            file=sys.stderr,
        )
        return 130
    summary["wall_time_s"] = round(time.monotonic() - started, 2)
    summary["database"] = "embedded" if args.database_url is None else "given"
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 0 if summary["ok"] else 1


def _play(args: argparse.Namespace, waves: int, speed: float, view: View, transport: str) -> dict[str, Any]:
    """Start the stack, play, summarise, tear everything down (also on Ctrl-C)."""
    from functions.adapters.postgres import Database
    from functions.local import relay as relays
    from functions.local.serve import handler_logs, local_services

    level = logging.INFO if args.verbose else logging.CRITICAL
    with local_services(
        database_url=args.database_url, llm_proxy_url=None, webhook_secret=WEBHOOK_SECRET,
        admin_api_key=ADMIN_KEY, progress=view.progress, max_reanalyses=MAX_REANALYSES,
        max_consecutive_errors=MAX_CONSECUTIVE_ERRORS, llm_proxy_max_attempts=1, llm_proxy_timeout_s=5,
        llm_transport=transport,
    ) as services, handler_logs(level):  # fmt: skip
        assert services.stub is not None
        services.stub.configure(latency_ms=args.llm_latency_ms)
        relays.install(services.database_url)
        platform = Database(services.database_url, application_name="platform")
        demo = Demo(services, platform, view, waves=waves, speed=speed, seed=args.seed)
        try:
            demo.relay.listen()
            view.start(
                f"cmon demo: {waves} wave(s) on {SYMBOL} {INTERVAL}, a candle every "
                f"{60 / speed:.2g} s (Ctrl-C stops and cleans up)"
            )
            try:
                demo.play()
            finally:
                view.stop()
            summary = demo.summary()
            summary["llm_transport"] = services.llm_transport
        finally:
            demo.relay.close()
            platform.close()
            if not services.embedded:
                relays.uninstall(services.database_url)
    return summary
