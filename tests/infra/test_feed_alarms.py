"""Per-stream lag and the brief's "system instability" trigger have alarms (issue 13)."""

from __future__ import annotations

from typing import Any

from tests.infra import _cfn


def _alarms(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in _cfn.resources_of(t, "AWS::CloudWatch::Alarm").items()}


def test_the_worst_streams_lag_has_an_alarm_and_a_dashboard_maximum(sam_template: dict[str, Any]) -> None:
    lag = _alarms(sam_template)["FeedStreamLagWarningAlarm"]
    assert (lag["Namespace"], lag["MetricName"], lag["Statistic"]) == (
        "Cmon",
        "FeedStreamLagSeconds",
        "Maximum",
    )
    assert _cfn.ref_name(lag["Threshold"]) == "FeedStreamLagAlarmSeconds"
    body = _cfn.sub_text(sam_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]) or ""
    assert '"FeedStreamLagSeconds", "service", "cmon", "stage", "${Stage}", {"stat": "Maximum"' in body


def test_feed_restarts_and_memory_have_alarms(sam_template: dict[str, Any]) -> None:
    alarms = _alarms(sam_template)
    restarts = alarms["FeedRestartsCriticalAlarm"]
    assert (restarts["MetricName"], restarts["Statistic"], restarts["ComparisonOperator"]) == (
        "FeedProcessStarts",
        "Sum",
        "GreaterThanThreshold",
    )
    memory = alarms["FeedMemoryWarningAlarm"]
    assert (memory["Namespace"], memory["MetricName"]) == ("AWS/ECS", "MemoryUtilization")
    assert {d["Name"] for d in memory["Dimensions"]} == {"ClusterName", "ServiceName"}


def test_lambda_memory_near_the_limit_alarms_for_every_function(transformed: dict[str, Any]) -> None:
    alarm = _alarms(transformed)["LambdaMemoryWarningAlarm"]
    watched = {
        _cfn.sub_text(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"])
        for m in alarm["Metrics"]
        if "MetricStat" in m and m["MetricStat"]["Metric"]["Namespace"] == "LambdaInsights"
    }
    names = {
        _cfn.sub_text(f["Properties"]["FunctionName"])
        for f in _cfn.resources_of(transformed, "AWS::Lambda::Function").values()
    }
    assert watched == names and len(names) == 5
    # The Lambda Insights extension is what publishes memory_utilization.
    for f in _cfn.resources_of(transformed, "AWS::Lambda::Function").values():
        (layer,) = f["Properties"]["Layers"]
        assert "LambdaInsightsExtension" in (_cfn.sub_text(layer) or "")
