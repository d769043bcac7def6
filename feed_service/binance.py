"""Binance, as a `Venue`: its URLs and limits per market, stream names, subscribe frames,
the kline frame parser and the REST klines backfill client.

Everything Binance-specific about the wire lives here; the connection, supervisor,
router and sources speak only `feed_service.venue`'s words (import-linter holds them to
it), and `feed_service.app` hands them a `BinanceVenue`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import httpx
import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from feed_service.streams import StreamId
from feed_service.timing import Sleeper, WallClock, wall_ms
from feed_service.venue import (
    OPEN_FRAME,
    OTHER_FRAME,
    SHUTDOWN_FRAME,
    BackfillError,
    Frame,
    FrameKind,
    MalformedFrame,
    Subscription,
)
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource, Market
from functions.core.retry import BackoffPolicy, parse_retry_after

try:  # built by the install when a C compiler is there (setup.py); optional
    from feed_service._kline import ClosedKlineDecoder
except ImportError:  # pragma: no cover - exercised where no compiler is
    ClosedKlineDecoder = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

__all__ = [
    "MARKETS",
    "OPEN_FRAME",
    "BackfillError",
    "BinanceMarket",
    "BinanceVenue",
    "FrameKind",
    "KlineParser",
    "KlinesClient",
    "MalformedFrame",
    "candle_from_rest_row",
]


@dataclass(frozen=True)
class BinanceMarket:
    """Binance's published endpoints and limits of one market. The per-connection stream
    cap for USD-M is not documented as a hard number; 200 is what the exchange recommends
    planning for. Messages a second count pings, pongs and control frames together."""

    ws_url: str
    rest_url: str
    klines_path: str
    klines_limit: int
    max_streams_per_connection: int
    max_messages_per_second: float


MARKETS = {
    Market.SPOT: BinanceMarket(
        "wss://stream.binance.com:9443", "https://api.binance.com", "/api/v3/klines", 1000, 1024, 5
    ),
    Market.USDM: BinanceMarket(
        "wss://fstream.binance.com", "https://fapi.binance.com", "/fapi/v1/klines", 1500, 200, 10
    ),
}

# Streams named in the connect URL cost no control message; beyond this the URL gets
# long, so the rest is subscribed with messages.
URL_STREAMS_MAX = 100
PARAMS_PER_MESSAGE = 100
_METHODS = {Subscription.SUBSCRIBE: "SUBSCRIBE", Subscription.UNSUBSCRIBE: "UNSUBSCRIBE"}

# Binance serialises compactly, so an open kline always carries this byte sequence and
# the only boolean named `x` in a kline message is the "closed" flag. Seeing it lets the
# parser skip JSON decoding for the ~95 % of frames that are updates of an open candle;
# a differently spaced frame simply takes the full path.
_OPEN_MARK = '"x":false'
_KLINE_MARK = '"e":"kline"'

_PARSE_ERRORS = (KeyError, TypeError, ValueError, ArithmeticError, ValidationError)


def _decimal(value: object) -> Decimal:
    # Binance sends prices as strings; a float here would already have lost precision.
    if not isinstance(value, str):
        raise TypeError(f"price must be a decimal string, got {type(value).__name__}")
    return Decimal(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What `CandleClosed` validates, for the hand-checked fast path.
_SYMBOL = re.compile(r"[A-Z0-9]{2,32}")
_INTERVALS = frozenset(intervals.SUPPORTED)
# Per interval of fixed length, Binance's `T - t` (the last millisecond of the candle)
# and the same as a timedelta: a closing frame that has it gets its close time by one
# addition instead of a second conversion.
_SPANS = {
    i: (intervals.interval_ms(i) - 1, timedelta(milliseconds=intervals.interval_ms(i) - 1))
    for i in intervals.SUPPORTED
    if i != "1M"
}
# Below this many epoch milliseconds (year 2096) `datetime.fromtimestamp(ms / 1000)` is
# exact to the millisecond (the double's error stays under half a microsecond); other
# values take the exact integer path.
_FLOAT_EXACT_MS = 4_000_000_000_000
_SYMBOLS_REMEMBERED = 8192

# What pydantic marks set on a validated candle: the fields its constructor is given,
# every one but the two defaults (`_kline_validated` is the reference).
_FIELDS = frozenset(CandleClosed.model_fields) - {"version", "exchange"}
_new = object.__new__
_set = object.__setattr__
_fromtimestamp = datetime.fromtimestamp
_D = Decimal
_loads = orjson.loads
_JSONError = orjson.JSONDecodeError
_CLOSED = FrameKind.CANDLE_CLOSED
_tuple_new = tuple.__new__
_STREAM = CandleSource.STREAM


# msgspec refuses in C what would take the slow road anyway: a negative count, a time
# outside the exact float range. A refusal only means "ask the reference path".
_Count = Annotated[int, msgspec.Meta(ge=0)]
_FloatExactMs = Annotated[int, msgspec.Meta(ge=0, lt=_FLOAT_EXACT_MS)]


class _TypedKline(msgspec.Struct, gc=False):
    """The fields of `k` the contract reads, typed as `json` + the reference checks
    require them (a JSON string for a price, an integer that is not a boolean for a
    time or a count). Prices stay `str`: msgspec would also take a JSON number for a
    `Decimal`, which the contract refuses (and its `Decimal` decoding is slower)."""

    t: _FloatExactMs
    T: _FloatExactMs
    s: str
    i: str
    o: str
    c: str
    h: str
    l: str  # noqa: E741 -- Binance's name for the low
    v: str
    n: _Count
    x: bool


class _TypedData(msgspec.Struct, gc=False):
    e: str
    k: _TypedKline


class _TypedFrame(msgspec.Struct, gc=False):
    """A raw or combined kline frame. Every key `parse_message` branches on is here, so
    a frame the typed path cannot decide (a response, a raw frame with `stream`, a
    combined one without `data`) is seen and handed to the reference path."""

    stream: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    data: _TypedData | msgspec.UnsetType = msgspec.UNSET
    e: str | msgspec.UnsetType = msgspec.UNSET
    k: _TypedKline | msgspec.UnsetType = msgspec.UNSET
    id: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_typed_decode = msgspec.json.Decoder(_TypedFrame).decode
# The slot descriptors of `BaseModel`, called directly (no attribute lookup by name).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_MsgspecError = msgspec.MsgspecError
_UNSET = msgspec.UNSET


def _price(value: object) -> Decimal:
    """`_decimal` plus the contract's rule: finite, non-negative, `-0` written as `0`."""
    price = _decimal(value)
    if not price.is_finite() or price < 0:
        raise ValueError("must be a finite, non-negative decimal")
    return price.copy_abs()


def _prices(
    o: object, hi: object, lo: object, c: object, v: object
) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """The contract's price rules on five raw values (open, high, low, close, volume),
    as `CandleClosed` validates them, the cheap way where it can be: five strings
    without a `-` need only two finiteness checks (anything else takes `_price`, the
    reference's rule). Raises what `_PARSE_ERRORS` holds."""
    if (
        isinstance(o, str)
        and isinstance(hi, str)
        and isinstance(lo, str)
        and isinstance(c, str)
        and isinstance(v, str)
        and "-" not in o
        and "-" not in hi
        and "-" not in lo
        and "-" not in c
        and "-" not in v
    ):
        # No sign anywhere: each is NaN, infinite or >= 0, never -0. A finite high and
        # the bracketing leave low, open and close finite too (an ordering comparison
        # with NaN raises InvalidOperation): only high and volume need the check.
        do, dh, dl, dc, dv = _D(o), _D(hi), _D(lo), _D(c), _D(v)
        if not (dh.is_finite() and dv.is_finite()):
            raise ValueError("must be a finite, non-negative decimal")
    else:
        do, dh, dl, dc, dv = _price(o), _price(hi), _price(lo), _price(c), _price(v)
    if not (dl <= do and dl <= dc and dh >= do and dh >= dc):
        raise ValueError("high/low must bracket open and close")
    return do, dh, dl, dc, dv


def _time(value: object) -> datetime:
    """`intervals.from_ms` with the type check Binance input needs, inlined: it runs
    twice per closed candle."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"timestamp must be an integer, got {type(value).__name__}")
    return _EPOCH + timedelta(milliseconds=value)


def _fast_time(value: int) -> datetime:
    """`_time` of an int already type-checked: the C float path where it is exact."""
    if 0 <= value < _FLOAT_EXACT_MS:
        return _fromtimestamp(value / 1000, UTC)
    return _EPOCH + timedelta(milliseconds=value)


class KlineParser:
    """Turns raw or combined kline frames into `CandleClosed` (closed candles only).

    A raw spot frame, as Binance documents it (`k.x` false = still open, ignored)::

        {"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,
         "T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010",
         "c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,
         "q":"1.0000","V":"500","Q":"0.500","B":"123456"}}

    A combined-stream frame wraps the same payload: ``{"stream":"nknusdt@kline_1m",
    "data":{"e":"kline",...}}``. Control frames are recognised too: subscription answers
    (``{"result":null,"id":1}``) and ``{"e":"serverShutdown","E":...}``, which asks us to
    move to a new connection before the server goes away.
    """

    def __init__(self, market: Market, *, compiled: bool = True) -> None:
        """`compiled=False` keeps the compiled decoder out (the tests hold both paths
        equal to the reference); without the extension it is out anyway."""
        self.market = market
        # Symbols that passed the contract's pattern: a set lookup instead of a regex
        # per closed candle (bounded, so junk input cannot grow it without limit).
        self._symbols: set[str] = set()
        # The typed path's last (open ms, close ms) and their datetimes.
        self._last_times: tuple[int, int, datetime, datetime] = (-1, -1, _EPOCH, _EPOCH)
        # The typed path's instance dict: pydantic's field order, the constants set.
        self._template: dict[str, object] = dict.fromkeys(CandleClosed.model_fields)
        self._template.update(version=1, exchange="binance", market=market, source=_STREAM)
        # The compiled decoder (feed_service/_kline.c): a Frame for a compact open or a
        # plain closed kline, None for anything it leaves to the paths below.
        self._compiled: Callable[[str], Frame | None] | None = None
        if compiled and ClosedKlineDecoder is not None:
            self._compiled = ClosedKlineDecoder(
                candle_type=CandleClosed,
                template=self._template,
                fields_set=_FIELDS,
                frame_type=Frame,
                kind=_CLOSED,
                open_frame=OPEN_FRAME,
                intervals=tuple(intervals.SUPPORTED),
                decimal=Decimal,
                fromtimestamp=datetime.fromtimestamp,
                utc=UTC,
            ).decode

    @property
    def compiled(self) -> bool:
        """Whether closed frames go through the compiled decoder first."""
        return self._compiled is not None

    def parse(self, text: str | bytes) -> Frame:
        """Classify one frame; raise `MalformedFrame` if it cannot be understood.

        When the compiled decoder is built (`feed_service/_kline.c`) it decides first: a
        compact open kline by its marks, a plain closed kline in full, None for anything
        else, which the Python paths below decide as they would alone. There, a compact
        open kline is recognised without decoding; a kline frame is decoded by msgspec
        into typed fields (`_typed`, the closed-candle path in Python); anything that path
        does not decide is decoded by orjson (~5x faster than `json` here). Where
        orjson and `json` differ, `json` decides, so what is accepted and refused is
        exactly `json.loads`'s: what orjson refuses (NaN, infinity, lone surrogates) is
        decoded by `json`, and so is a frame orjson's reading makes malformed (it turns
        integers beyond 64 bits into floats, which the contract refuses where `json`
        keeps an int)."""
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError as e:
                raise MalformedFrame(f"frame is not UTF-8: {e}") from e
        if self._compiled is not None and (decided := self._compiled(text)) is not None:
            return decided
        if _OPEN_MARK in text and _KLINE_MARK in text:
            return OPEN_FRAME
        if (typed := self._typed(text)) is not None:
            return typed
        try:
            message = _loads(text)
        except _JSONError:
            return self._parse_with_json(text)
        if not isinstance(message, dict):
            raise MalformedFrame("frame is not a JSON object")
        try:
            return self.parse_message(message)
        except MalformedFrame:
            return self._parse_with_json(text)

    def _parse_with_json(self, text: str) -> Frame:
        try:
            message = json.loads(text)
        except ValueError as e:
            raise MalformedFrame(f"frame is not JSON: {e}") from e
        if not isinstance(message, dict):
            raise MalformedFrame("frame is not a JSON object")
        return self.parse_message(message)

    def parse_message(self, message: dict[str, Any]) -> Frame:
        data = message.get("data") if "stream" in message else message
        if not isinstance(data, dict):
            raise MalformedFrame("combined frame without an object in `data`")
        if "id" in message and ("result" in message or "error" in message):
            return self._response(message)
        event = data.get("e")
        if event == "kline":
            return self._kline(data)
        if event == "serverShutdown":
            return SHUTDOWN_FRAME
        return OTHER_FRAME

    @staticmethod
    def _response(message: dict[str, Any]) -> Frame:
        request_id = message["id"]
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            raise MalformedFrame("response id is not an integer")
        error = message.get("error")
        return Frame(
            FrameKind.RESPONSE, request_id=request_id, error=None if error is None else json.dumps(error)
        )

    def _kline(self, data: dict[str, Any]) -> Frame:
        """The closed-candle path of a decoded dict: `k`'s values to `_candle`.
        `_kline_validated` is the reference it must agree with (property-tested)."""
        try:
            k = data["k"]
            closed = k["x"]
            if closed is False:
                return OPEN_FRAME
            if closed is not True:
                raise TypeError("k.x must be a boolean")
            return self._candle(
                k["s"], k["i"], k["n"], k["t"], k["T"], k["o"], k["h"], k["l"], k["c"], k["v"]
            )
        except _PARSE_ERRORS as e:
            raise MalformedFrame(f"bad kline payload: {type(e).__name__}: {e}") from e

    def _candle(
        self,
        symbol: object,
        interval: object,
        trades: object,
        t: object,
        end: object,
        o: object,
        hi: object,
        lo: object,
        c: object,
        v: object,
    ) -> Frame:
        """The contract's checks done by hand on the raw values, then the model built
        without pydantic's second pass: `model_construct` would be the public way, but it
        costs more than validating (it walks the fields for defaults in Python), so this
        sets exactly what pydantic's own constructor leaves on an instance. Raises what
        `_PARSE_ERRORS` holds; the callers turn it into `MalformedFrame`.

        Cheap where it can be: a symbol already seen valid is a set lookup, the prices
        are `_prices`'s, the close time of a candle of fixed length is its open time
        plus the interval's constant span, and the two times come from the C float path
        where it is exact."""
        if symbol not in self._symbols:
            self._remember_symbol(symbol)
        if interval not in _INTERVALS:
            raise ValueError(f"unsupported interval {interval!r}")
        if type(trades) is not int or trades < 0:
            raise ValueError("trades must be a non-negative integer")
        if type(t) is not int or type(end) is not int:
            raise TypeError("timestamps must be integers")
        open_time = (
            _fromtimestamp(t / 1000, UTC) if 0 <= t < _FLOAT_EXACT_MS else _EPOCH + timedelta(milliseconds=t)
        )
        span = _SPANS.get(interval)
        if span is not None and end - t == span[0]:
            close_time = open_time + span[1]
        else:
            close_time = _fast_time(end)
            if close_time <= open_time:
                raise ValueError("close_time must be after open_time")
        do, dh, dl, dc, dv = _prices(o, hi, lo, c, v)
        candle = _new(CandleClosed)
        _set(
            candle,
            "__dict__",
            {
                "version": 1,
                "exchange": "binance",
                "market": self.market,
                "symbol": symbol,
                "interval": interval,
                "open_time": open_time,
                "close_time": close_time,
                "open": do,
                "high": dh,
                "low": dl,
                "close": dc,
                "volume": dv,
                "trades": trades,
                "source": _STREAM,
            },
        )
        _set(candle, "__pydantic_fields_set__", _FIELDS)
        _set(candle, "__pydantic_extra__", None)
        _set(candle, "__pydantic_private__", None)
        return _tuple_new(Frame, (_CLOSED, candle, None, None))

    def _typed(self, text: str) -> Frame | None:
        """A frame decoded by msgspec straight into typed fields (in C, only the fields
        the contract reads), then `_candle`'s checks, inlined but for the prices' (a
        call with ten arguments costs more than the checks it would share). `None` hands the frame
        to the reference path: anything msgspec refuses (NaN, lone surrogates, a wrong
        type, a missing key, a negative count, a time the float path cannot convert
        exactly) and any frame that is not plainly a kline (a response, a combined
        frame without `data`, a raw one with `stream`), so what this decides is only
        what `json.loads` + `_kline` decide the same way (property-tested). A kline it
        read whose values break the contract is refused here."""
        try:
            frame = _typed_decode(text)
        except (_MsgspecError, UnicodeEncodeError):  # the latter: a str with a lone surrogate
            return None
        if frame.id is not _UNSET:
            return None
        if frame.stream is _UNSET:
            event, k = frame.e, frame.k
        elif (data := frame.data) is not _UNSET:
            event, k = data.e, data.k
        else:
            return None
        if event != "kline" or k is _UNSET:
            return None
        if not k.x:
            return OPEN_FRAME
        symbol, interval, t, end, o, hi, lo, c, v = k.s, k.i, k.t, k.T, k.o, k.h, k.l, k.c, k.v
        try:
            if symbol not in self._symbols:
                self._remember_symbol(symbol)
            if interval not in _INTERVALS:
                raise ValueError(f"unsupported interval {interval!r}")
            last_t, last_end, open_time, close_time = self._last_times
            if t != last_t or end != last_end:
                # Every stream of an interval closes at the same instant, so a burst
                # of closes (and a backfill) repeats the pair: converted once.
                open_time = _fromtimestamp(t / 1000, UTC)
                close_time = _fromtimestamp(end / 1000, UTC)
                if close_time <= open_time:
                    raise ValueError("close_time must be after open_time")
                self._last_times = (t, end, open_time, close_time)
            do, dh, dl, dc, dv = _prices(o, hi, lo, c, v)
        except _PARSE_ERRORS as e:
            raise MalformedFrame(f"bad kline payload: {type(e).__name__}: {e}") from e
        # The template holds the constants (and the field order pydantic uses); the
        # slots are set through their descriptors, as pydantic's constructor leaves them.
        fields = self._template.copy()
        fields["symbol"] = symbol
        fields["interval"] = interval
        fields["open_time"] = open_time
        fields["close_time"] = close_time
        fields["open"] = do
        fields["high"] = dh
        fields["low"] = dl
        fields["close"] = dc
        fields["volume"] = dv
        fields["trades"] = k.n
        candle = _new(CandleClosed)
        _set(candle, "__dict__", fields)
        _set_fields_set(candle, _FIELDS)
        _set_extra(candle, None)
        _set_private(candle, None)
        return _tuple_new(Frame, (_CLOSED, candle, None, None))

    def _remember_symbol(self, symbol: object) -> None:
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise ValueError(f"bad symbol {symbol!r}")
        if len(self._symbols) < _SYMBOLS_REMEMBERED:
            self._symbols.add(symbol)

    def _kline_validated(self, data: dict[str, Any]) -> Frame:
        """The same through pydantic's full validation of the contract (the reference)."""
        try:
            k = data["k"]
            closed = k["x"]
            if closed is False:
                return OPEN_FRAME
            if closed is not True:
                raise TypeError("k.x must be a boolean")
            candle = CandleClosed(
                market=self.market,
                symbol=k["s"],
                interval=k["i"],
                open_time=_time(k["t"]),
                close_time=_time(k["T"]),
                open=_decimal(k["o"]),
                high=_decimal(k["h"]),
                low=_decimal(k["l"]),
                close=_decimal(k["c"]),
                volume=_decimal(k["v"]),
                trades=k["n"],
                source=CandleSource.STREAM,
            )
        except _PARSE_ERRORS as e:
            raise MalformedFrame(f"bad kline payload: {type(e).__name__}: {e}") from e
        return Frame(FrameKind.CANDLE_CLOSED, candle=candle)


class BinanceVenue(KlineParser):
    """Binance's kline streams as a `feed_service.venue.Venue`: the parser plus the wire.

    Streams are `btcusdt@kline_1m` (lower-case symbol; `1M`, the month, keeps its case).
    The first `URL_STREAMS_MAX` streams are named in the connect URL
    (`/stream?streams=a/b`, combined frames), the rest subscribed with
    ``{"method":"SUBSCRIBE","params":[...],"id":N}``, answered by ``{"result":null,"id":N}``.
    """

    names_per_request = PARAMS_PER_MESSAGE

    def stream_name(self, stream: StreamId) -> str:
        return f"{stream.symbol.lower()}@kline_{stream.interval}"

    def connect_url(self, base_url: str, names: Collection[str]) -> tuple[str, frozenset[str]]:
        first = sorted(names)[:URL_STREAMS_MAX]
        if not first:
            return f"{base_url}/ws", frozenset()
        return f"{base_url}/stream?streams={'/'.join(first)}", frozenset(first)

    def request(self, kind: Subscription, request_id: int, names: Sequence[str]) -> str:
        return json.dumps({"method": _METHODS[kind], "params": list(names), "id": request_id})


def candle_from_rest_row(row: object, market: Market, stream: StreamId) -> CandleClosed:
    """One REST kline row (an array of 12) as a backfilled candle."""
    try:
        if not isinstance(row, list) or len(row) < 9:
            raise TypeError("a kline row is an array of 12")
        return CandleClosed(
            market=market,
            symbol=stream.symbol,
            interval=stream.interval,
            open_time=_time(row[0]),
            close_time=_time(row[6]),
            open=_decimal(row[1]),
            high=_decimal(row[2]),
            low=_decimal(row[3]),
            close=_decimal(row[4]),
            volume=_decimal(row[5]),
            trades=row[8],
            source=CandleSource.BACKFILL,
        )
    except _PARSE_ERRORS as e:
        raise MalformedFrame(f"bad REST kline row: {type(e).__name__}: {e}") from e


class KlinesClient:
    """Fetches closed candles from REST klines, paging and honouring Binance's limits.

    429 means "slow down": we wait `Retry-After` (or back off) and retry. 418 means the
    IP is banned for `Retry-After` seconds: every request waits out the ban instead of
    extending it, and if the ban is longer than `max_wait_s` the backfill fails at once
    (the live stream goes on; the gap is logged) rather than stalling the stream.
    """

    def __init__(
        self,
        url: str,
        market: Market,
        *,
        limit: int,
        http: httpx.AsyncClient,
        max_attempts: int = 5,
        max_wait_s: float = 60.0,
        backoff: BackoffPolicy | None = None,
        draw: Callable[[], float] = random.random,
        clock: WallClock = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleeper = asyncio.sleep,
    ) -> None:
        self._url = url
        self._market = market
        self._limit = limit
        self._http = http
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s
        # The shared full-jitter policy; `draw` is its uniform [0, 1) source.
        self._backoff = backoff or BackoffPolicy(base_s=0.5, cap_s=max(max_wait_s, 0.5))
        self._draw = draw
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._banned_until = 0.0
        self.requests = 0
        self.throttled = 0

    async def fetch(self, stream: StreamId, start_ms: int, end_ms: int) -> list[CandleClosed]:
        """Closed candles of `stream` whose open time is in [start_ms, end_ms], oldest first."""
        candles: list[CandleClosed] = []
        cursor = start_ms
        while cursor <= end_ms:
            rows = await self._get(stream, cursor, end_ms)
            if not rows:
                break
            now_ms = wall_ms(self._clock)
            last_open = cursor
            for row in rows:
                candle = candle_from_rest_row(row, self._market, stream)
                open_ms = intervals.to_ms(candle.open_time)
                last_open = max(last_open, open_ms)
                if cursor <= open_ms <= end_ms and intervals.to_ms(candle.close_time) < now_ms:
                    candles.append(candle)
            if len(rows) < self._limit:
                break
            cursor = intervals.next_open_ms(last_open, stream.interval)
        return candles

    async def _get(self, stream: StreamId, start_ms: int, end_ms: int) -> list[object]:
        params: dict[str, str | int] = {
            "symbol": stream.symbol,
            "interval": stream.interval,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": self._limit,
        }
        for attempt in range(1, self._max_attempts + 1):
            await self._wait_out_ban()
            self.requests += 1
            try:
                response = await self._http.get(self._url, params=params)
            except httpx.TransportError as e:
                log.warning("klines request failed (attempt %d): %s", attempt, e)
                await self._sleep(self._delay(attempt))
                continue
            if response.status_code == 200:
                body = response.json()
                if not isinstance(body, list):
                    raise BackfillError(f"klines answered a {type(body).__name__}, not a list")
                return body
            if response.status_code in (418, 429):
                self.throttled += 1
                # The shared parser: seconds or an HTTP date; junk means "back off".
                wait = parse_retry_after(response.headers.get("Retry-After"), self._clock())
                if response.status_code == 418:
                    self._banned_until = self._monotonic() + (wait if wait is not None else 120.0)
                    log.error("Binance REST ban (418) for %.0f s", wait or 120.0)
                    continue
                delay = wait if wait is not None else self._delay(attempt)
                if delay > self._max_wait_s:
                    raise BackfillError(f"429 asks to wait {delay:.0f} s; more than we allow")
                log.warning("klines throttled (429), waiting %.2f s", delay)
                await self._sleep(delay)
                continue
            if response.status_code >= 500:
                log.warning("klines answered %d (attempt %d)", response.status_code, attempt)
                await self._sleep(self._delay(attempt))
                continue
            raise BackfillError(f"klines answered {response.status_code}: {response.text[:200]}")
        raise BackfillError(f"klines for {stream} failed after {self._max_attempts} attempts")

    def _delay(self, attempt: int) -> float:
        return self._backoff.delay(attempt, self._draw())

    async def _wait_out_ban(self) -> None:
        remaining = self._banned_until - self._monotonic()
        if remaining <= 0:
            return
        if remaining > self._max_wait_s:
            raise BackfillError(f"IP banned by Binance for another {remaining:.0f} s")
        await self._sleep(remaining)
