"""The kline parser: recorded frames, generated frames (hypothesis), malformed input."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feed_service.binance import (
    OPEN_FRAME,
    FrameKind,
    KlineParser,
    MalformedFrame,
    _fast_time,
    _time,
    candle_from_rest_row,
)
from feed_service.streams import StreamId
from feed_service.venue import Frame
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource, Market
from tests.unit.feed.frames import load, recorded_frames

SPOT = KlineParser(Market.SPOT)
# The same parser without the compiled decoder: the Python paths, which decide alone
# where the extension is not built, and everything the decoder steps aside from.
SPOT_PYTHON = KlineParser(Market.SPOT, compiled=False)


def test_recorded_open_frames_yield_nothing() -> None:
    frames = recorded_frames()
    assert len(frames) == 2
    assert all(SPOT.parse(f) is OPEN_FRAME for f in frames)
    # The same frames through the full JSON path (spaced, so the shortcut cannot apply).
    assert all(SPOT.parse(json.dumps(json.loads(f), indent=1)).kind is FrameKind.CANDLE_OPEN for f in frames)


@pytest.mark.parametrize(
    ("name", "market"),
    [("spot_kline_doc_example.json", Market.SPOT), ("usdm_futures_kline_doc_example.json", Market.USDM)],
)
def test_documented_frame_once_closed(name: str, market: Market) -> None:
    raw = load(name)
    assert KlineParser(market).parse(json.dumps(raw)).kind is FrameKind.CANDLE_OPEN
    raw["k"]["x"] = True
    # Binance's documentation example has low (0.0015) above open (0.0010): no real
    # candle looks like that, and the contract refuses it rather than publish nonsense.
    with pytest.raises(MalformedFrame, match="bracket"):
        KlineParser(market).parse(json.dumps(raw))
    raw["k"]["l"] = "0.0005"
    frame = KlineParser(market).parse(json.dumps(raw).encode())
    assert frame.kind is FrameKind.CANDLE_CLOSED and frame.candle is not None
    candle = frame.candle
    assert candle.market is market and candle.source is CandleSource.STREAM
    assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
        Decimal("0.0010"),
        Decimal("0.0025"),
        Decimal("0.0005"),
        Decimal("0.0020"),
        Decimal("1000"),
    )
    assert intervals.to_ms(candle.open_time) == raw["k"]["t"]
    assert intervals.to_ms(candle.close_time) == raw["k"]["T"]
    assert candle.trades == 100
    assert candle.to_detail()["open"] == "0.0010"  # the scale survives


def test_control_frames() -> None:
    shutdown = load("spot_server_shutdown_doc_example.json")
    assert SPOT.parse(json.dumps(shutdown["raw"])).kind is FrameKind.SHUTDOWN
    assert SPOT.parse(json.dumps(shutdown["combined"])).kind is FrameKind.SHUTDOWN
    answer = SPOT.parse(json.dumps(load("ws_subscribe_doc_example.json")["response"]))
    assert (answer.kind, answer.request_id, answer.error) == (FrameKind.RESPONSE, 1, None)
    refused = SPOT.parse('{"error":{"code":2,"msg":"Invalid request"},"id":4}')
    assert refused.kind is FrameKind.RESPONSE and refused.request_id == 4
    assert refused.error is not None and "Invalid request" in refused.error
    assert SPOT.parse('{"e":"aggTrade","E":1}').kind is FrameKind.OTHER


def test_rest_row_fixtures() -> None:
    for name, market in (
        ("rest_api_v3_klines_doc_example.json", Market.SPOT),
        ("rest_fapi_v1_klines_doc_example.json", Market.USDM),
    ):
        (row,) = load(name)
        candle = candle_from_rest_row(row, market, StreamId("BNBBTC", "1w"))
        assert candle.source is CandleSource.BACKFILL
        assert candle.open == Decimal("0.01634790") and candle.trades == 308
        assert intervals.to_ms(candle.close_time) == 1499644799999


# -- generated frames -----------------------------------------------------------------

prices = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("10000000"),
    allow_nan=False,
    allow_infinity=False,
    places=8,
)


@st.composite
def kline_frames(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    interval = draw(st.sampled_from([i for i in intervals.SUPPORTED if i != "1M"]))
    symbol = draw(st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True))
    open_ms = intervals.open_time_of(draw(st.integers(0, 4_000_000_000_000)), interval)
    values = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    low, high = values[0], values[3]
    open_, close = draw(st.permutations([values[1], values[2]]))
    k = {
        "t": open_ms,
        "T": intervals.close_ms(open_ms, interval),
        "s": symbol,
        "i": interval,
        "f": 1,
        "L": 2,
        "o": str(open_),
        "c": str(close),
        "h": str(high),
        "l": str(low),
        "v": str(draw(prices)),
        "n": draw(st.integers(0, 10**6)),
        "x": draw(st.booleans()),
        "q": "1.0",
        "V": "0.5",
        "Q": "0.5",
        "B": "0",
    }
    raw = {"e": "kline", "E": open_ms + 1, "s": symbol, "k": k}
    message = {"stream": f"{symbol.lower()}@kline_{interval}", "data": raw} if draw(st.booleans()) else raw
    return message, k


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(kline_frames(), st.sampled_from([(",", ":"), (", ", ": ")]))
def test_generated_frames(frame: tuple[dict[str, Any], dict[str, Any]], separators: tuple[str, str]) -> None:
    message, k = frame
    parsed = SPOT.parse(json.dumps(message, separators=separators))
    if not k["x"]:
        assert parsed.kind is FrameKind.CANDLE_OPEN and parsed.candle is None
        return
    assert parsed.kind is FrameKind.CANDLE_CLOSED and parsed.candle is not None
    candle = parsed.candle
    assert (candle.symbol, candle.interval) == (k["s"], k["i"])
    assert intervals.to_ms(candle.open_time) == k["t"]
    assert intervals.to_ms(candle.close_time) == k["T"]
    assert (candle.open, candle.high, candle.low, candle.close) == tuple(Decimal(k[f]) for f in "ohlc")
    assert candle.volume == Decimal(k["v"]) and candle.trades == k["n"]
    # Exact decimal round-trip through the contract's JSON.
    detail = candle.to_detail()
    assert Decimal(detail["close"]) == Decimal(k["c"])


def _mutations(k: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
    )
    return st.builds(
        lambda key, value, drop: {kk: vv for kk, vv in {**k, key: value}.items() if not (drop and kk == key)},
        st.sampled_from(sorted(k)),
        junk,
        st.booleans(),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_frames_are_parsed_or_rejected_never_crash(data: st.DataObject) -> None:
    message, k = data.draw(kline_frames())
    k_bad = data.draw(_mutations(k))
    raw = message.get("data", message)
    raw["k"] = k_bad
    try:
        frame = SPOT.parse(json.dumps(message, separators=(", ", ": ")))
    except MalformedFrame:
        return
    assert frame.kind in (FrameKind.CANDLE_OPEN, FrameKind.CANDLE_CLOSED)
    if frame.kind is FrameKind.CANDLE_CLOSED:
        assert frame.candle is not None and k_bad["x"] is True


@given(
    st.one_of(
        st.text(max_size=50),
        st.binary(max_size=50),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["e", "k", "x", "data", "stream", "id", "result"]), c, max_size=4
                )
            ),
            max_leaves=8,
        ).map(json.dumps),
    )
)
def test_arbitrary_input_never_crashes(text: str | bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        SPOT.parse(text)


def test_floats_for_prices_are_rejected() -> None:
    raw = load("spot_kline_doc_example.json")
    raw["k"].update(x=True, o=0.001)
    with pytest.raises(MalformedFrame, match="decimal string"):
        SPOT.parse(json.dumps(raw))


_PRICE_TEXTS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [
            *("-0", "-0.000", "0", "0.0", "1e3", "1e-3", "1E+2", " 1.5", "1.5 ", "+1.5", "1_0"),
            *("Inf", "-Infinity", "nan", "sNaN", "-NaN", "\u0663", "\u00b2", "", "1.2.3", "0x10"),
        ]
    ),
)
_TIME_EDGES = st.sampled_from(
    [-1, 0, 1, 3_999_999_999_999, 4_000_000_000_000, 4_000_000_000_001, 253_402_300_799_999, 10**16]
)


def _semantic_mutations(k: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed values that break a rule of the contract (or happen to keep it), one
    key at a time or several prices together (the fast path infers the finiteness of
    low, open and close from high and the bracketing, so combinations matter)."""
    by_key: dict[str, st.SearchStrategy[Any]] = {
        "s": st.text("ABCXYZ019abc-", max_size=40),
        "i": st.sampled_from([*intervals.SUPPORTED, "7m", "1H", ""]),
        "n": st.integers(-3, 3),
        "t": st.one_of(st.integers(k["T"] - 2, k["T"] + 2), _TIME_EDGES),
        # Around the open time, and far from the interval's span (the general path).
        "T": st.one_of(
            st.integers(k["t"] - 2, k["t"] + 2), st.integers(k["t"], k["t"] + 10**12), _TIME_EDGES
        ),
        **dict.fromkeys(("o", "h", "l", "c", "v"), _PRICE_TEXTS),
    }
    one = st.sampled_from(sorted(by_key)).flatmap(
        lambda key: by_key[key].map(lambda value: {**k, key: value})
    )
    prices = st.dictionaries(st.sampled_from(["o", "h", "l", "c", "v"]), _PRICE_TEXTS, min_size=2, max_size=5)
    return st.one_of(one, prices.map(lambda changed: {**k, **changed}))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_closed_path_equals_the_validated_path(data: st.DataObject) -> None:
    """Same candle for every valid frame, same refusal for every broken one."""
    message, k = data.draw(kline_frames())
    k = {**k, "x": True}
    choice = data.draw(st.sampled_from(["valid", "junk", "semantic"]))
    if choice == "junk":
        k = data.draw(_mutations(k))
    elif choice == "semantic":
        k = data.draw(_semantic_mutations(k))
    raw = dict(message.get("data", message))
    raw["k"] = k

    def outcome(parse: Any) -> tuple[str, Any]:
        try:
            frame = parse(raw)
        except MalformedFrame:
            return ("refused", None)
        return (frame.kind.value, frame.candle)

    fast, validated = outcome(SPOT._kline), outcome(SPOT._kline_validated)
    assert fast == validated
    if fast[1] is not None:
        assert fast[1].to_detail() == validated[1].to_detail()
        assert CandleClosed.model_validate(fast[1].to_detail()) == fast[1]


@settings(max_examples=300)
@given(st.one_of(st.integers(-62_135_596_800_000, 253_402_300_799_999), _TIME_EDGES))
def test_the_fast_time_conversion_is_exact(ms: int) -> None:
    # The C float path is used below 2096 only, where a double is exact to the ms.
    try:
        expected = _time(ms)
    except OverflowError:
        with pytest.raises(OverflowError):
            _fast_time(ms)
        return
    assert _fast_time(ms) == expected
    assert intervals.to_ms(_fast_time(ms)) == ms


class JsonReference(KlineParser):
    """The parser as it was: `json.loads`, then pydantic's full validation."""

    _kline = KlineParser._kline_validated

    def parse(self, text: str | bytes) -> Frame:
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError as e:
                raise MalformedFrame(str(e)) from e
        try:
            message = json.loads(text)
        except ValueError as e:
            raise MalformedFrame(str(e)) from e
        if not isinstance(message, dict):
            raise MalformedFrame("not an object")
        return self.parse_message(message)


REFERENCE = JsonReference(Market.SPOT)
# Literals where orjson and json read differently: ints beyond 64 bits (orjson: floats),
# NaN and infinities (orjson: refused), a lone surrogate (orjson: refused).
_JSON_ODDITIES = st.sampled_from(
    [
        *("100000000000000000000000", "-9223372036854775809", "18446744073709551616"),
        *("NaN", "-Infinity", "1e400", '"\\ud800"', "1.0", "7"),
    ]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_text_path_equals_json_loads_and_full_validation(data: st.DataObject) -> None:
    """orjson where it agrees with json, json where it does not: the same frame outcome."""
    message, k = data.draw(kline_frames())
    k["x"] = True
    text = json.dumps(message, separators=data.draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    key = data.draw(st.sampled_from(["n", "t", "T", "E", "f", "o"]))
    literal = data.draw(_JSON_ODDITIES)
    # Splice a raw literal in place of one value (json.dumps cannot write all of them).
    target = f'"{key}":' if '":' in text else f'"{key}": '
    start = text.index(target) + len(target)
    end = start
    while text[end] not in ",}":
        end += 1
    text = text[:start] + literal + text[end:]

    def outcome(parser: KlineParser) -> tuple[str, Any]:
        try:
            frame = parser.parse(text)
        except MalformedFrame:
            return ("refused", None)
        return (frame.kind.value, None if frame.candle is None else frame.candle.to_detail())

    assert outcome(SPOT) == outcome(REFERENCE)
    assert outcome(SPOT_PYTHON) == outcome(REFERENCE)
    assert outcome(KlineParser(Market.SPOT)) == outcome(REFERENCE)  # a parser that knows no symbol yet


_EDGE_PRICES = [
    *("-0", "-0.000", "0", "0.0", "-1", "-1.5", "1e3", "1e-3", "1E+2", " 1.5", "+1.5", "1_0", "100.5"),
    *("Inf", "Infinity", "-Infinity", "inf", "NaN", "nan", "sNaN", "-NaN", "\u0663", "\u00b2", "", "1.2.3"),
    *(1.5, 2, None, True, [0, [1, 5], -1], {"-": 1}),  # a list is a Decimal tuple: still refused
]


def _edge_price_cases() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A closed documented kline (low below open), and every edge value in each price
    field and in every pair of fields, as changes to it."""
    base = {**json.loads(json.dumps(load("spot_kline_doc_example.json")))["k"], "x": True, "l": "0.0005"}
    fields = ("o", "h", "l", "c", "v")
    cases: list[dict[str, Any]] = [{f: value} for f in fields for value in _EDGE_PRICES]
    cases += [
        {f: a, g: b}
        for i, f in enumerate(fields)
        for g in fields[i + 1 :]
        for a in _EDGE_PRICES
        for b in _EDGE_PRICES
    ]
    return base, cases


def test_the_fast_closed_path_equals_the_validated_path_on_every_edge_price() -> None:
    """Exhaustively, not by chance: every edge value in each price field, and in every
    pair of fields (the fast path checks only high's and volume's finiteness and infers
    the rest from the bracketing, so pairs are where it could go wrong)."""
    base, cases = _edge_price_cases()
    parser = KlineParser(Market.SPOT)
    for changed in cases:
        raw = {"e": "kline", "k": {**base, **changed}}
        results: list[dict[str, Any] | None] = []
        for parse in (parser._kline, parser._kline_validated):
            try:
                frame = parse(raw)
            except MalformedFrame:
                results.append(None)
            else:
                assert frame.candle is not None
                results.append(frame.candle.to_detail())
        assert results[0] == results[1], changed


# -- the typed (msgspec) text path ----------------------------------------------------


def _text_outcome(parser: KlineParser, text: str | bytes) -> tuple[str, Any]:
    try:
        frame = parser.parse(text)
    except MalformedFrame:
        return ("refused", None)
    return (frame.kind.value, None if frame.candle is None else frame.candle)


def _same_as_reference(
    text: str | bytes, parser: KlineParser = SPOT, twin: KlineParser | None = None
) -> tuple[str, Any]:
    """`parser` and its Python-only twin (SPOT_PYTHON for SPOT, else a fresh one unless
    given) both decide `text` as the reference does; `parser`'s outcome is returned."""
    if twin is None:
        twin = SPOT_PYTHON if parser is SPOT else KlineParser(parser.market, compiled=False)
    reference = _text_outcome(REFERENCE, text)
    outcomes = [_text_outcome(p, text) for p in (parser, twin)]
    for ours in outcomes:
        assert ours[0] == reference[0], text
        if ours[1] is not None:
            assert ours[1] == reference[1], text
            assert ours[1].to_detail() == reference[1].to_detail(), text
            assert CandleClosed.model_validate(ours[1].to_detail()) == ours[1]
    return outcomes[0]


@st.composite
def checked_texts(draw: st.DrawFn, prices: st.SearchStrategy[list[str]] | None = None) -> str:
    """A frame's text: valid, junk or rule-breaking, open or closed, raw or combined,
    compact or spaced; `prices` (o, h, l, c, v) replace the generated ones half the time."""
    message, k = draw(kline_frames())
    if prices is not None and draw(st.booleans()):
        k["o"], k["h"], k["l"], k["c"], k["v"] = draw(prices)
    choice = draw(st.sampled_from(["valid", "junk", "semantic"]))
    if choice == "junk":
        k = draw(_mutations(k))
    elif choice == "semantic":
        k = draw(_semantic_mutations({**k, "x": draw(st.booleans())}))
    raw = dict(message.get("data", message))
    raw["k"] = k
    message = {**message, "data": raw} if "data" in message else raw
    return json.dumps(message, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_typed_text_path_equals_json_loads_and_full_validation(data: st.DataObject) -> None:
    """`parse` on text (msgspec's typed decode, then the hand checks) against `json.loads`
    + pydantic's full validation: valid, junk and rule-breaking frames (high below low,
    NaN and negative prices, bad times, counts, symbols, intervals), open and closed,
    raw and combined, compact (what Binance sends) and spaced."""
    text = data.draw(checked_texts())
    fresh = data.draw(st.booleans())  # a parser that knows no symbol and no times yet
    _same_as_reference(text, KlineParser(Market.SPOT) if fresh else SPOT)


def test_the_typed_text_path_equals_the_reference_on_every_edge_price() -> None:
    """The exhaustive edge prices of the dict path, through `parse` on compact text."""
    base, cases = _edge_price_cases()
    parser = KlineParser(Market.SPOT)
    outcomes = set()
    for changed in cases:
        outcomes.add(_same_as_reference(dumps_compact({"e": "kline", "k": {**base, **changed}}), parser)[0])
    assert outcomes == {"refused", "candle_closed"}


def dumps_compact(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


def _closed_text(**changes: Any) -> str:
    raw = load("spot_kline_doc_example.json")
    raw["k"].update({"x": True, "l": "0.0005", **changes})
    return dumps_compact({"stream": "bnbbtc@kline_1m", "data": raw})


def test_the_typed_path_decides_a_plain_closed_frame() -> None:
    """The fast path is the one taken for what Binance sends, not only the fallback."""
    frame = KlineParser(Market.USDM)._typed(_closed_text())
    assert frame is not None and frame.kind is FrameKind.CANDLE_CLOSED and frame.candle is not None
    assert frame.candle.market is Market.USDM and frame.candle.symbol == "BNBBTC"
    assert frame.candle == REFERENCE.parse(_closed_text()).candle.model_copy(update={"market": Market.USDM})  # type: ignore[union-attr]


# Frames whose structure is odd: each path must decide them as `json.loads` would.
STRUCTURAL_ODDITIES = [
    # The typed decoder ignores unknown keys: these keys change what the frame is.
    '{"stream":"x","data":{"e":"kline","k":{}},"id":3,"result":null}',
    '{"id":3,"result":null,"e":"kline","k":{"t":1,"T":2,"s":"AB","i":"1m","o":"1",'
    '"c":"1","h":"1","l":"1","v":"1","n":1,"x":true}}',
    '{"stream":"x","e":"kline","k":{"t":1,"T":2,"s":"AB","i":"1m","o":"1","c":"1",'
    '"h":"1","l":"1","v":"1","n":1,"x":true}}',
    '{"stream":"x","data":null}',
    '{"e":"serverShutdown","E":1}',
    '{"e":"aggTrade","k":5}',
    # Duplicate keys: `json` keeps the last one, and so must we.
    _closed_text(h="0.0025").replace('"h":"0.0025"', '"h":"0.0001","h":"0.0025"'),
    _closed_text(h="0.0025").replace('"h":"0.0025"', '"h":"0.0025","h":"0.0001"'),
    _closed_text().replace('"x":true', '"x":true,"x":false'),
    _closed_text().replace('"s":"BNBBTC","i"', '"s":"BNBBTC","s":"bad","i"'),
    # ... also when the second is spelled with an escape ("\u0069" is "i").
    _closed_text().replace('"i":"1m"', '"i":"1m","\\u0069":"1h"'),
    _closed_text().replace('"x":true', '"x":true,"\\u0078":false'),
    # The open mark alone, outside a kline: not an open candle.
    '{"e":"trade","E":1,"x":false}',
    # A complete, closed kline under another event name is not a kline.
    _closed_text().replace('"e":"kline"', '"e":"klines"'),
    _closed_text().replace('"e":"kline"', '"e":"kline","e":"trade"'),
    # Escapes, control characters, surrogates, trailing data.
    _closed_text().replace('"s":"BNBBTC","i"', '"s":"BNB\\u0042TC","i"'),
    _closed_text().replace('"\\u0069":', '"i":').replace('"i":"1m"', '"\\u0069":"1m"'),
    _closed_text().replace('"B":"', '"B":"\x01'),
    _closed_text().replace('"B":"', '"B":"\\ud800'),
    _closed_text().replace('"B":"', '"B":"\ud800'),
    _closed_text().replace('"B":"', '"B":"\\udc00\\ud800'),
    _closed_text() + " ",
    _closed_text() + "x",
    " " + _closed_text(),
    # Values the typed decoder refuses and the reference decides.
    _closed_text(n=-1),
    _closed_text(n=True),
    _closed_text(t=-60_000, T=-1),
    _closed_text(t=4_000_000_000_000, T=4_000_000_059_999),
    # Where a double is not exact to the millisecond (year 3148): the integer path.
    _closed_text(t=37_188_307_740_000, T=37_188_307_809_340),
    _closed_text(i="7m"),
    _closed_text(i="1H"),
    _closed_text(s="bnbbtc"),
    _closed_text(s="B"),
    _closed_text(o=0.001),
    _closed_text(h="NaN"),
    _closed_text(v="-1"),
    _closed_text(h="0.0001"),
    _closed_text().replace('"n":100', '"n":100000000000000000000000'),
    _closed_text().replace('"E":1672515782136', '"E":NaN'),
    _closed_text().replace('"E":1672515782136', '"E":1e400'),
    _closed_text().replace('"x":true', '"x":1'),
]


@pytest.mark.parametrize("text", STRUCTURAL_ODDITIES)
def test_the_typed_text_path_equals_the_reference_on_structural_oddities(text: str) -> None:
    _same_as_reference(text)
    _same_as_reference(text, KlineParser(Market.SPOT))
    _same_as_reference(text.encode("utf-8", "surrogatepass"), KlineParser(Market.SPOT))


def test_the_remembered_times_follow_both_timestamps() -> None:
    """Streams of one interval close together, so the last pair of times is reused:
    only when both the open and the close millisecond are the same."""
    parser = KlineParser(Market.SPOT)
    start = 1672515780000
    texts = [
        _closed_text(t=start, T=start + 59_999, s="AAA1"),
        _closed_text(t=start, T=start + 59_999, s="AAA2"),  # the same pair: reused
        _closed_text(t=start, T=start + 29_999, s="AAA3"),  # same open, other close
        _closed_text(t=start + 1, T=start + 29_999, s="AAA4"),  # other open, same close
        _closed_text(t=start + 29_999, T=start + 29_999, s="AAA5"),  # close not after open
        _closed_text(t=start, T=start + 59_999, s="AAA6"),
    ]
    twin = KlineParser(Market.SPOT, compiled=False)
    results = [_same_as_reference(text, parser, twin) for text in texts]
    times = [
        None if c is None else (intervals.to_ms(c.open_time), intervals.to_ms(c.close_time))
        for _, c in results
    ]
    assert times == [
        (start, start + 59_999),
        (start, start + 59_999),
        (start, start + 29_999),
        (start + 1, start + 29_999),
        None,
        (start, start + 59_999),
    ]
