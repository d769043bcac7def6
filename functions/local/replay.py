"""`cmon replay`: the real pipeline over historical candles, to preview a change.

What runs is what `cmon demo` runs (`stack.local_services`): moto's EventBridge bus and
SQS queues, the trigger runner calling the real fan-out and worker handlers, the real
httpx llm-proxy client (over HTTP to the stub, or to `--llm-proxy-url`), and the SQL
functions that claim, record and apply — on a throw-away embedded Postgres unless
`--database-url` is given. The only thing that differs is the clock: each candle is
played at its own close time (+1 s, as a live close arrives), through the `Database`
clock (`cmon.now` per transaction) and the fan-out's clock port, so staleness, claims
and leases judge the replayed market as they judged the live one.

Input (detected): Binance REST klines (the array-of-12 JSON of `/api/v3/klines` and
`/fapi/v1/klines`; they carry no symbol or interval, so `--symbol` and `--interval` are
required), or JSON lines of `CandleClosed` details (then `--symbol`/`--interval` filter).
`--from-binance SYMBOL INTERVAL START END` downloads them through `BINANCE_REST_URL`
with the feed's own paged, rate-limit-aware klines client.

A scenario (JSON, optional) says which signals and positions exist when and scripts the
stub llm-proxy per candle index (0 = the stream's first candle):

    {"max_reanalyses": 10,
     "stub": {"latency_ms": 0, "prompt_tokens": 950, "completion_tokens": 150},
     "signals": [{"name": "breakout", "symbol": "BTCUSDT", "interval": "1m", "at": 0,
                  "answers": {"0": "wait", "2": {"decision": "enter_trade", "confidence": 0.7}},
                  "position_answers": {"4": {"action": "adjust_sl", "params": {"stop_loss": "101"}},
                                       "6": "close"}}],
     "positions": [{"name": "swing", "symbol": "BTCUSDT", "interval": "1m", "at": 1,
                    "side": "long", "entry": "100", "contracts": "1",
                    "stop_loss": "95", "take_profit": "110", "answers": {"3": "hold"}}]}

A signal exists from candle `at` on (its initial analysis is a `wait`, so monitoring
starts at that candle's close); `answers` are its setup decisions, `position_answers`
the management of the position its `enter_trade` opens. An answer is the stub's: a
decision/action string or an object (`confidence`, `reasoning`, `trade_plan`, `params`,
`usage`). Unscripted candles get the stub's deterministic heuristic. The default scenario
is one `wait` signal per stream at its first candle. The same candles and the same
scenario give the same analyses and decisions on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.core import intervals
from functions.core.backtest import Action, Bar, simulate
from functions.core.contracts import CandleClosed, Market
from functions.core.errors import CmonError, InvalidInput
from functions.core.models import Side
from functions.core.stats import percentiles

if TYPE_CHECKING:
    from functions.adapters.postgres import Database
    from functions.local.stack import Services

REPLAY_LAG = timedelta(seconds=1)  # a live close arrives 0.2-2 s after the candle's close
DEFAULT_USD_PER_1K = 0.0005  # the cost projection's $0.50 per million tokens
WEBHOOK_SECRET = "local-replay-webhook-secret"  # noqa: S105 - a throw-away local secret
ADMIN_KEY = "local-replay-admin-key"
SUMMARY_VERSION = 1

StreamKey = tuple[str, str]  # (symbol, interval)


# -- input: candle files --------------------------------------------------------------------


@dataclass
class CandleInput:
    candles: list[CandleClosed]
    format: str  # rest_klines | candle_jsonl | binance
    source: str
    duplicates: int = 0

    @property
    def digest(self) -> str:
        """Identifies the candles themselves (not the file), so --compare can tell two
        runs were over the same market."""
        h = hashlib.sha256()
        for c in self.candles:
            h.update(json.dumps(c.to_detail(), sort_keys=True).encode())
        return h.hexdigest()


def _rest_rows(text: str) -> Iterator[tuple[int, Any]]:
    """The elements of a top-level JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip(at: int) -> int:
        while at < n and text[at] in " \t\r\n":
            at += 1
        return at

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"line {e.lineno}: not JSON: {e.msg}", field=f"line {e.lineno}") from e
        yield line, value
        pos = skip(pos)
        if pos < n and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            if skip(pos + 1) != n:
                line = text.count("\n", 0, pos) + 1
                raise InvalidInput(
                    f"line {line}: unexpected text after the klines array", field=f"line {line}"
                )
            return
        line = text.count("\n", 0, pos) + 1
        raise InvalidInput(f"line {line}: expected ',' or ']' in the klines array", field=f"line {line}")


def parse_candles(
    text: str, *, symbol: str | None, interval: str | None, market: Market = Market.SPOT, source: str = "-"
) -> CandleInput:
    """Detect the format and parse every candle; raise `InvalidInput` naming the line."""
    from feed_service.binance import MalformedFrame, candle_from_rest_row
    from feed_service.streams import StreamId

    stripped = text.lstrip()
    if not stripped:
        raise InvalidInput(f"{source}: no candles in the file")
    candles: list[CandleClosed] = []
    if stripped.startswith("["):
        fmt = "rest_klines"
        if not symbol or not interval:
            raise InvalidInput("REST klines carry no symbol or interval: pass --symbol and --interval")
        intervals.validate(interval)
        stream = StreamId(symbol.upper(), interval)
        for index, (line, row) in enumerate(_rest_rows(text), start=1):
            try:
                candle = candle_from_rest_row(row, market, stream)
            except MalformedFrame as e:
                raise InvalidInput(f"line {line} (row {index}): {e}", field=f"line {line}") from e
            candles.append(candle)
    else:
        fmt = "candle_jsonl"
        for line_no, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                body = json.loads(raw)
                if isinstance(body, dict) and isinstance(body.get("detail"), dict):
                    body = body["detail"]  # an EventBridge envelope around the detail
                if not isinstance(body, dict):
                    raise ValueError("a line is a CandleClosed JSON object")
                candle = CandleClosed.model_validate(body)
            except (ValueError, ValidationError) as e:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise InvalidInput(
                    f"line {line_no}: not a CandleClosed: {first}", field=f"line {line_no}"
                ) from e
            if symbol and candle.symbol != symbol.upper():
                continue
            if interval and candle.interval != interval:
                continue
            candles.append(candle)
    return _ordered(CandleInput(candles, fmt, source))


def _ordered(data: CandleInput) -> CandleInput:
    seen: set[tuple[Any, ...]] = set()
    unique: list[CandleClosed] = []
    for c in sorted(data.candles, key=lambda c: (c.close_time, c.symbol, c.interval)):
        key = (*c.stream_key, c.open_time)
        if key in seen:
            data.duplicates += 1
            continue
        seen.add(key)
        unique.append(c)
    if not unique:
        raise InvalidInput(f"{data.source}: no candles (after --symbol/--interval filters)")
    data.candles = unique
    return data


def load_candles(path: Path, *, symbol: str | None, interval: str | None, market: Market) -> CandleInput:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read {path}: {e}") from e
    try:
        return parse_candles(text, symbol=symbol, interval=interval, market=market, source=str(path))
    except InvalidInput as e:
        raise InvalidInput(f"{path}: {e}", field=e.field) from e


def _parse_when(value: str) -> int:
    """Milliseconds since the epoch from an ISO date/time (UTC unless it says) or ms."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidInput(f"not a time: {value!r} (ISO 8601 or epoch milliseconds)") from e
    return intervals.to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def download_candles(symbol: str, interval: str, start: str, end: str) -> CandleInput:
    """Closed candles from Binance REST (`BINANCE_REST_URL`, `BINANCE_MARKET`), paged and
    rate-limit aware: the feed's own `KlinesClient`."""
    import asyncio

    import httpx

    from feed_service.binance import BackfillError, KlinesClient
    from feed_service.settings import FeedSettings
    from feed_service.streams import StreamId

    intervals.validate(interval)
    start_ms, end_ms = _parse_when(start), _parse_when(end)
    if end_ms < start_ms:
        raise InvalidInput("END is before START")
    settings = FeedSettings()

    async def fetch() -> list[CandleClosed]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            client = KlinesClient(
                settings.klines_url,
                settings.market,
                limit=settings.klines_limit,
                http=http,
                max_wait_s=settings.feed_rest_max_wait_s,
            )
            return await client.fetch(StreamId(symbol.upper(), interval), start_ms, end_ms)

    try:
        candles = asyncio.run(fetch())
    except BackfillError as e:
        raise ReplayError(f"download from {settings.klines_url} failed: {e}") from e
    except httpx.HTTPError as e:
        raise ReplayError(f"download from {settings.klines_url} failed: {type(e).__name__}: {e}") from e
    return _ordered(CandleInput(candles, "binance", settings.klines_url))


class ReplayError(CmonError):
    """The replay could not run as asked."""


# -- the scenario -----------------------------------------------------------------------------


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    symbol: str | None = None
    interval: str | None = None
    at: int = Field(default=0, ge=0)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()


class SignalSpec(_Entity):
    answers: dict[int, str | dict[str, Any]] = Field(default_factory=dict)
    position_answers: dict[int, str | dict[str, Any]] = Field(default_factory=dict)


class PositionSpec(_Entity):
    side: Side = Side.LONG
    entry: Decimal | None = None  # default: the close of the candle before `at` (else its open)
    contracts: Decimal = Field(default=Decimal(1), gt=0)
    stop_loss: Decimal | None = Field(default=None, gt=0)
    take_profit: Decimal | None = Field(default=None, gt=0)
    answers: dict[int, str | dict[str, Any]] = Field(default_factory=dict)


class StubSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=950, ge=0)
    completion_tokens: int = Field(default=150, ge=0)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_reanalyses: int = Field(default=10, ge=1)
    stub: StubSpec = Field(default_factory=StubSpec)
    signals: list[SignalSpec] | None = None  # None: one wait signal per stream at its first candle
    positions: list[PositionSpec] = Field(default_factory=list)


def load_scenario(path: Path | None) -> Scenario:
    if path is None:
        return Scenario()
    try:
        return Scenario.model_validate_json(path.read_bytes())
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise InvalidInput(f"{path}: scenario field {where}: {first['msg']}", field=where) from e


def _resolve(spec: _Entity, streams: Sequence[StreamKey], kind: str, number: int) -> tuple[str, StreamKey]:
    matching = [s for s in streams if (spec.symbol in (None, s[0])) and (spec.interval in (None, s[1]))]
    if len(matching) != 1:
        wanted = f"{spec.symbol or '*'} {spec.interval or '*'}"
        raise InvalidInput(
            f"scenario {kind} {spec.name or number}: {wanted} matches {len(matching)} streams of the "
            f"candles ({', '.join(f'{s} {i}' for s, i in streams)}); give symbol and interval"
        )
    stream = matching[0]
    return spec.name or f"{stream[0]}-{stream[1]}-{kind}{number}", stream


# -- running ----------------------------------------------------------------------------------


class ReplayClock:
    """The replay's "now": set per candle, read by every transaction and the fan-out."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class _Tracked:
    name: str
    kind: str  # signal | position
    stream: StreamKey
    at: int
    spec: SignalSpec | PositionSpec
    trader_id: uuid.UUID
    entity_id: uuid.UUID | None = None
    position_id: uuid.UUID | None = None  # a signal's position once enter_trade opened it


@dataclass
class ReplayRun:
    data: CandleInput
    scenario: Scenario
    llm_proxy: str
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    tracked: list[_Tracked] = field(default_factory=list)
    index_of: dict[tuple[StreamKey, datetime], int] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def streams(self) -> list[StreamKey]:
        return sorted({(c.symbol, c.interval) for c in self.data.candles})

    def stream_candles(self, stream: StreamKey) -> list[CandleClosed]:
        return [c for c in self.data.candles if (c.symbol, c.interval) == stream]


def _create_entities(run: ReplayRun, services: Services, candle: CandleClosed, index: int) -> None:
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


def _script(run: ReplayRun, services: Services, candle: CandleClosed, index: int) -> None:
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
                    row = services.db.fetch_one(
                        "select id from public.positions where signal_id = %(s)s", {"s": item.entity_id}
                    )
                    item.position_id = None if row is None else row["id"]
                if item.position_id is not None:
                    stub.queue_management(item.position_id, item.spec.position_answers[index])
        elif index in item.spec.answers:
            stub.queue_management(item.entity_id, item.spec.answers[index])


def _play(run: ReplayRun, services: Services, clock: ReplayClock) -> None:
    from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE

    runner = services.runner()
    traders: dict[str, uuid.UUID] = {}
    db = services.db
    first = run.data.candles[0]
    clock.now = first.open_time
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
        name, stream = _resolve(spec, run.streams, "signal", number)
        run.tracked.append(_Tracked(name, "signal", stream, spec.at, spec, traders[stream[1]]))
    for number, pspec in enumerate(run.scenario.positions, start=1):
        name, stream = _resolve(pspec, run.streams, "position", number)
        run.tracked.append(_Tracked(name, "position", stream, pspec.at, pspec, traders[stream[1]]))
    names = [t.name for t in run.tracked]
    if len(set(names)) != len(names):
        raise InvalidInput("scenario names must be unique")

    counters: Counter[StreamKey] = Counter()
    for candle in run.data.candles:
        stream = (candle.symbol, candle.interval)
        index = counters[stream]
        counters[stream] += 1
        run.index_of[(stream, candle.close_time)] = index
        clock.now = candle.open_time + timedelta(milliseconds=1)
        _create_entities(run, services, candle, index)
        _script(run, services, candle, index)
        clock.now = candle.close_time + REPLAY_LAG
        response = services.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(candle.to_detail()),
                    "EventBusName": services.aws.bus_name,
                }
            ]
        )
        if response["FailedEntryCount"]:
            raise ReplayError(f"the local bus refused candle {candle.close_time.isoformat()}")
        runner.run_until_idle()


# -- the summary ------------------------------------------------------------------------------


def _num(value: Any) -> str | None:
    return None if value is None else format(Decimal(str(value)).normalize(), "f")


def summarise(run: ReplayRun, db: Database, usd_per_1k: float) -> dict[str, Any]:
    """Everything the replay did, read back from the database (the truth), plus the
    simulated result of every position against the candles."""
    signal_names = {t.entity_id: t.name for t in run.tracked if t.kind == "signal"}
    position_names = {t.entity_id: t.name for t in run.tracked if t.kind == "position"}
    trader_ids = list({t.trader_id for t in run.tracked})
    analyses = db.fetch_all(
        "select a.signal_id, s.symbol, a.analysis_type, a.decision, a.confidence, a.candle_time,"
        " a.prompt_tokens, a.completion_tokens, a.total_tokens, a.latency_ms, a.trade_plan"
        " from public.signal_analyses a join public.signals s on s.id = a.signal_id"
        " where s.trader_id = any(%(t)s) order by a.candle_time nulls first, a.signal_id",
        {"t": trader_ids},
    )
    positions = db.fetch_all(
        "select p.id, p.signal_id, p.symbol, p.side, p.entry_price, p.contracts, p.initial_contracts,"
        " p.stop_loss, p.take_profit, p.status, p.exit_price, p.realized_pnl, p.close_reason"
        " from public.positions p where p.trader_id = any(%(t)s) order by p.opened_at, p.id",
        {"t": trader_ids},
    )
    for p in positions:
        if p["id"] not in position_names:
            position_names[p["id"]] = signal_names.get(p["signal_id"], str(p["id"])[:8])
    decisions = db.fetch_all(
        "select d.position_id, d.candle_time, d.action, d.params, d.source, d.status, d.rejection_reason,"
        " d.confidence, d.price, d.before_state, d.after_state, d.prompt_tokens, d.completion_tokens,"
        " d.total_tokens, d.latency_ms from public.management_decisions d"
        " join public.positions p on p.id = d.position_id where p.trader_id = any(%(t)s)"
        " order by d.candle_time, d.position_id",
        {"t": trader_ids},
    )
    workflows = db.fetch_all(
        "select w.workflow_type, w.is_active, w.stopped_reason from public.workflow_schedules w"
        " where w.trader_id = any(%(t)s)",
        {"t": trader_ids},
    )
    errors = db.fetch_all(
        "select e.error_kind from public.workflow_errors e join public.workflow_schedules w"
        " on w.id = e.workflow_id where w.trader_id = any(%(t)s)",
        {"t": trader_ids},
    )

    def stream_of(symbol: str, when: datetime | None) -> StreamKey | None:
        for s in run.streams:
            if s[0] == symbol and (when is None or (s, when) in run.index_of):
                return s
        return None

    timeline: list[dict[str, Any]] = []
    for a in analyses:
        if a["analysis_type"] != "monitoring":
            continue
        stream = stream_of(a["symbol"], a["candle_time"])
        timeline.append(
            {
                "kind": "analysis",
                "entity": signal_names.get(a["signal_id"], str(a["signal_id"])[:8]),
                "stream": f"{stream[0]} {stream[1]}" if stream else a["symbol"],
                "index": run.index_of.get((stream, a["candle_time"])) if stream else None,
                "candle_time": a["candle_time"].isoformat(),
                "decision": a["decision"],
                "confidence": float(a["confidence"]) if a["confidence"] is not None else None,
                "tokens": int(a["total_tokens"]),
            }
        )
    symbols_of = {p["id"]: p["symbol"] for p in positions}
    for d in decisions:
        stream = stream_of(symbols_of[d["position_id"]], d["candle_time"])
        timeline.append(
            {
                "kind": "decision",
                "entity": position_names.get(d["position_id"], str(d["position_id"])[:8]),
                "stream": f"{stream[0]} {stream[1]}" if stream else symbols_of[d["position_id"]],
                "index": run.index_of.get((stream, d["candle_time"])) if stream else None,
                "candle_time": d["candle_time"].isoformat(),
                "decision": d["action"] + (" (paper)" if d["source"] == "paper" else ""),
                "status": d["status"],
                "reason": d["rejection_reason"],
                "params": d["params"] or {},
                "confidence": float(d["confidence"]) if d["confidence"] is not None else None,
                "tokens": int(d["total_tokens"]),
            }
        )
    timeline.sort(key=lambda e: (e["candle_time"], e["kind"], e["entity"]))

    by_action: dict[str, dict[str, int]] = defaultdict(lambda: {"applied": 0, "rejected": 0})
    for d in decisions:
        name = d["action"] + (" (paper)" if d["source"] == "paper" else "")
        by_action[name][d["status"]] += 1
    tokens = {
        part: sum(int(r[f"{part}_tokens"]) for r in (*analyses, *decisions))
        for part in ("prompt", "completion", "total")
    }
    latency = [float(r["latency_ms"]) for r in (*analyses, *decisions) if r["latency_ms"] is not None]

    sims = [_simulate_position(run, p, analyses, decisions, position_names) for p in positions]
    total_pnl = sum((Decimal(s["simulated"]["total_pnl"]) for s in sims), Decimal(0))
    outcome_names = Counter(
        ("active" if w["is_active"] else str(w["stopped_reason"])) + f" ({w['workflow_type']})"
        for w in workflows
    )
    streams = []
    for s in run.streams:
        mine = run.stream_candles(s)
        streams.append(
            {
                "symbol": s[0],
                "interval": s[1],
                "market": mine[0].market.value,
                "candles": len(mine),
                "first_close": mine[0].close_time.isoformat(),
                "last_close": mine[-1].close_time.isoformat(),
            }
        )
    return {
        "version": SUMMARY_VERSION,
        "input": {
            "source": run.data.source,
            "format": run.data.format,
            "candles_sha256": run.data.digest,
            "duplicates_dropped": run.data.duplicates,
        },
        "llm_proxy": run.llm_proxy,
        "candles": {"total": len(run.data.candles), "streams": streams},
        "entities": [
            {"name": t.name, "kind": t.kind, "stream": f"{t.stream[0]} {t.stream[1]}", "at": t.at}
            for t in run.tracked
        ],
        "analyses": {
            "total": len(analyses),
            "initial": sum(1 for a in analyses if a["analysis_type"] == "initial"),
            "monitoring": sum(1 for a in analyses if a["analysis_type"] == "monitoring"),
            "by_decision": dict(
                Counter(a["decision"] for a in analyses if a["analysis_type"] == "monitoring")
            ),
        },
        "management": {
            "total": len(decisions),
            "applied": sum(1 for d in decisions if d["status"] == "applied"),
            "rejected": sum(1 for d in decisions if d["status"] == "rejected"),
            "by_action": {k: by_action[k] for k in sorted(by_action)},
            "rejected_reasons": dict(
                Counter(d["rejection_reason"] for d in decisions if d["status"] == "rejected")
            ),
        },
        "tokens": {
            **tokens,
            "usd_per_1k": usd_per_1k,
            "estimated_usd": round(tokens["total"] / 1000 * usd_per_1k, 6),
        },
        "latency_ms": percentiles(latency),
        "errors": {"total": len(errors), "by_kind": dict(Counter(e["error_kind"] for e in errors))},
        "workflows": dict(sorted(outcome_names.items())),
        "positions": sims,
        "pnl": {"total": _num(total_pnl)},
        "timeline": timeline,
        "wall_time_s": round(run.wall_s, 2),
    }


def _simulate_position(
    run: ReplayRun,
    p: dict[str, Any],
    analyses: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    names: Mapping[Any, str],
) -> dict[str, Any]:
    mine = [d for d in decisions if d["position_id"] == p["id"]]
    entered = next(
        (a for a in analyses if a["signal_id"] == p["signal_id"] and a["decision"] == "enter_trade"), None
    )
    tracked = next((t for t in run.tracked if t.entity_id == p["id"]), None)
    stream = next(s for s in run.streams if s[0] == p["symbol"])
    if tracked is not None:
        stream = tracked.stream
    candles = run.stream_candles(stream)
    if entered is not None and entered["candle_time"] is not None:
        entry_time = entered["candle_time"]
    elif tracked is not None:
        entry_time = candles[tracked.at].open_time
    else:
        entry_time = candles[0].open_time
    first = mine[0]["before_state"] if mine and mine[0]["before_state"] else None
    start_sl = first.get("stop_loss") if first else p["stop_loss"]
    start_tp = first.get("take_profit") if first else p["take_profit"]
    contracts = p["initial_contracts"] or p["contracts"]
    if first and first.get("contracts") is not None:
        contracts = Decimal(str(first["contracts"]))
    actions = {
        d["candle_time"]: Action(d["action"], dict(d["params"] or {}))
        for d in mine
        if d["status"] == "applied" and d["source"] == "llm"
    }
    result = simulate(
        side=Side(p["side"]),
        entry_time=entry_time,
        entry_price=Decimal(str(p["entry_price"])),
        contracts=Decimal(str(contracts)),
        stop_loss=None if start_sl is None else Decimal(str(start_sl)),
        take_profit=None if start_tp is None else Decimal(str(start_tp)),
        bars=[Bar(c.close_time, c.high, c.low, c.close) for c in candles],
        actions=actions,
    )
    return {
        "name": names.get(p["id"], str(p["id"])[:8]),
        "stream": f"{stream[0]} {stream[1]}",
        "side": p["side"],
        "entry_time": entry_time.isoformat(),
        "entry_price": _num(p["entry_price"]),
        "stop_loss": _num(start_sl),
        "take_profit": _num(start_tp),
        "recorded": {
            "status": p["status"],
            "exit_price": _num(p["exit_price"]),
            "realized_pnl": _num(p["realized_pnl"]),
            "close_reason": p["close_reason"],
        },
        "simulated": result.to_json(),
    }


# -- comparing two runs -----------------------------------------------------------------------


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Decision agreement, token and PnL deltas of two runs over the same candles."""
    for name, run in (("A", a), ("B", b)):
        if not isinstance(run, Mapping) or run.get("version") != SUMMARY_VERSION or "timeline" not in run:
            raise InvalidInput(f"{name} is not a `cmon replay --json` output")
    if a["input"]["candles_sha256"] != b["input"]["candles_sha256"]:
        raise InvalidInput("the two runs were not over the same candles (candles_sha256 differs)")

    def keyed(run: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(e["kind"], e["entity"], e["candle_time"]): e for e in run["timeline"]}

    ka, kb = keyed(a), keyed(b)
    both = sorted(set(ka) & set(kb))
    agree = [k for k in both if ka[k]["decision"] == kb[k]["decision"]]
    differences = [
        {"kind": k[0], "entity": k[1], "candle_time": k[2], "a": ka[k]["decision"], "b": kb[k]["decision"]}
        for k in both
        if ka[k]["decision"] != kb[k]["decision"]
    ]
    pnl_a, pnl_b = Decimal(a["pnl"]["total"] or 0), Decimal(b["pnl"]["total"] or 0)
    return {
        "candles": a["candles"]["total"],
        "decisions": {
            "compared": len(both),
            "agree": len(agree),
            "agreement": round(len(agree) / len(both), 4) if both else None,
            "only_in_a": len(set(ka) - set(kb)),
            "only_in_b": len(set(kb) - set(ka)),
            "differences": differences,
        },
        "tokens": {
            "a": a["tokens"]["total"],
            "b": b["tokens"]["total"],
            "delta": b["tokens"]["total"] - a["tokens"]["total"],
        },
        "cost_usd": {
            "a": a["tokens"]["estimated_usd"],
            "b": b["tokens"]["estimated_usd"],
            "delta": round(b["tokens"]["estimated_usd"] - a["tokens"]["estimated_usd"], 6),
        },
        "pnl": {"a": _num(pnl_a), "b": _num(pnl_b), "delta": _num(pnl_b - pnl_a)},
    }


# -- output -----------------------------------------------------------------------------------


def _counts(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "none"


def human_summary(s: Mapping[str, Any]) -> str:
    an, mg, tk, lat = s["analyses"], s["management"], s["tokens"], s["latency_ms"]
    streams = "; ".join(f"{x['symbol']} {x['interval']} {x['candles']}" for x in s["candles"]["streams"])
    actions = ", ".join(
        f"{k} {v['applied']}" + (f" (+{v['rejected']} rejected)" if v["rejected"] else "")
        for k, v in mg["by_action"].items()
    )
    rows = [
        ("candles", f"{s['candles']['total']} ({streams}; {s['input']['format']})"),
        ("llm-proxy", s["llm_proxy"]),
        (
            "analyses",
            f"{an['monitoring']} monitoring ({_counts(an['by_decision'])}) + {an['initial']} initial",
        ),
        (
            "management actions",
            f"applied {mg['applied']} ({actions or 'none'}), rejected {mg['rejected']}"
            + (f" ({_counts(mg['rejected_reasons'])})" if mg["rejected"] else ""),
        ),
        (
            "tokens",
            f"{tk['total']:,} (prompt {tk['prompt']:,}, completion {tk['completion']:,})"
            f" ≈ ${tk['estimated_usd']:.4f} at ${tk['usd_per_1k']}/1k",
        ),
        (
            "analysis latency",
            f"p50 {lat['p50']:.0f} ms · p95 {lat['p95']:.0f} ms · max {lat['max']:.0f} ms"
            f" ({lat['count']} calls)",
        ),
        ("errors", f"{s['errors']['total']} ({_counts(s['errors']['by_kind'])})"),
        ("workflows", _counts(s["workflows"])),
    ]
    for p in s["positions"]:
        sim = p["simulated"]
        steps = (
            " → ".join(f"{e['kind']}@{e['price']}" for e in sim["events"] if e["kind"] != "entry")
            or "still open"
        )
        exit_text = sim["exit_reason"] or f"open, unrealized {sim['unrealized_pnl']}"
        rows.append(
            (
                f"position {p['name']}",
                f"{p['side']} {p['entry_price']} (SL {p['stop_loss']}, TP {p['take_profit']}): {steps};"
                f" {exit_text}; PnL {sim['total_pnl']} (recorded {p['recorded']['realized_pnl']})",
            )
        )
    rows.append(("simulated PnL", str(s["pnl"]["total"])))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def human_compare(c: Mapping[str, Any]) -> str:
    d = c["decisions"]
    agreement = "n/a" if d["agreement"] is None else f"{d['agreement'] * 100:.1f}%"
    lines = [
        f"candles           {c['candles']}",
        f"decisions         {d['agree']}/{d['compared']} agree ({agreement}); only in A {d['only_in_a']},"
        f" only in B {d['only_in_b']}",
        f"tokens            A {c['tokens']['a']:,} · B {c['tokens']['b']:,}"
        f" · delta {c['tokens']['delta']:+,}",
        f"cost (USD)        A {c['cost_usd']['a']} · B {c['cost_usd']['b']}"
        f" · delta {c['cost_usd']['delta']:+}",
        f"PnL               A {c['pnl']['a']} · B {c['pnl']['b']} · delta {c['pnl']['delta']}",
    ]
    lines += [f"  {x['candle_time']} {x['entity']}: {x['a']} → {x['b']}" for x in d["differences"][:20]]
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--candles", type=Path, metavar="FILE", help="Binance REST klines JSON or CandleClosed JSON lines"
    )
    source.add_argument(
        "--from-binance",
        nargs=4,
        metavar=("SYMBOL", "INTERVAL", "START", "END"),
        help="download klines through $BINANCE_REST_URL (START/END: ISO time or epoch ms)",
    )
    source.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="compare two --json outputs over the same candles",
    )
    parser.add_argument("--symbol", help="the symbol of REST klines (required for them); a filter otherwise")
    parser.add_argument(
        "--interval", help="the interval of REST klines (required for them); a filter otherwise"
    )
    parser.add_argument("--market", choices=["spot", "usdm"], default="spot", help="market of REST klines")
    parser.add_argument(
        "--scenario", type=Path, metavar="FILE", help="signals, positions and the stub's script"
    )
    parser.add_argument(
        "--llm-proxy-url", help="a real llm-proxy (key from $LLM_PROXY_API_KEY); default: the stub"
    )
    parser.add_argument(
        "--database-url", help="replay into this Postgres (default: a throw-away embedded one)"
    )
    parser.add_argument(
        "--usd-per-1k-tokens",
        type=float,
        default=DEFAULT_USD_PER_1K,
        help=f"price for the cost estimate (default {DEFAULT_USD_PER_1K})",
    )
    parser.add_argument(
        "--save-candles", type=Path, metavar="FILE", help="also write the candles as JSON lines"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--report", type=Path, metavar="FILE.html", help="write the HTML report of this run")
    parser.add_argument("--verbose", action="store_true", help="also print the handlers' JSON logs (stderr)")


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    from functions.local.stack import handler_logs

    with handler_logs(logging.INFO if verbose else logging.CRITICAL):
        yield


def replay(
    data: CandleInput,
    scenario: Scenario,
    *,
    database_url: str | None = None,
    llm_proxy_url: str | None = None,
    usd_per_1k: float = DEFAULT_USD_PER_1K,
    verbose: bool = False,
    report: Path | None = None,
) -> dict[str, Any]:
    """Play the candles through the stack and return the summary (and write the report)."""
    from functions.local.stack import local_services

    started = time.monotonic()
    clock = ReplayClock(data.candles[0].open_time)
    with (
        local_services(
            database_url=database_url,
            llm_proxy_url=llm_proxy_url,
            webhook_secret=WEBHOOK_SECRET,
            admin_api_key=ADMIN_KEY,
            clock=clock,
            max_reanalyses=scenario.max_reanalyses,
            llm_proxy_max_attempts=1,
            llm_proxy_timeout_s=30,
        ) as services,
        _quiet(verbose),
    ):
        if services.stub is not None:
            services.stub.configure(**scenario.stub.model_dump())
        run = ReplayRun(data, scenario, "stub" if services.stub is not None else str(llm_proxy_url))
        _play(run, services, clock)
        run.wall_s = time.monotonic() - started
        summary = summarise(run, services.db, usd_per_1k)
        if report is not None:
            from functions.local.report import gather, write_report

            trader_ids = sorted({t.trader_id for t in run.tracked}, key=str)
            model = gather(
                services.db, trader_ids=trader_ids, candles=data.candles, title=f"cmon replay — {data.source}"
            )
            write_report(model, report)
    return summary


def run(args: argparse.Namespace) -> int:
    try:
        if args.compare:
            a, b = (_read_json(p) for p in args.compare)
            result = compare(a, b)
            print(json.dumps(result, indent=2) if args.json else human_compare(result))
            return 0
        for target in (args.report, args.save_candles):
            if target is not None and not target.resolve().parent.is_dir():
                raise InvalidInput(f"{target}: its folder does not exist")
        if args.candles is not None:
            data = load_candles(
                args.candles, symbol=args.symbol, interval=args.interval, market=Market(args.market)
            )
        else:
            symbol, interval, start, end = args.from_binance
            data = download_candles(symbol, interval, start, end)
        scenario = load_scenario(args.scenario)
        if args.save_candles is not None:
            args.save_candles.write_text("".join(json.dumps(c.to_detail()) + "\n" for c in data.candles))
        summary = replay(
            data,
            scenario,
            database_url=args.database_url,
            llm_proxy_url=args.llm_proxy_url,
            usd_per_1k=args.usd_per_1k_tokens,
            verbose=args.verbose,
            report=args.report,
        )
    except CmonError as e:
        print(f"cmon replay: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str) if args.json else human_summary(summary))
    return 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInput(f"cannot read {path} as JSON: {e}") from e
