"""Guardrails: what the LLM may do to a position, judged at the candle's close.

Property tests over random positions and prices (all `Decimal`), plus the cases the
issue names explicitly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.backtest import realized_pnl
from functions.core.guardrails import (
    GuardrailConfig,
    PaperFill,
    Verdict,
    check_action,
    paper_fill,
    parse_price,
)
from functions.core.models import Action, PositionSnapshot, Side
from functions.core.vocabulary import RejectionReason

POSITION_ID = UUID("00000000-0000-4000-8000-000000000001")
LOOSE = GuardrailConfig(allow_sl_loosening=True)
STRICT = GuardrailConfig()

# Prices on a coarse grid so that equal values (ties with the price, the current SL,
# the candle's low/high) come up often; what matters is order, not magnitude.
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200"), places=2)
sizes = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000"), places=8)
sides = st.sampled_from(list(Side))


@st.composite
def positions(draw: st.DrawFn, side: Side | None = None) -> PositionSnapshot:
    return PositionSnapshot(
        id=POSITION_ID,
        side=draw(sides) if side is None else side,
        entry_price=draw(prices),
        contracts=draw(sizes),
        stop_loss=draw(st.none() | prices),
        take_profit=draw(st.none() | prices),
    )


def pos(
    side: Side = Side.LONG,
    *,
    entry: str = "100",
    contracts: str = "2",
    sl: str | None = None,
    tp: str | None = None,
    status: str = "open",
) -> PositionSnapshot:
    return PositionSnapshot(
        id=POSITION_ID,
        side=side,
        entry_price=Decimal(entry),
        contracts=Decimal(contracts),
        stop_loss=None if sl is None else Decimal(sl),
        take_profit=None if tp is None else Decimal(tp),
        status=status,
    )


def as_param(value: Decimal, form: str) -> Any:
    """A price as llm-proxy may send it: a string, a JSON number (int/float) or a Decimal."""
    if form == "str":
        return str(value)
    if form == "float":
        return float(value)
    return value


param_forms = st.sampled_from(["str", "float", "decimal"])


# --- the cases ------------------------------------------------------------------


def test_long_stop_loss_moved_down_is_rejected() -> None:
    verdict = check_action("adjust_sl", {"stop_loss": "95"}, pos(sl="97"), Decimal("105"))
    assert verdict == Verdict(action="adjust_sl", apply=False, reason=RejectionReason.STOP_LOSS_LOOSENED)


def test_short_stop_loss_moved_up_is_rejected() -> None:
    verdict = check_action("adjust_sl", {"stop_loss": "106"}, pos(Side.SHORT, sl="104"), Decimal("100"))
    assert not verdict.apply
    assert verdict.reason == "stop_loss_loosened"


def test_long_stop_loss_moved_down_is_applied_when_loosening_is_allowed() -> None:
    verdict = check_action("adjust_sl", {"stop_loss": "95"}, pos(sl="97"), Decimal("105"), LOOSE)
    assert verdict.apply
    assert verdict.stop_loss == Decimal("95")


def test_long_stop_loss_tightened_is_applied_with_the_new_level() -> None:
    verdict = check_action("adjust_sl", {"stop_loss": "99.50"}, pos(sl="97"), Decimal("105"))
    assert verdict == Verdict(action="adjust_sl", apply=True, stop_loss=Decimal("99.50"))


@pytest.mark.parametrize("new_sl", ["110", "105"])
def test_long_stop_loss_at_or_above_the_price_is_rejected(new_sl: str) -> None:
    verdict = check_action("adjust_sl", {"stop_loss": new_sl}, pos(sl="97"), Decimal("105"), LOOSE)
    assert not verdict.apply
    assert verdict.reason == "stop_loss_on_wrong_side_of_price"


@pytest.mark.parametrize("new_sl", ["90", "100"])
def test_short_stop_loss_at_or_below_the_price_is_rejected(new_sl: str) -> None:
    verdict = check_action("adjust_sl", {"stop_loss": new_sl}, pos(Side.SHORT), Decimal("100"), LOOSE)
    assert not verdict.apply
    assert verdict.reason == "stop_loss_on_wrong_side_of_price"


@pytest.mark.parametrize("new_tp", ["95", "105"])
def test_long_take_profit_at_or_below_the_price_is_rejected(new_tp: str) -> None:
    verdict = check_action("adjust_tp", {"take_profit": new_tp}, pos(tp="120"), Decimal("105"))
    assert not verdict.apply
    assert verdict.reason == "take_profit_on_wrong_side_of_price"


def test_short_take_profit_above_the_price_is_rejected() -> None:
    verdict = check_action("adjust_tp", {"take_profit": "101"}, pos(Side.SHORT), Decimal("100"))
    assert not verdict.apply
    assert verdict.reason == "take_profit_on_wrong_side_of_price"


def test_take_profit_beyond_the_price_is_applied() -> None:
    long_v = check_action("adjust_tp", {"take_profit": "130"}, pos(tp="120"), Decimal("105"))
    short_v = check_action("adjust_tp", {"take_profit": "80"}, pos(Side.SHORT, tp="90"), Decimal("100"))
    assert long_v == Verdict(action="adjust_tp", apply=True, take_profit=Decimal("130"))
    assert short_v == Verdict(action="adjust_tp", apply=True, take_profit=Decimal("80"))


@pytest.mark.parametrize("fraction", [1.5, "1.5", "abc", 1, "1", "1.0", 0, "0", -0.5, None, True])
def test_reduce_with_a_fraction_outside_0_1_is_rejected(fraction: Any) -> None:
    verdict = check_action("reduce", {"fraction": fraction}, pos(), Decimal("100"))
    assert not verdict.apply
    assert verdict.reason == "reduce_fraction_out_of_range"
    assert verdict.fraction is None


def test_reduce_half_is_applied() -> None:
    verdict = check_action("reduce", {"fraction": "0.5"}, pos(), Decimal("100"))
    assert verdict == Verdict(action="reduce", apply=True, fraction=Decimal("0.5"))


@pytest.mark.parametrize("action", ["hold", "close"])
def test_hold_and_close_apply_to_an_open_position_whatever_the_params(action: str) -> None:
    verdict = check_action(action, {"junk": float("nan")}, pos(), Decimal("100"))
    assert verdict == Verdict(action=action, apply=True)


@pytest.mark.parametrize("action", [a.value for a in Action])
def test_nothing_applies_to_a_closed_position(action: str) -> None:
    params = {"stop_loss": "99", "take_profit": "120", "fraction": "0.5"}
    verdict = check_action(action, params, pos(status="closed"), Decimal("105"))
    assert not verdict.apply
    assert verdict.reason == "position_not_open"


# --- properties: adjust_sl --------------------------------------------------------------


@st.composite
def sl_levels(draw: st.DrawFn, position: PositionSnapshot, price: Decimal) -> Decimal:
    """A proposed stop-loss, often exactly at the price or at the current stop."""
    anchors = [price] + ([position.stop_loss] if position.stop_loss is not None else [])
    return draw(st.sampled_from(anchors) | prices)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), position=positions(), price=prices, form=param_forms, loose=st.booleans())
def test_adjust_sl_applies_exactly_when_below_price_and_not_loosened(
    data: st.DataObject, position: PositionSnapshot, price: Decimal, form: str, loose: bool
) -> None:
    new_sl = data.draw(sl_levels(position, price))
    config = LOOSE if loose else STRICT
    verdict = check_action("adjust_sl", {"stop_loss": as_param(new_sl, form)}, position, price, config)

    current = position.stop_loss
    if position.side is Side.LONG:
        right_side = new_sl < price
        tightened = current is None or new_sl >= current
    else:
        right_side = new_sl > price
        tightened = current is None or new_sl <= current

    assert verdict.apply == (right_side and (loose or tightened))
    if verdict.apply:
        assert verdict.stop_loss == new_sl
        assert verdict.take_profit is None and verdict.fraction is None
        assert verdict.reason is None
        # The invariant itself, stated once more without the helper variables.
        if position.side is Side.LONG:
            assert verdict.stop_loss < price
            assert loose or current is None or verdict.stop_loss >= current
        else:
            assert verdict.stop_loss > price
            assert loose or current is None or verdict.stop_loss <= current
    else:
        assert verdict.reason in ("stop_loss_on_wrong_side_of_price", "stop_loss_loosened")
        assert verdict.stop_loss is None


@settings(max_examples=100, deadline=None)
@given(position=positions(), price=prices, new_tp=prices, form=param_forms)
def test_adjust_tp_applies_exactly_when_beyond_the_price(
    position: PositionSnapshot, price: Decimal, new_tp: Decimal, form: str
) -> None:
    verdict = check_action("adjust_tp", {"take_profit": as_param(new_tp, form)}, position, price)
    beyond = new_tp > price if position.side is Side.LONG else new_tp < price
    assert verdict.apply == beyond
    if verdict.apply:
        assert verdict.take_profit == new_tp
        assert verdict.stop_loss is None
    else:
        assert verdict.reason == "take_profit_on_wrong_side_of_price"


# --- properties: reduce -----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    position=positions(),
    price=prices,
    fraction=st.decimals(min_value=Decimal("-2"), max_value=Decimal("3"), places=4),
    form=param_forms,
)
def test_reduce_applies_only_for_fractions_strictly_between_0_and_1(
    position: PositionSnapshot, price: Decimal, fraction: Decimal, form: str
) -> None:
    verdict = check_action("reduce", {"fraction": as_param(fraction, form)}, position, price)
    assert verdict.apply == (0 < fraction < 1)
    if verdict.apply:
        assert verdict.fraction == fraction
        assert position.contracts - position.contracts * fraction > 0
    else:
        assert verdict.reason == "reduce_fraction_out_of_range"


@settings(max_examples=50, deadline=None)
@given(
    position=positions(),
    fraction=st.decimals(
        min_value=Decimal("0.00000000000000000000000000001"),  # 1e-29: within plausible prices
        max_value=Decimal("0.999999999999999999999999999999999"),
        places=33,
    ),
)
def test_an_applied_reduce_always_leaves_a_positive_size(
    position: PositionSnapshot, fraction: Decimal
) -> None:
    # 33 places is more than the decimal context's 28 digits: the product may round up to
    # the whole size, which must then be refused rather than reduce the position to zero.
    verdict = check_action("reduce", {"fraction": str(fraction)}, position, Decimal("100"))
    if verdict.apply:
        assert verdict.fraction is not None
        assert position.contracts - position.contracts * verdict.fraction > 0
    else:
        assert verdict.reason == "reduce_leaves_no_size"


# --- properties: malformed parameters and unknown actions -------------------------------

BAD_VALUES: list[Any] = [
    None,
    True,
    False,
    "abc",
    "",
    "   ",
    "NaN",
    "nan",
    "sNaN",
    "inf",
    "-inf",
    "Infinity",
    "-1",
    "-0.5",
    0,
    "0",
    "0.0",
    -1,
    0.0,
    -0.0,
    -2.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("-Infinity"),
    Decimal("0"),
    {"value": "100"},
    {},
    [100],
    [],
    "1e9999999999999999999",
    10**5000,  # str() of it raises ValueError (int max str digits) inside parse_price
]


def _value_id(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return "huge_int"
    return repr(value)[:20]


PARAM_OF = {"adjust_sl": "stop_loss", "adjust_tp": "take_profit", "reduce": "fraction"}
UNPARSABLE_REASON = {
    "adjust_sl": "invalid_stop_loss",
    "adjust_tp": "invalid_take_profit",
    "reduce": "reduce_fraction_out_of_range",
}


@pytest.mark.parametrize("action", sorted(PARAM_OF))
@pytest.mark.parametrize("value", BAD_VALUES, ids=_value_id)
def test_a_non_positive_or_non_numeric_param_is_rejected_with_a_reason(action: str, value: Any) -> None:
    verdict = check_action(action, {PARAM_OF[action]: value}, pos(sl="90", tp="120"), Decimal("100"), LOOSE)
    assert not verdict.apply
    assert verdict.reason in {"invalid_stop_loss", "invalid_take_profit", "reduce_fraction_out_of_range"}
    assert verdict.stop_loss is None and verdict.take_profit is None and verdict.fraction is None


@pytest.mark.parametrize("action", sorted(PARAM_OF))
def test_a_missing_param_is_rejected(action: str) -> None:
    verdict = check_action(action, {"something_else": "100"}, pos(), Decimal("100"))
    assert not verdict.apply
    assert verdict.reason == UNPARSABLE_REASON[action]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.decimals(allow_nan=True, allow_infinity=True)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(action=st.sampled_from(sorted(PARAM_OF)), value=json_values, position=positions(), price=prices)
def test_check_action_never_raises_for_any_param_value(
    action: str, value: Any, position: PositionSnapshot, price: Decimal
) -> None:
    verdict = check_action(action, {PARAM_OF[action]: value}, position, price)
    assert isinstance(verdict, Verdict)
    assert verdict.apply or verdict.reason
    if parse_price(value) is None:
        assert not verdict.apply
        assert verdict.reason == UNPARSABLE_REASON[action]


@settings(max_examples=100, deadline=None)
@given(
    action=st.text(max_size=20).filter(lambda s: s not in {a.value for a in Action})
    | st.sampled_from(["HOLD", "Close", " hold", "adjust-sl", "adjust_sl ", "reduce_all", ""]),
    params=st.dictionaries(
        st.sampled_from(["stop_loss", "take_profit", "fraction", "x"]), prices, max_size=2
    ),
    position=positions(),
)
def test_an_unknown_action_is_rejected_as_unknown_action(
    action: str, params: dict[str, Any], position: PositionSnapshot
) -> None:
    verdict = check_action(action, params, position, Decimal("100"))
    assert verdict == Verdict(action=action, apply=False, reason=RejectionReason.UNKNOWN_ACTION)


# --- parse_price ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_parse_price_never_raises_and_returns_a_positive_finite_decimal_or_none(value: Any) -> None:
    result = parse_price(value)
    if result is not None:
        assert isinstance(result, Decimal)
        assert result.is_finite()
        assert result > 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, Decimal("0.1")),
        (0.00150000, Decimal("0.0015")),
        (64215.1, Decimal("64215.1")),
        (1e-8, Decimal("1E-8")),
        ("0.00150000", Decimal("0.00150000")),
        (" 42.5 ", Decimal("42.5")),
        (7, Decimal("7")),
        (Decimal("1E-8"), Decimal("0.00000001")),
    ],
)
def test_parse_price_keeps_the_written_decimal(value: Any, expected: Decimal) -> None:
    result = parse_price(value)
    assert result == expected
    if isinstance(value, float):
        # not the binary expansion 0.1000000000000000055511151231257827...
        assert result is not None and result.as_tuple() == expected.as_tuple()


@settings(deadline=None)
@given(value=st.floats(min_value=1e-30, max_value=9e30, allow_nan=False, allow_infinity=False))
def test_parse_price_of_a_positive_float_is_its_shortest_repr(value: float) -> None:
    assert parse_price(value) == Decimal(repr(value))


@settings(deadline=None)
@given(value=st.decimals(min_value=Decimal("1E-12"), max_value=Decimal("1E+12"), places=12))
def test_parse_price_of_a_decimal_string_is_that_decimal(value: Decimal) -> None:
    assert parse_price(str(value)) == value
    assert parse_price(format(value, "f")) == value


# --- paper execution --------------------------------------------------------------------


@st.composite
def candle_ranges(draw: st.DrawFn, position: PositionSnapshot) -> tuple[Decimal, Decimal]:
    """A (low, high) with low <= high, often touching the position's levels exactly."""
    levels = [lv for lv in (position.stop_loss, position.take_profit) if lv is not None]
    point = st.sampled_from(levels) | prices if levels else prices
    a, b = draw(point), draw(point)
    return min(a, b), max(a, b)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), position=positions())
def test_paper_fill_fills_at_the_crossed_level_and_the_stop_wins_a_tie(
    data: st.DataObject, position: PositionSnapshot
) -> None:
    low, high = data.draw(candle_ranges(position))
    sl, tp = position.stop_loss, position.take_profit
    if position.side is Side.LONG:
        sl_crossed = sl is not None and low <= sl
        tp_crossed = tp is not None and high >= tp
    else:
        sl_crossed = sl is not None and high >= sl
        tp_crossed = tp is not None and low <= tp

    fill = paper_fill(position, low, high)
    if sl_crossed:
        assert sl is not None
        assert fill == PaperFill(exit_price=sl, reason="stop_loss")
    elif tp_crossed:
        assert tp is not None
        assert fill == PaperFill(exit_price=tp, reason="take_profit")
    else:
        assert fill is None


@pytest.mark.parametrize(
    ("side", "low", "high", "expected"),
    [
        # long, SL 95, TP 110
        (Side.LONG, "96", "109", None),
        (Side.LONG, "95", "100", PaperFill(Decimal("95"), "stop_loss")),
        (Side.LONG, "90", "94", PaperFill(Decimal("95"), "stop_loss")),  # gap below the stop
        (Side.LONG, "100", "110", PaperFill(Decimal("110"), "take_profit")),
        (Side.LONG, "111", "115", PaperFill(Decimal("110"), "take_profit")),  # gap above the target
        (Side.LONG, "94", "111", PaperFill(Decimal("95"), "stop_loss")),  # both: the stop wins
        # short, SL 110, TP 95
        (Side.SHORT, "96", "109", None),
        (Side.SHORT, "100", "110", PaperFill(Decimal("110"), "stop_loss")),
        (Side.SHORT, "95", "100", PaperFill(Decimal("95"), "take_profit")),
        (Side.SHORT, "94", "111", PaperFill(Decimal("110"), "stop_loss")),
    ],
)
def test_paper_fill_examples(side: Side, low: str, high: str, expected: PaperFill | None) -> None:
    sl, tp = ("95", "110") if side is Side.LONG else ("110", "95")
    assert paper_fill(pos(side, sl=sl, tp=tp), Decimal(low), Decimal(high)) == expected


@pytest.mark.parametrize("side", list(Side))
def test_paper_fill_without_levels_never_fills(side: Side) -> None:
    assert paper_fill(pos(side), Decimal("0.01"), Decimal("1000000")) is None


# --- realized PnL -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(side=sides, entry=prices, exit_price=prices, contracts=sizes)
def test_realized_pnl_sign_follows_the_side(
    side: Side, entry: Decimal, exit_price: Decimal, contracts: Decimal
) -> None:
    pnl = realized_pnl(side, entry, exit_price, contracts)
    assert isinstance(pnl, Decimal)
    direction = (exit_price > entry) - (exit_price < entry)  # +1 up, -1 down, 0 flat
    expected_sign = direction if side is Side.LONG else -direction
    assert (pnl > 0) - (pnl < 0) == expected_sign
    assert pnl == -realized_pnl(Side.SHORT if side is Side.LONG else Side.LONG, entry, exit_price, contracts)
    assert abs(pnl) == abs(exit_price - entry) * contracts


def test_realized_pnl_examples() -> None:
    assert realized_pnl(Side.LONG, Decimal("100"), Decimal("110"), Decimal("0.5")) == Decimal("5")
    assert realized_pnl(Side.SHORT, Decimal("100"), Decimal("110"), Decimal("0.5")) == Decimal("-5")
    assert realized_pnl(Side.SHORT, Decimal("64215.10"), Decimal("64000"), Decimal("0.0015")) == Decimal(
        "0.322650"
    )
    assert realized_pnl(Side.LONG, Decimal("1"), Decimal("1"), Decimal("1")) == 0


@pytest.mark.parametrize("value", ["1e999999999999999999", "1e-999999999", "١٢", "1E+31"])
def test_parse_price_refuses_implausible_or_non_ascii_numbers(value: str) -> None:
    assert parse_price(value) is None


@pytest.mark.parametrize(
    ("action", "params", "position", "reason"),
    [
        ("adjust_sl", {"stop_loss": "99"}, pos(status="closed"), "position_not_open"),
        ("adjust_sl", {"stop_loss": "abc"}, pos(), "invalid_stop_loss"),
        ("adjust_tp", {"take_profit": None}, pos(), "invalid_take_profit"),
        ("adjust_tp", {"take_profit": "90"}, pos(), "take_profit_on_wrong_side_of_price"),
        ("reduce", {"fraction": "2"}, pos(), "reduce_fraction_out_of_range"),
    ],
)
def test_a_rejection_keeps_the_action_it_rejects(
    action: str, params: dict[str, Any], position: PositionSnapshot, reason: str
) -> None:
    """The rejected action is what `management_decisions.action` records (not null)."""
    verdict = check_action(action, params, position, Decimal("105"))
    assert (verdict.action, verdict.apply, verdict.reason) == (action, False, reason)
