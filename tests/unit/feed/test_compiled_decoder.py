"""The compiled closed-kline decoder (feed_service/_kline.c) against the reference.

Its one promise: for any text it answers what `json.loads` + `CandleClosed`'s validation
decide (through `KlineParser.parse`), or None, and then the Python paths decide. Here
that is checked on generated, junk and rule-breaking frames, on Binance's own layout
(where it must decide, not step aside), on prices equal or apart by their value, not
their spelling, and on its references (a leak would grow the feed for weeks).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from feed_service.binance import OPEN_FRAME, KlineParser
from feed_service.venue import Frame, FrameKind
from functions.core.contracts import CandleClosed, Market
from tests.unit.feed.frames import recorded_frames
from tests.unit.feed.test_binance_parser import (
    REFERENCE,
    STRUCTURAL_ODDITIES,
    _closed_text,
    _same_as_reference,
    _text_outcome,
    checked_texts,
    kline_frames,
)

COMPILED = KlineParser(Market.SPOT)
pytestmark = pytest.mark.skipif(
    not COMPILED.compiled and os.environ.get("CMON_REQUIRE_COMPILED") != "1",
    reason="feed_service._kline is not built here (no C compiler at install): the Python path decides alone",
)


def decode(text: str) -> Frame | None:
    assert COMPILED._compiled is not None
    return COMPILED._compiled(text)


def test_the_compiled_decoder_is_built_here_and_from_this_source() -> None:
    """`.ci/run` sets CMON_REQUIRE_COMPILED=1: there, a build that silently fell back to
    the Python path fails instead of being skipped. In a checkout, a module older than
    its source is a failed rebuild (setuptools keeps the old one and says little)."""
    assert COMPILED.compiled
    assert not KlineParser(Market.SPOT, compiled=False).compiled
    from feed_service import _kline

    built = Path(_kline.__file__)
    source = built.parent / "_kline.c"
    if source.exists():
        assert built.stat().st_mtime >= source.stat().st_mtime, "rebuild: pip install -e '.[dev]'"


def _agrees(text: str) -> Frame | None:
    """The decoder's answer, checked against the reference when it is not None."""
    decided = decode(text)
    if decided is not None:
        kind, candle = _text_outcome(REFERENCE, text)
        assert (decided.kind.value, decided.candle) == (kind, candle), text
        if decided.candle is not None:
            assert candle is not None and decided.candle.to_detail() == candle.to_detail()
            assert decided.candle.__pydantic_fields_set__ == candle.__pydantic_fields_set__
    return decided


# Prices as Binance writes them (plain digits, its fixed scale), and spellings of the
# same value the decoder must compare by value: trailing and leading zeros.
_plain = st.decimals(
    min_value=0, max_value=Decimal("99999999"), places=8, allow_nan=False, allow_infinity=False
)


@st.composite
def binance_prices(draw: st.DrawFn) -> list[str]:
    values = sorted(draw(st.lists(_plain, min_size=5, max_size=5)))
    low, high, volume = values[0], values[4], values[2]
    open_, close = draw(st.permutations([values[1], values[3]]))

    def spell(value: Decimal) -> str:
        value = value.copy_abs()  # no "-0": a sign is the Python path's
        text = f"{value:.8f}" if draw(st.booleans()) else format(value.normalize(), "f")
        return "0" * draw(st.integers(0, 2)) + text if draw(st.integers(0, 5)) == 0 else text

    return [spell(v) for v in (open_, high, low, close, volume)]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_binance_sends_is_decided_by_the_decoder_as_the_reference_does(data: st.DataObject) -> None:
    message, k = data.draw(kline_frames())
    assume(k["t"] >= 0 and k["T"] < 4_000_000_000_000)  # outside, the Python path converts times
    k["o"], k["h"], k["l"], k["c"], k["v"] = data.draw(binance_prices())
    k["x"] = True
    text = json.dumps(message, separators=(",", ":"))
    decided = _agrees(text)
    assert decided is not None and decided.kind is FrameKind.CANDLE_CLOSED, text  # not stepped aside
    k["x"] = False
    assert decode(json.dumps(message, separators=(",", ":"))) is OPEN_FRAME


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_frame_is_decided_as_the_reference_does_or_left_to_python(data: st.DataObject) -> None:
    text = data.draw(checked_texts(binance_prices()))
    _agrees(text)
    _same_as_reference(text, KlineParser(Market.SPOT))


@pytest.mark.parametrize("text", STRUCTURAL_ODDITIES)
def test_structural_oddities_are_decided_as_the_reference_does_or_left_to_python(text: str) -> None:
    _agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        _closed_text(h="0.0025").replace('"h":"0.0025"', '"h":"0.0001","h":"0.0025"'),  # a read key twice
        _closed_text().replace('"s":"BNBBTC","i"', '"s":"BNB\\u0042TC","i"'),  # an escape in a read value
        _closed_text().replace('"\\u0069":', '"i":').replace('"i":"1m"', '"\\u0069":"1m"'),  # in a key
        _closed_text().replace('"B":"', '"B":"\ud800'),  # a lone surrogate
        '{"result":null,"id":1}',
        _closed_text().replace('"stream":"bnbbtc@kline_1m",', '"id":7,"stream":"bnbbtc@kline_1m",'),
        _closed_text(h="NaN"),
        _closed_text(o="1e-3"),
        _closed_text(o=" 0.0010"),
        _closed_text(o="-0"),
        _closed_text(h="0.0001"),  # high below open: refused, by the Python path
        _closed_text(t=4_000_000_000_000, T=4_000_000_059_999),
        _closed_text(n=-1),
        _closed_text(i="7m"),
        _closed_text(s="bnbbtc"),
        json.dumps(json.loads(_closed_text()), indent=1).replace('"x": true', '"x": false'),  # open, spaced
        _closed_text() + "x",
    ],
)
def test_what_it_does_not_decide_it_leaves_to_python(text: str) -> None:
    assert decode(text) is None
    _same_as_reference(text, KlineParser(Market.SPOT))


@pytest.mark.parametrize(
    ("prices", "decided"),
    [
        # (open, high, low, close): equal values spelled apart, and values a unit apart.
        (("1.50", "1.5", "01.5", "1.500"), True),
        (("7", "7.0", "7.00000000", "007"), True),
        (("0.00000001", "0.00000002", "0", "0.00000001"), True),
        (("100", "100.00000001", "99.99999999", "100"), True),
        (("100", "99.99999999", "99", "99.5"), False),  # high below open
        (("100.00000001", "101", "100.00000002", "101"), False),  # low above open
        (("10", "10", "9", "10.000000000000000000000000000001"), False),  # close above high
        (("9", "10", "9.0000000000000000000000000000001", "10"), False),  # low above open
    ],
)
def test_the_bracketing_compares_values_not_spellings(
    prices: tuple[str, str, str, str], decided: bool
) -> None:
    o, h, lo, c = prices
    text = _closed_text(o=o, h=h, l=lo, c=c)
    outcome = _agrees(text)
    assert (outcome is not None) is decided
    _same_as_reference(text, KlineParser(Market.SPOT))


def test_the_recorded_open_frames_are_the_shared_open_frame() -> None:
    assert all(decode(frame) is OPEN_FRAME for frame in recorded_frames())


def test_bytes_and_other_types_are_not_its_to_decide() -> None:
    with pytest.raises(TypeError):
        decode(b"{}")  # type: ignore[arg-type]
    assert COMPILED.parse(_closed_text().encode()).kind is FrameKind.CANDLE_CLOSED  # parse decodes first
    from feed_service._kline import ClosedKlineDecoder

    with pytest.raises(RuntimeError, match="not initialised"):  # not a crash
        ClosedKlineDecoder.__new__(ClosedKlineDecoder).decode("{}")


def test_it_holds_no_reference_it_should_not() -> None:
    """Refcounts of the shared objects stay put, and 20,000 decoded frames, dropped,
    leave no memory behind (a leaked Decimal or dict per frame would show as MBs)."""
    texts = [_closed_text(s=f"S{i % 50:03d}", v=f"{i}.5", n=i) for i in range(2_000)]
    assert all(decode(t) is not None for t in texts)
    shared: list[Any] = [OPEN_FRAME, FrameKind.CANDLE_CLOSED, "1m", Market.SPOT, CandleClosed]
    shared.append(COMPILED._template)
    before = [sys.getrefcount(obj) for obj in shared]
    for _ in range(3):
        for text in texts:
            decode(text)
    assert [sys.getrefcount(obj) for obj in shared] == before
    gc.collect()
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(10):
        for text in texts:
            decode(text)
    gc.collect()
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert end - start < 64 * 1024, end - start
