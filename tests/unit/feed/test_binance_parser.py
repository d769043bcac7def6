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
    candle_from_rest_row,
)
from feed_service.streams import StreamId
from functions.core import intervals
from functions.core.contracts import CandleClosed, CandleSource, Market
from tests.unit.feed.frames import load, recorded_frames

SPOT = KlineParser(Market.SPOT)


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


def _semantic_mutations(k: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed values that break a rule of the contract (or happen to keep it)."""
    by_key: dict[str, st.SearchStrategy[Any]] = {
        "s": st.text("ABCXYZ019abc-", max_size=40),
        "i": st.sampled_from([*intervals.SUPPORTED, "7m", "1H", ""]),
        "n": st.integers(-3, 3),
        "t": st.integers(k["T"] - 2, k["T"] + 2),
        "T": st.integers(k["t"] - 2, k["t"] + 2),
        **{
            f: st.one_of(
                st.decimals(allow_nan=True, allow_infinity=True).map(str),
                st.sampled_from(["-0", "-0.000", "0", k["h"], k["l"], "1e3", " 1.5"]),
            )
            for f in ("o", "h", "l", "c", "v")
        },
    }
    return st.sampled_from(sorted(by_key)).flatmap(
        lambda key: by_key[key].map(lambda value: {**k, key: value})
    )


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
