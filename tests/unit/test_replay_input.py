"""`cmon replay`'s input: candle files (both formats, detected), scenarios, and the
position simulation — pure code, no database."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core import intervals
from functions.core.backtest import Action, Bar, SimResult, simulate
from functions.core.contracts import CandleClosed, Market
from functions.core.errors import InvalidInput
from functions.core.models import Side
from functions.local.replay_input import load_scenario, parse_candles
from functions.local.replay_summary import compare

EVENTS = Path(__file__).resolve().parents[1] / "events" / "binance"


@pytest.mark.parametrize(
    "name", ["rest_api_v3_klines_doc_example.json", "rest_fapi_v1_klines_doc_example.json"]
)
def test_recorded_rest_klines_parse_with_symbol_and_interval(name: str) -> None:
    data = parse_candles((EVENTS / name).read_text(), symbol="btcusdt", interval="1w")
    assert data.format == "rest_klines"
    [c] = data.candles
    assert (c.symbol, c.interval) == ("BTCUSDT", "1w")
    assert c.open_time == datetime(2017, 7, 3, tzinfo=UTC)
    assert (c.open, c.high, c.low, c.close) == (
        Decimal("0.01634790"), Decimal("0.80000000"), Decimal("0.01575800"), Decimal("0.01577100"),
    )  # fmt: skip
    assert c.trades == 308


def test_rest_klines_need_symbol_and_interval() -> None:
    text = (EVENTS / "rest_api_v3_klines_doc_example.json").read_text()
    with pytest.raises(InvalidInput, match="--symbol and --interval"):
        parse_candles(text, symbol=None, interval="1w")
    with pytest.raises(InvalidInput, match="--symbol and --interval"):
        parse_candles(text, symbol="BTCUSDT", interval=None)


def _rows(n: int) -> list[list[object]]:
    start = 1761386400000
    return [
        [
            start + i * 60000,
            "100",
            "101",
            "99",
            "100.5",
            "1",
            start + i * 60000 + 59999,
            "1",
            3,
            "0",
            "0",
            "0",
        ]
        for i in range(n)
    ]


def test_a_malformed_rest_row_is_named_by_its_line() -> None:
    rows = _rows(3)
    rows[1][2] = "98"  # high below the open: not a candle
    text = "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"
    with pytest.raises(InvalidInput) as e:
        parse_candles(text, symbol="BTCUSDT", interval="1m")
    assert str(e.value).startswith("line 3 (row 2):")
    assert e.value.field == "line 3"


def test_broken_json_is_named_by_its_line() -> None:
    text = "[\n" + json.dumps(_rows(1)[0]) + ",\n[1, 2,\n"
    with pytest.raises(InvalidInput, match=r"^line 4: not JSON"):
        parse_candles(text, symbol="BTCUSDT", interval="1m")


def _candle(i: int, symbol: str = "BTCUSDT", interval: str = "1m") -> CandleClosed:
    open_ms = 1761386400000 + i * intervals.interval_ms(interval)
    return CandleClosed(
        symbol=symbol, interval=interval, open_time=intervals.from_ms(open_ms),
        close_time=intervals.from_ms(intervals.close_ms(open_ms, interval)),
        open=Decimal("100"), high=Decimal("101"), low=Decimal("99"), close=Decimal("100.5"),
        volume=Decimal("1"), trades=3,
    )  # fmt: skip


def test_candle_json_lines_are_detected_filtered_ordered_and_deduplicated() -> None:
    lines = [_candle(2), _candle(0), _candle(1, "ETHUSDT"), _candle(0), _candle(1)]
    text = "\n".join(json.dumps(c.to_detail()) for c in lines) + "\n\n"
    data = parse_candles(text, symbol="BTCUSDT", interval=None)
    assert data.format == "candle_jsonl"
    assert [c.open_time for c in data.candles] == [_candle(i).open_time for i in (0, 1, 2)]
    assert data.duplicates == 1
    everything = parse_candles(text, symbol=None, interval=None)
    assert {c.symbol for c in everything.candles} == {"BTCUSDT", "ETHUSDT"}


def test_a_bad_candle_line_is_named() -> None:
    good = json.dumps(_candle(0).to_detail())
    bad = json.dumps({**_candle(1).to_detail(), "trades": True})
    with pytest.raises(InvalidInput, match=r"^line 3: not a CandleClosed"):
        parse_candles("\n".join([good, "", bad]), symbol=None, interval=None)
    with pytest.raises(InvalidInput, match=r"^line 1: not a CandleClosed"):
        parse_candles(
            "[1]\n".replace("[", "{").replace("]", "}") if False else '"x"\n', symbol=None, interval=None
        )


def test_filters_that_leave_nothing_are_an_error() -> None:
    with pytest.raises(InvalidInput, match="no candles"):
        parse_candles(json.dumps(_candle(0).to_detail()), symbol="ETHUSDT", interval=None)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=20),
    interval=st.sampled_from([i for i in intervals.SUPPORTED if i != "1M"]),
    rest=st.booleans(),
)
def test_both_formats_round_trip(n: int, interval: str, rest: bool) -> None:
    candles = [_candle(i, interval=interval) for i in range(n)]
    if rest:
        rows = [
            [intervals.to_ms(c.open_time), "100", "101", "99", "100.5", "1", intervals.to_ms(c.close_time),
             "0", 3, "0", "0", "0"]
            for c in reversed(candles)
        ]  # fmt: skip
        parsed = parse_candles(json.dumps(rows), symbol="BTCUSDT", interval=interval, market=Market.SPOT)
        assert [(c.open_time, c.close) for c in parsed.candles] == [(c.open_time, c.close) for c in candles]
    else:
        text = "\n".join(json.dumps(c.to_detail()) for c in reversed(candles))
        assert parse_candles(text, symbol=None, interval=None).candles == candles


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_garbage_is_refused_with_our_error(text: str) -> None:
    with contextlib.suppress(InvalidInput):  # anything else (a crash, a pydantic error) fails
        parse_candles(text, symbol="BTCUSDT", interval="1m")


def test_a_scenario_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"signals": [{"name": "a", "at": -1}]}))
    with pytest.raises(InvalidInput, match=r"signals\.0\.at"):
        load_scenario(path)
    path.write_text(json.dumps({"signal": []}))
    with pytest.raises(InvalidInput, match="signal"):
        load_scenario(path)
    assert load_scenario(None).signals is None


# -- the position simulation ----------------------------------------------------------------------

T0 = datetime(2025, 10, 25, 10, 0, tzinfo=UTC)


def bars(*hlc: tuple[str, str, str]) -> list[Bar]:
    return [
        Bar(T0 + timedelta(minutes=i + 1), Decimal(h), Decimal(low), Decimal(c))
        for i, (h, low, c) in enumerate(hlc)
    ]


def run(
    side: Side, b: list[Bar], actions: dict[int, Action] | None = None, sl: str = "95", tp: str = "110"
) -> SimResult:
    return simulate(
        side=side, entry_time=T0, entry_price=Decimal(100), contracts=Decimal(2),
        stop_loss=Decimal(sl), take_profit=Decimal(tp), bars=b,
        actions={b[i].close_time: a for i, a in (actions or {}).items()},
    )  # fmt: skip


def test_a_long_hits_its_stop_by_the_low() -> None:
    result = run(Side.LONG, bars(("101", "99", "100"), ("100", "94.9", "96"), ("120", "90", "100")))
    assert (result.exit_reason, result.exit_price, result.realized_pnl) == (
        "stop_loss",
        Decimal(95),
        Decimal(-10),
    )
    assert result.events[-1].time == T0 + timedelta(minutes=2)


def test_a_long_hits_its_target_by_the_high_and_a_tie_goes_to_the_stop() -> None:
    assert run(Side.LONG, bars(("110", "99", "105"))).exit_reason == "take_profit"
    assert run(Side.LONG, bars(("110", "99", "105"))).realized_pnl == Decimal(20)
    assert run(Side.LONG, bars(("111", "95", "105"))).exit_reason == "stop_loss"


def test_a_short_is_mirrored() -> None:
    result = run(Side.SHORT, bars(("101", "89", "90")), sl="105", tp="90")
    assert (result.exit_reason, result.realized_pnl) == ("take_profit", Decimal(20))
    result = run(Side.SHORT, bars(("105", "99", "104")), sl="105", tp="90")
    assert (result.exit_reason, result.realized_pnl) == ("stop_loss", Decimal(-10))


def test_actions_move_levels_reduce_and_close_at_the_close() -> None:
    b = bars(("102", "99", "101"), ("103", "99.5", "102"), ("104", "101", "103"), ("104", "101", "102"))
    actions = {0: Action("adjust_sl", {"stop_loss": "99.6"}), 2: Action("reduce", {"fraction": "0.5"}),
               3: Action("close")}  # fmt: skip
    result = run(Side.LONG, b, actions)
    # The new stop (99.6) applies from the next candle: its low 99.5 stops the position.
    assert [e.kind for e in result.events] == ["entry", "adjust_sl", "stop_loss"]
    assert [e.time for e in result.events[1:]] == [b[0].close_time, b[1].close_time]
    assert result.realized_pnl == Decimal("-0.8")
    later = run(Side.LONG, b, {2: Action("reduce", {"fraction": "0.5"}), 3: Action("close")})
    assert [e.kind for e in later.events] == ["entry", "reduce", "close"]
    assert later.realized_pnl == Decimal(3) + Decimal(2)  # 1 at 103, then 1 at 102
    held = run(Side.LONG, b[:2])
    assert (held.exit_reason, held.open_contracts, held.unrealized_pnl) == (None, Decimal(2), Decimal(4))


def _summary(timeline: list[dict[str, object]], tokens: int, pnl: str, sha: str = "x") -> dict[str, object]:
    return {
        "version": 1,
        "input": {"candles_sha256": sha},
        "candles": {"total": 3},
        "timeline": timeline,
        "tokens": {"total": tokens, "estimated_usd": tokens / 1000 * 0.0005},
        "pnl": {"total": pnl},
    }


def test_compare_counts_agreement_and_deltas() -> None:
    def e(t: str, d: str) -> dict[str, object]:
        return {"kind": "analysis", "entity": "s", "candle_time": t, "decision": d}

    a = _summary([e("t1", "wait"), e("t2", "wait"), e("t3", "enter_trade")], 3300, "1.5")
    b = _summary([e("t1", "wait"), e("t2", "enter_trade")], 2200, "-0.5")
    result = compare(a, b)
    assert result["decisions"] == {
        "compared": 2, "agree": 1, "agreement": 0.5, "only_in_a": 1, "only_in_b": 0,
        "differences": [
            {"kind": "analysis", "entity": "s", "candle_time": "t2", "a": "wait", "b": "enter_trade"}
        ],
    }  # fmt: skip
    assert result["tokens"]["delta"] == -1100
    assert result["pnl"]["delta"] == "-2"
    with pytest.raises(InvalidInput, match="same candles"):
        compare(a, _summary([], 0, "0", sha="other"))
    with pytest.raises(InvalidInput, match="not a `cmon replay --json`"):
        compare(a, {"version": 1})
