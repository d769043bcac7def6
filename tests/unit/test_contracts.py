"""Wire contracts: the CandleClosed detail and the AnalysisJob SQS message."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from functions.core import intervals
from functions.core.contracts import (
    DETAIL_TYPE,
    EVENT_SOURCE,
    AnalysisJob,
    CandleClosed,
    CandleSource,
    JobKind,
    Market,
    WorkflowType,
    format_time,
)
from functions.core.models import Decision, ManagementAnswer, SetupAnswer, Side, TradePlan

CONTRACT_EXAMPLE: dict[str, Any] = {
    "version": 1,
    "exchange": "binance",
    "market": "spot",
    "symbol": "BTCUSDT",
    "interval": "1m",
    "open_time": "2025-10-25T10:29:00Z",
    "close_time": "2025-10-25T10:29:59.999Z",
    "open": "64210.10",
    "high": "64250.00",
    "low": "64190.00",
    "close": "64231.50",
    "volume": "12.345",
    "trades": 812,
    "source": "stream",
}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PLAIN_DECIMAL_RE = re.compile(r"^\d+(\.\d+)?$")
PRICE_FIELDS = ("open", "high", "low", "close", "volume")
WORKFLOW = UUID("11111111-2222-4333-8444-555555555555")


def example(**changes: Any) -> dict[str, Any]:
    return CONTRACT_EXAMPLE | changes


# Any exponent: 5E+3, 1E-8, 64210.10 ... prices must still come out as plain decimal strings.
amounts = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(min_value=0, max_value=10**40),  # beyond the 28-digit decimal context
    st.integers(min_value=-18, max_value=8),
)


@st.composite
def candles(draw: st.DrawFn) -> CandleClosed:
    interval = draw(st.sampled_from(intervals.SUPPORTED))
    opened = intervals.open_time_of(draw(st.integers(0, 4_102_444_800_000)), interval)
    a, b, c, d = (draw(amounts) for _ in range(4))
    low, o, cl, high = sorted([a, b, c, d])
    if draw(st.booleans()):
        o, cl = cl, o
    return CandleClosed(
        market=draw(st.sampled_from(list(Market))),
        symbol=draw(st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True)),
        interval=interval,
        open_time=intervals.from_ms(opened),
        close_time=intervals.from_ms(intervals.close_ms(opened, interval)),
        open=o,
        high=high,
        low=low,
        close=cl,
        volume=draw(amounts),
        trades=draw(st.integers(min_value=0, max_value=10**9)),
        source=draw(st.sampled_from(list(CandleSource))),
    )


@settings(max_examples=150, deadline=None)
@given(candle=candles())
def test_candle_round_trips_through_json_unchanged(candle: CandleClosed) -> None:
    detail = candle.to_detail()
    text = json.dumps(detail)
    back = CandleClosed.model_validate(json.loads(text))
    assert back == candle
    assert back.to_detail() == detail
    for name in PRICE_FIELDS:
        assert isinstance(detail[name], str)
        assert PLAIN_DECIMAL_RE.match(detail[name]), detail[name]
        assert Decimal(detail[name]) == getattr(candle, name)
    for name in ("open_time", "close_time"):
        assert TIME_RE.match(detail[name]), detail[name]
    assert back.open_time == candle.open_time and back.close_time == candle.close_time
    assert intervals.to_ms(back.close_time) == intervals.close_ms(
        intervals.to_ms(back.open_time), back.interval
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("5E+3"), "5000"),
        (Decimal("0.00150000"), "0.00150000"),
        (Decimal("64210.10"), "64210.10"),
        (Decimal("0E-8"), "0.00000000"),
        (Decimal("1.2345678901234567890123456789E-12"), "0.0000000000012345678901234567890123456789"),
    ],
)
def test_prices_serialise_as_plain_decimal_strings(value: Decimal, text: str) -> None:
    candle = CandleClosed.model_validate(example(low=str(value), open=str(value), volume=str(value)))
    detail = candle.to_detail()
    assert detail["low"] == text
    assert detail["open"] == text
    assert detail["volume"] == text
    assert all(PLAIN_DECIMAL_RE.match(detail[name]) for name in PRICE_FIELDS)
    assert CandleClosed.model_validate(json.loads(json.dumps(detail))).low == value


def test_the_contract_example_validates_and_serialises_as_documented() -> None:
    candle = CandleClosed.model_validate(CONTRACT_EXAMPLE)
    assert (EVENT_SOURCE, DETAIL_TYPE) == ("cmon.feed", "CandleClosed")
    assert candle.close == Decimal("64231.50")
    assert candle.open_time == datetime(2025, 10, 25, 10, 29, tzinfo=UTC)
    assert candle.close_time == datetime(2025, 10, 25, 10, 29, 59, 999_000, tzinfo=UTC)
    assert candle.stream_key == ("binance", "spot", "BTCUSDT", "1m")
    detail = candle.to_detail()
    assert detail == example(open_time="2025-10-25T10:29:00.000Z")
    assert CandleClosed.model_validate_json(json.dumps(CONTRACT_EXAMPLE)) == candle


def test_times_are_normalised_to_utc_with_milliseconds() -> None:
    candle = CandleClosed.model_validate(
        example(open_time="2025-10-25T12:29:00+02:00", close_time="2025-10-25T06:29:59.999-04:00")
    )
    detail = candle.to_detail()
    assert detail["open_time"] == "2025-10-25T10:29:00.000Z"
    assert detail["close_time"] == "2025-10-25T10:29:59.999Z"
    assert format_time(datetime(2025, 1, 2, 3, 4, 5, 678_999)) == "2025-01-02T03:04:05.678Z"
    plus_one = timezone(timedelta(hours=1))
    assert format_time(datetime(2025, 1, 2, 3, 4, 5, tzinfo=plus_one)) == "2025-01-02T02:04:05.000Z"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"high": "64100.00"}, id="high<low"),
        pytest.param({"high": "64220.00"}, id="high<close"),
        pytest.param({"low": "64220.00"}, id="low>open"),
        pytest.param({"close_time": "2025-10-25T10:29:00Z"}, id="close_time=open_time"),
        pytest.param({"close_time": "2025-10-25T10:28:59.999Z"}, id="close_time<open_time"),
        pytest.param({"interval": "2m"}, id="unknown-interval"),
        pytest.param({"interval": "1W"}, id="interval-case"),
        pytest.param({"low": "-1"}, id="negative-low"),
        pytest.param({"volume": "-0.1"}, id="negative-volume"),
        pytest.param({"open": float("nan")}, id="float-nan"),
        pytest.param({"close": float("inf")}, id="float-inf"),
        pytest.param({"open": "NaN"}, id="string-nan"),
        pytest.param({"high": "Infinity"}, id="string-inf"),
        pytest.param({"open": "abc"}, id="not-a-number"),
        pytest.param({"trades": -1}, id="negative-trades"),
        pytest.param({"symbol": "btcusdt"}, id="lowercase-symbol"),
        pytest.param({"version": 2}, id="unknown-version"),
        pytest.param({"market": "margin"}, id="unknown-market"),
        pytest.param({"source": "replay"}, id="unknown-source"),
        pytest.param({"open_time": "yesterday"}, id="bad-time"),
    ],
)
def test_invalid_candles_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CandleClosed.model_validate(example(**changes))


@pytest.mark.parametrize("missing", ["symbol", "interval", "open_time", "close_time", "close", "trades"])
def test_required_fields(missing: str) -> None:
    body = dict(CONTRACT_EXAMPLE)
    del body[missing]
    with pytest.raises(ValidationError):
        CandleClosed.model_validate(body)


def test_unknown_extra_fields_are_ignored() -> None:
    assert CandleClosed.model_validate(example(quote_volume="1.0")) == CandleClosed.model_validate(
        CONTRACT_EXAMPLE
    )


# --- AnalysisJob --------------------------------------------------------------------------


def test_dedup_key_is_workflow_id_and_close_time() -> None:
    candle = CandleClosed.model_validate(CONTRACT_EXAMPLE)
    job = AnalysisJob(workflow_id=WORKFLOW, workflow_type=WorkflowType.SETUP_MONITORING, candle=candle)
    assert job.kind is JobKind.CANDLE
    assert job.dedup_key == f"{WORKFLOW}:2025-10-25T10:29:59.999Z"


@settings(max_examples=50, deadline=None)
@given(candle=candles(), workflow=st.uuids(), wf_type=st.sampled_from(list(WorkflowType)))
def test_job_round_trips_and_keys_on_the_candle_close(
    candle: CandleClosed, workflow: UUID, wf_type: WorkflowType
) -> None:
    job = AnalysisJob(workflow_id=workflow, workflow_type=wf_type, candle=candle)
    back = AnalysisJob.model_validate(json.loads(job.model_dump_json()))
    assert back == job
    assert back.dedup_key == job.dedup_key == f"{workflow}:{format_time(candle.close_time)}"
    assert json.loads(job.model_dump_json())["candle"] == candle.to_detail()


def test_initial_analysis_job() -> None:
    signal = UUID("99999999-8888-4777-8666-555555555555")
    job = AnalysisJob(kind=JobKind.INITIAL_ANALYSIS, signal_id=signal)
    assert job.dedup_key == f"initial:{signal}"
    assert AnalysisJob.model_validate_json(job.model_dump_json()) == job


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"kind": "candle", "workflow_id": str(WORKFLOW)}, id="candle-job-without-candle"),
        pytest.param({"kind": "candle", "candle": CONTRACT_EXAMPLE}, id="candle-job-without-workflow"),
        pytest.param({"workflow_id": str(WORKFLOW)}, id="default-kind-without-candle"),
        pytest.param({"kind": "initial_analysis"}, id="initial-without-signal"),
        pytest.param({"kind": "other", "workflow_id": str(WORKFLOW), "candle": CONTRACT_EXAMPLE}, id="kind"),
        pytest.param({"workflow_id": "nope", "candle": CONTRACT_EXAMPLE}, id="workflow-id-not-a-uuid"),
        pytest.param({"workflow_id": str(WORKFLOW), "candle": example(high="1")}, id="invalid-candle"),
    ],
)
def test_incomplete_jobs_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AnalysisJob.model_validate(body)


# --- llm-proxy answers (CONTRACTS.md examples) -------------------------------------------


def test_the_contract_setup_answer_validates_with_decimal_prices() -> None:
    answer = SetupAnswer.model_validate(
        {
            "decision": "wait",
            "confidence": 0.62,
            "reasoning": "...",
            "trade_plan": {"side": "long", "entry": "64200", "stop_loss": "63800", "take_profit": "65100"},
            "usage": {"prompt_tokens": 950, "completion_tokens": 150, "total_tokens": 1100},
            "model": "m",
            "trace_id": "t",
            "something_new": {"ignored": True},
        }
    )
    assert answer.decision is Decision.WAIT
    assert answer.trade_plan is not None
    assert answer.trade_plan.side is Side.LONG
    assert answer.trade_plan.stop_loss == Decimal("63800")
    assert answer.usage.total_tokens == 1100


def test_trade_plan_json_floats_keep_their_written_value() -> None:
    plan = TradePlan.model_validate({"side": "short", "entry": 0.1, "stop_loss": 0.3, "contracts": 0.0015})
    assert plan.entry is not None and plan.entry.as_tuple() == Decimal("0.1").as_tuple()
    assert plan.stop_loss == Decimal("0.3")
    assert plan.contracts == Decimal("0.0015")


@pytest.mark.parametrize(
    "plan",
    [
        {"side": "sideways"},
        {"side": "long", "entry": "-1"},
        {"side": "long", "stop_loss": 0},
        {"side": "long", "take_profit": "NaN"},
    ],
)
def test_invalid_trade_plans_are_rejected(plan: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TradePlan.model_validate(plan)


def test_the_contract_management_answer_keeps_params_raw() -> None:
    answer = ManagementAnswer.model_validate(
        {
            "action": "adjust_sl",
            "params": {"stop_loss": "49500"},
            "confidence": 0.7,
            "reasoning": "...",
            "usage": {"total_tokens": 10},
        }
    )
    assert answer.action == "adjust_sl"
    assert answer.params == {"stop_loss": "49500"}
    with pytest.raises(ValidationError):
        ManagementAnswer.model_validate({"action": "hold", "confidence": 1.5})


def test_negative_zero_is_written_without_its_sign_and_trades_must_be_an_int() -> None:
    detail = {**CONTRACT_EXAMPLE, "volume": "-0.000"}
    assert CandleClosed.model_validate(detail).to_detail()["volume"] == "0.000"
    with pytest.raises(ValidationError):
        CandleClosed.model_validate_json(json.dumps({**CONTRACT_EXAMPLE, "trades": True}))


def test_llm_answers_that_postgres_could_not_store_are_refused_or_cleaned() -> None:
    """Found in review: each of these passed validation and then failed in the database."""
    assert SetupAnswer.model_validate({"decision": "wait", "reasoning": "a\x00b"}).reasoning == "ab"
    with pytest.raises(ValidationError):
        SetupAnswer.model_validate({"decision": "wait", "usage": {"total_tokens": 3_000_000_000}})
    with pytest.raises(ValidationError):
        TradePlan.model_validate({"side": "long", "entry": "1e200000"})
    with pytest.raises(ValidationError):
        ManagementAnswer.model_validate({"action": "hold", "params": {"note": "a\x00b"}})


@pytest.mark.parametrize(
    ("side", "sl", "tp", "ok"),
    [
        ("long", "99", "101", True),
        ("long", "101", None, False),
        ("long", None, "99", False),
        ("short", "101", "99", True),
        ("short", "99", None, False),
        ("long", None, None, True),
    ],
)
def test_a_trade_plan_brackets_its_entry(side: str, sl: str | None, tp: str | None, ok: bool) -> None:
    plan = TradePlan.model_validate({"side": side, "stop_loss": sl, "take_profit": tp})
    assert plan.brackets(Decimal("100")) is ok
