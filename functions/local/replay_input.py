"""`cmon replay`'s input: candle files (Binance REST klines or `CandleClosed` JSON lines), the
Binance download, and the scenario (which signals and positions exist when, the stub's
scripted answers). Pure parsing and validation; the run is `replay.py`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.core import intervals
from functions.core.contracts import CandleClosed, Market
from functions.core.errors import CmonError, InvalidInput
from functions.core.models import Side

if TYPE_CHECKING:
    pass


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


def resolve_entity(
    spec: _Entity, streams: Sequence[StreamKey], kind: str, number: int
) -> tuple[str, StreamKey]:
    matching = [s for s in streams if (spec.symbol in (None, s[0])) and (spec.interval in (None, s[1]))]
    if len(matching) != 1:
        wanted = f"{spec.symbol or '*'} {spec.interval or '*'}"
        raise InvalidInput(
            f"scenario {kind} {spec.name or number}: {wanted} matches {len(matching)} streams of the "
            f"candles ({', '.join(f'{s} {i}' for s, i in streams)}); give symbol and interval"
        )
    stream = matching[0]
    return spec.name or f"{stream[0]}-{stream[1]}-{kind}{number}", stream
