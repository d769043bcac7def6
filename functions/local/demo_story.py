"""The demo's story: waves of one elite trader and four signals, scripted candle by candle.

The rows are written with SQL as the platform writes them (`platform`, a connection of
its own); the relay turns them into webhooks for the in-process API Lambda; the stub
llm-proxy's answers are queued just in time (a plan or a stop needs the candle's price).
What changed is read back through `OperatorReads.for_traders` (the database is the truth)
and shown by the view; `demo_summary.summarise` checks the outcome. The command itself
is `demo.py`.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from functions.adapters.operations import TraderReads
    from functions.adapters.postgres import Database
    from functions.core.contracts import CandleClosed
    from functions.local.live_view import View
    from functions.local.relay import Delivery
    from functions.local.runner import TriggerRunner
    from functions.local.stack import Services
    from functions.local.stub_llm import StubLlmProxy

SCENARIOS = ("enter", "expire", "bad", "fail")
MAX_REANALYSES = 3
MAX_CONSECUTIVE_ERRORS = 5
WAVE_LENGTH = 5  # candles a wave's workflows need
WAVE_SPACING = 3  # candles between two waves' starts
SYMBOL, INTERVAL = "BTCUSDT", "1m"
WEBHOOK_SECRET = "local-demo-webhook-secret"  # noqa: S105 - a throw-away local secret
CENT = Decimal("0.01")


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
            position_id = self.reads().position_of(wave.signals["enter"])
            if position_id is None:
                return
            wave.position_id = position_id
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
        seen = self._seen
        reads = self.reads()
        for row in reads.analyses():
            if row["id"] not in seen.analyses:
                seen.analyses.add(row["id"])
                self.view.event(
                    "analysis",
                    f"{self._label(row['signal_id'])}: {row['analysis_type']} -> "
                    f"{row['decision']} (confidence {row['confidence']:.2f}, "
                    f"{row['total_tokens']} tokens)",
                )
        for row in reads.decisions():
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
        for row in reads.positions():
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
        for row in reads.errors():
            if row["id"] not in seen.errors:
                seen.errors.add(row["id"])
                self.view.event(
                    "error",
                    f"{self._label(row['signal_id'])}: llm-proxy failed "
                    f"({row['error_kind']}), error {row['streak']} of "
                    f"{MAX_CONSECUTIVE_ERRORS}",
                )
        for row in reads.workflows():
            label = self._label(row["signal_id"]) + (
                " position" if row["workflow_type"] != "setup_monitoring" else ""
            )
            if row["id"] not in seen.workflows:
                self.view.event("workflow", f"{label}: {row['workflow_type'].replace('_', ' ')} registered")
            if not row["is_active"] and seen.workflows.get(row["id"], True):
                self.view.event("stopped", f"{label}: workflow stopped ({row['stopped_reason']})")
            seen.workflows[row["id"]] = row["is_active"]
        for row in reads.notifications():
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
                for r in reads.workflows() if r["is_active"]
            )
        ])  # fmt: skip

    def reads(self) -> TraderReads:
        """The operator's reads, scoped to this run's traders and users."""
        from functions.adapters.operations import OperatorReads

        return OperatorReads(self.services.db).for_traders(
            [w.trader_id for w in self.waves], [w.user_id for w in self.waves]
        )

    def summary(self) -> dict[str, Any]:
        from functions.local.demo_summary import summarise

        return summarise(self)
