"""`cmon replay`'s scenario as rows: the run's user and traders, each signal and position
written at its candle as the platform writes them (then registered through the real
repository), and the stub llm-proxy's script queued per candle. `replay.py` plays the
candles; this module is what exists when."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from functions.adapters.operations import OperatorReads
from functions.core.contracts import CandleClosed
from functions.core.errors import InvalidInput
from functions.local.replay_input import PositionSpec, ReplayError, SignalSpec, StreamKey, resolve_entity

if TYPE_CHECKING:
    from functions.local.replay import ReplayRun
    from functions.local.stack import Services


@dataclass
class Tracked:
    name: str
    kind: str  # signal | position
    stream: StreamKey
    at: int
    spec: SignalSpec | PositionSpec
    trader_id: uuid.UUID
    entity_id: uuid.UUID | None = None
    position_id: uuid.UUID | None = None  # a signal's position once enter_trade opened it


def track(run: ReplayRun, services: Services) -> None:
    """The run's user and one trader per interval (rows as the platform writes them), and
    the scenario's signals and positions to create at their candle."""
    traders: dict[str, uuid.UUID] = {}
    db = services.db
    db.fetch_one(
        "insert into public.user_profiles (id, email, subscription_tier) values (%(u)s, %(e)s, 'elite')"
        " returning id",
        {"u": run.user_id, "e": f"replay-{str(run.user_id)[:8]}@example.test"},
    )
    for _symbol, interval in run.streams:
        if interval not in traders:
            traders[interval] = uuid.uuid4()
            db.fetch_one(
                "insert into public.traders (id, user_id, name, auto_analyze_signals, filter)"
                " values (%(t)s, %(u)s, %(n)s, false, %(f)s) returning id",
                {
                    "t": traders[interval],
                    "u": run.user_id,
                    "n": f"replay {interval}",
                    "f": json.dumps({"interval": interval}),
                },
            )
    signals = run.scenario.signals
    if signals is None:
        signals = [SignalSpec(symbol=s, interval=i, at=0, name=f"{s}-{i}") for s, i in run.streams]
    for number, spec in enumerate(signals, start=1):
        name, stream = resolve_entity(spec, run.streams, "signal", number)
        run.tracked.append(Tracked(name, "signal", stream, spec.at, spec, traders[stream[1]]))
    for number, pspec in enumerate(run.scenario.positions, start=1):
        name, stream = resolve_entity(pspec, run.streams, "position", number)
        run.tracked.append(Tracked(name, "position", stream, pspec.at, pspec, traders[stream[1]]))
    names = [t.name for t in run.tracked]
    if len(set(names)) != len(names):
        raise InvalidInput("scenario names must be unique")


def create_entities(run: ReplayRun, services: Services, candle: CandleClosed, index: int) -> None:
    db = services.db
    stream = (candle.symbol, candle.interval)
    for item in run.tracked:
        if item.stream != stream or item.at != index or item.entity_id is not None:
            continue
        entity = uuid.uuid4()
        item.entity_id = entity
        if isinstance(item.spec, SignalSpec):
            db.fetch_one(
                "insert into public.signals (id, trader_id, symbol, created_at)"
                " values (%(s)s, %(t)s, %(y)s, %(at)s) returning id",
                {"s": entity, "t": item.trader_id, "y": candle.symbol, "at": candle.open_time},
            )
            analysis = db.fetch_one(
                "insert into public.signal_analyses (signal_id, decision, confidence, reasoning,"
                " analysis_type, created_at) values (%(s)s, 'wait', 0.5,"
                " 'replay: the signal exists, monitoring starts', 'initial', %(at)s) returning id",
                {"s": entity, "at": candle.open_time},
            )
            assert analysis is not None
            outcome = services.container.repo.register_setup_monitoring(
                analysis["id"], run.scenario.max_reanalyses
            )
        else:
            spec = item.spec
            entry = spec.entry
            if entry is None:
                previous = run.stream_candles(stream)[index - 1] if index > 0 else None
                entry = previous.close if previous is not None else candle.open
            db.fetch_one(
                "insert into public.positions (id, trader_id, symbol, side, entry_price, contracts,"
                " initial_contracts, stop_loss, take_profit, opened_at)"
                " values (%(p)s, %(t)s, %(y)s, %(side)s, %(e)s, %(c)s, %(c)s, %(sl)s, %(tp)s, %(at)s)"
                " returning id",
                {
                    "p": entity,
                    "t": item.trader_id,
                    "y": candle.symbol,
                    "side": spec.side.value,
                    "e": entry,
                    "c": spec.contracts,
                    "sl": spec.stop_loss,
                    "tp": spec.take_profit,
                    "at": candle.open_time,
                },
            )
            outcome = services.container.repo.register_position_management(entity)
        if outcome.action not in ("registered", "already_registered"):
            raise ReplayError(
                f"{item.kind} {item.name} was not registered ({outcome.action}: {outcome.reason}); "
                "is the rollout gate closed on this database?"
            )


def script(run: ReplayRun, services: Services, candle: CandleClosed, index: int) -> None:
    stub = services.stub
    if stub is None:
        return
    stream = (candle.symbol, candle.interval)
    for item in run.tracked:
        if item.stream != stream or item.entity_id is None:
            continue
        if isinstance(item.spec, SignalSpec):
            if index in item.spec.answers:
                stub.queue_setup(item.entity_id, item.spec.answers[index])
            if index in item.spec.position_answers:
                if item.position_id is None:
                    reads = OperatorReads(services.db).for_traders([item.trader_id], [run.user_id])
                    item.position_id = reads.position_of(item.entity_id)
                if item.position_id is not None:
                    stub.queue_management(item.position_id, item.spec.position_answers[index])
        elif index in item.spec.answers:
            stub.queue_management(item.entity_id, item.spec.answers[index])
