"""A candle that closes while Postgres is unreachable is retried into the fan-out for as
long as it is worth analysing, and no longer (issue 13, brief 4.3)."""

from __future__ import annotations

from typing import Any

from functions.settings import Settings
from tests.infra import _cfn

# The traders' default interval (`_insert_workflow`: `1h` when the filter names none).
DEFAULT_INTERVAL_S = 3600


def _fanout_rule_target(transformed: dict[str, Any]) -> dict[str, Any]:
    (rule,) = (
        r["Properties"]
        for r in _cfn.resources_of(transformed, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    )
    (target,) = rule["Targets"]
    return dict(target)


def _is_the_window(value: Any, sam_template: dict[str, Any]) -> bool:
    """A Ref to the parameter, or (samtranslator resolves some Refs itself) its value."""
    if isinstance(value, dict):
        return _cfn.ref_name(value) == "CandleRetryMaxAgeSeconds"
    return int(value) == int(sam_template["Parameters"]["CandleRetryMaxAgeSeconds"]["Default"])


def test_the_retry_window_is_the_staleness_window(sam_template: dict[str, Any]) -> None:
    params = sam_template["Parameters"]
    stale_intervals = int(params["StaleCandleIntervals"]["Default"])
    assert stale_intervals == Settings().stale_candle_intervals
    window = params["CandleRetryMaxAgeSeconds"]
    assert int(window["Default"]) == stale_intervals * DEFAULT_INTERVAL_S
    # Lambda keeps an async event at most 6 h; EventBridge needs at least 60 s.
    assert int(window["MinValue"]) >= 60 and int(window["MaxValue"]) <= 21600


def test_the_rule_retries_delivery_for_the_window_then_parks_it_in_the_dlq(
    transformed: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    target = _fanout_rule_target(transformed)
    retry = target["RetryPolicy"]
    assert retry["MaximumRetryAttempts"] >= 1
    assert _is_the_window(retry["MaximumEventAgeInSeconds"], sam_template)
    assert _cfn.ref_name(target["DeadLetterConfig"]["Arn"]) == "FanoutDeadLetterQueue"


def test_a_failed_fanout_is_retried_twice_within_the_window_then_parked_in_the_dlq(
    transformed: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    (invoke,) = _cfn.resources_of(transformed, "AWS::Lambda::EventInvokeConfig").values()
    props = invoke["Properties"]
    assert _cfn.ref_name(props["FunctionName"]) == "FanoutFunction"
    assert props["Qualifier"] == "live"
    assert props["MaximumRetryAttempts"] == 2
    assert _is_the_window(props["MaximumEventAgeInSeconds"], sam_template)
    on_failure = props["DestinationConfig"]["OnFailure"]["Destination"]
    assert _cfn.ref_name(on_failure) == "FanoutDeadLetterQueue"
