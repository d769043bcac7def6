"""The canary's answer-error alarm per version, the token alarms that follow the rollout,
and the cap / staleness alarms — on the template as CloudFormation sees it (SAM-transformed)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import pytest

from functions.core.telemetry import FUNCTION_DIMENSION, VERSION_DIMENSION, VERSIONED, MetricName
from tests.infra import _cfn

WORKERS = {
    "SetupAnalysisFunction": "setup-analysis",
    "PositionManagementFunction": "position-management",
}


def _version_resource(t: dict[str, Any], function: str) -> str:
    """The `AWS::Lambda::Version` the function's `live` alias points at (the new version)."""
    (alias,) = [
        a
        for a in _cfn.resources_of(t, "AWS::Lambda::Alias").values()
        if _cfn.ref_name(a["Properties"]["FunctionName"]) == function
    ]
    version = alias["Properties"]["FunctionVersion"]
    name = version["Fn::GetAtt"][0] if "Fn::GetAtt" in version else _cfn.ref_name(version)
    assert name is not None and t["Resources"][name]["Type"] == "AWS::Lambda::Version"
    return name


def _rollback_alarms(t: dict[str, Any], function: str) -> list[dict[str, Any]]:
    (alias,) = [
        a
        for a in _cfn.resources_of(t, "AWS::Lambda::Alias").values()
        if _cfn.ref_name(a["Properties"]["FunctionName"]) == function
    ]
    group = _cfn.ref_name(alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"])
    assert group is not None
    config = t["Resources"][group]["Properties"]["AlarmConfiguration"]
    return [t["Resources"][_cfn.ref_name(a["Name"]) or ""]["Properties"] for a in config["Alarms"]]


def _stats(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Id"]: m["MetricStat"] for m in alarm.get("Metrics", []) if "MetricStat" in m}


@pytest.mark.parametrize("function", sorted(WORKERS))
def test_each_worker_canary_rolls_back_on_the_new_versions_answer_errors(
    transformed: dict[str, Any], function: str
) -> None:
    version = _version_resource(transformed, function)
    fn_name = _cfn.sub_text(transformed["Resources"][function]["Properties"]["FunctionName"])
    canary = [
        a
        for a in _rollback_alarms(transformed, function)
        if {s["Metric"]["MetricName"] for s in _stats(a).values()}
        == {MetricName.ANSWER_ERRORS, MetricName.ANSWERS_RECORDED}
    ]
    assert len(canary) == 1, "the deployment group watches the version's answer error rate"
    (alarm,) = canary
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
    ids = {s["Metric"]["MetricName"]: i for i, s in _stats(alarm).items()}
    errors, recorded = ids[MetricName.ANSWER_ERRORS], ids[MetricName.ANSWERS_RECORDED]
    assert f"100*{errors}/({errors}+{recorded})" in expression.replace(" ", "")
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and 0 < float(alarm["Threshold"]) <= 5
    for stat in _stats(alarm).values():
        dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert _cfn.sub_text(dims[FUNCTION_DIMENSION]) == fn_name
        # The version number: the last field of the new Version's ARN (what the runtime
        # puts in AWS_LAMBDA_FUNCTION_VERSION, the dimension the code emits).
        assert dims[VERSION_DIMENSION] == {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": version}]}]}


def test_the_code_emits_the_versioned_pair_with_function_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.adapters.aws import PowertoolsMetrics

    assert {MetricName.ANSWER_ERRORS, MetricName.ANSWERS_RECORDED} <= VERSIONED
    metrics = PowertoolsMetrics("prod", function_name="cmon-prod-setup-analysis", function_version="7")
    out = io.StringIO()
    with redirect_stdout(out):
        metrics.count(MetricName.ANSWER_ERRORS)
        metrics.count(MetricName.ANALYSES_COMPLETED)
        metrics.flush()
    blobs = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    versioned = [b for b in blobs if b.get(VERSION_DIMENSION) == "7" and MetricName.ANSWER_ERRORS.value in b]
    assert len(versioned) == 1
    (directive,) = versioned[0]["_aws"]["CloudWatchMetrics"]
    assert set(directive["Dimensions"][0]) == {"service", "stage", FUNCTION_DIMENSION, VERSION_DIMENSION}
    assert versioned[0][FUNCTION_DIMENSION] == "cmon-prod-setup-analysis"
    # A metric outside the canary's pair is not emitted per version.
    assert not [b for b in blobs if b.get(VERSION_DIMENSION) and MetricName.ANALYSES_COMPLETED.value in b]


def test_token_alarms_compare_against_the_projection_times_the_admitted_share(
    transformed: dict[str, Any],
) -> None:
    alarms = [
        a
        for a in _cfn.resources_of(transformed, "AWS::CloudWatch::Alarm").values()
        if any(s["Metric"]["MetricName"] == MetricName.TOKENS_USED for s in _stats(a["Properties"]).values())
    ]
    assert len(alarms) == 3
    for resource in alarms:
        alarm = resource["Properties"]
        ids = {s["Metric"]["MetricName"]: i for i, s in _stats(alarm).items()}
        admitted = ids[MetricName.ROLLOUT_ADMITTED_PERCENT]
        (expression,) = [_cfn.sub_text(m["Expression"]) for m in alarm["Metrics"] if m.get("ReturnData")]
        assert expression is not None
        assert f"${{TokenProjectionPerDay}}*FILL({admitted},100)" in expression.replace(" ", "")
        assert _stats(alarm)[admitted]["Period"] == _stats(alarm)[ids[MetricName.TOKENS_USED]]["Period"]


@pytest.mark.parametrize("metric", [MetricName.TOKEN_CAP_SKIPPED, MetricName.STALE_JOBS_SKIPPED])
def test_cap_and_staleness_skips_have_an_informational_alarm(
    transformed: dict[str, Any], metric: MetricName
) -> None:
    (alarm,) = [
        a["Properties"]
        for a in _cfn.resources_of(transformed, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == metric
    ]
    assert "info" in (_cfn.sub_text(alarm["AlarmName"]) or "")
    assert (float(alarm["Threshold"]), alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
