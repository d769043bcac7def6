"""What the transformed template must contain: aliases, canaries, queues, alarms, secrets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra import _cfn

HANDLERS = {
    "functions.handlers.api.handler",
    "functions.handlers.fanout.handler",
    "functions.handlers.setup_analysis.handler",
    "functions.handlers.position_management.handler",
    "functions.handlers.reconciler.handler",
}


def _functions(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _cfn.resources_of(t, "AWS::Lambda::Function")


def _alarms(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in _cfn.resources_of(t, "AWS::CloudWatch::Alarm").items()}


def _alarm_metrics(alarm: dict[str, Any]) -> set[str]:
    if "MetricName" in alarm:
        return {alarm["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in alarm.get("Metrics", []) if "MetricStat" in m}


def _alarm_expression(alarm: dict[str, Any]) -> str:
    for m in alarm.get("Metrics", []):
        if m.get("ReturnData") and "Expression" in m:
            return _cfn.sub_text(m["Expression"]) or ""
    return ""


def _find_alarms(
    t: dict[str, Any], metrics: set[str], threshold: float, operator: str
) -> list[dict[str, Any]]:
    return [
        a
        for a in _alarms(t).values()
        if metrics <= _alarm_metrics(a)
        and float(a["Threshold"]) == threshold
        and a["ComparisonOperator"] == operator
    ]


# ------------------------------------------------------------------ functions
def test_every_entry_point_is_a_python312_function(transformed: dict[str, Any]) -> None:
    functions = _functions(transformed)
    assert {f["Properties"]["Handler"] for f in functions.values()} == HANDLERS
    for f in functions.values():
        assert f["Properties"]["Runtime"] == "python3.12"


def test_every_function_has_a_live_alias_and_a_deployment_group(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    aliases = _cfn.resources_of(transformed, "AWS::Lambda::Alias")
    groups = _cfn.resources_of(transformed, "AWS::CodeDeploy::DeploymentGroup")
    for name in _functions(transformed):
        alias = [a for a in aliases.values() if _cfn.ref_name(a["Properties"]["FunctionName"]) == name]
        assert len(alias) == 1, name
        assert alias[0]["Properties"]["Name"] == "live"
        update = alias[0]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        group_name = _cfn.ref_name(update["DeploymentGroupName"])
        assert group_name in groups, name
        alarm_config = resources[group_name]["Properties"]["AlarmConfiguration"]
        assert alarm_config["Enabled"] is True
        rollback = resources[group_name]["Properties"]["AutoRollbackConfiguration"]
        assert "DEPLOYMENT_STOP_ON_ALARM" in rollback["Events"]
        # The rollback alarm watches this function's `live` alias.
        alarm_ids = [_cfn.ref_name(a["Name"]) for a in alarm_config["Alarms"]]
        fn_name = _cfn.sub_text(resources[name]["Properties"]["FunctionName"])
        watched = [
            d
            for alarm_id in alarm_ids
            for d in resources[alarm_id]["Properties"].get("Dimensions", [])
            if d["Name"] == "Resource"
        ]
        assert any(_cfn.sub_text(d["Value"]) == f"{fn_name}:live" for d in watched), name


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("dev", "AllAtOnce"),
        ("staging", "Canary10Percent5Minutes"),
        ("prod", "Canary10Percent5Minutes"),
    ],
)
def test_deployment_type_per_environment(sam_template: dict[str, Any], env: str, expected: str) -> None:
    assert _cfn.parameter_overrides(env)["DeploymentType"] == expected
    transformed = _cfn.transform(sam_template, _cfn.parameter_overrides(env))
    for group in _cfn.resources_of(transformed, "AWS::CodeDeploy::DeploymentGroup").values():
        name = group["Properties"]["DeploymentConfigName"]
        template, values = name["Fn::Sub"]
        assert template.replace("${ConfigName}", values["ConfigName"]) == (
            f"CodeDeployDefault.Lambda{expected}"
        )


def test_http_api_routes_on_the_default_stage(transformed: dict[str, Any]) -> None:
    stages = _cfn.resources_of(transformed, "AWS::ApiGatewayV2::Stage")
    assert [s["Properties"]["StageName"] for s in stages.values()] == ["$default"]
    body = next(iter(_cfn.resources_of(transformed, "AWS::ApiGatewayV2::Api").values()))
    paths = body["Properties"]["Body"]["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == {
        ("POST", "/webhooks/supabase"),
        ("GET", "/health"),
        ("GET", "/workflows"),
        ("GET", "/workflows/{id}"),
        ("POST", "/workflows/{id}/stop"),
    }


def test_fanout_rule_matches_candle_closed_with_retries_and_a_dlq(
    transformed: dict[str, Any],
) -> None:
    from functions.core.contracts import DETAIL_TYPE, EVENT_SOURCE

    rules = [
        r
        for r in _cfn.resources_of(transformed, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    assert len(rules) == 1
    props = rules[0]["Properties"]
    assert props["EventPattern"] == {"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]}
    assert _cfn.ref_name(props["EventBusName"]) == "CandleBus"
    (target,) = props["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert _cfn.ref_name(target["DeadLetterConfig"]["Arn"]) == "FanoutDeadLetterQueue"
    assert _cfn.ref_name(target["Arn"]) == "FanoutFunctionAliaslive"
    # Failed asynchronous invocations land in the same DLQ.
    (invoke,) = _cfn.resources_of(transformed, "AWS::Lambda::EventInvokeConfig").values()
    on_failure = invoke["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert _cfn.ref_name(on_failure) == "FanoutDeadLetterQueue"


def test_reconciler_runs_every_minute(transformed: dict[str, Any]) -> None:
    schedules = [
        r["Properties"]
        for r in _cfn.resources_of(transformed, "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    assert [s["ScheduleExpression"] for s in schedules] == ["rate(1 minute)"]
    assert _cfn.ref_name(schedules[0]["Targets"][0]["Arn"]) == "ReconcilerFunctionAliaslive"


# ------------------------------------------------------------------ queues
def test_each_worker_queue_has_a_dlq_and_six_times_the_function_timeout(
    transformed: dict[str, Any],
) -> None:
    resources = transformed["Resources"]
    mappings = _cfn.resources_of(transformed, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 2
    for mapping in mappings.values():
        props = mapping["Properties"]
        queue_id = _cfn.ref_name(props["EventSourceArn"])
        function_id = _cfn.ref_name(props["FunctionName"])
        alias = resources[function_id]["Properties"]
        function = resources[_cfn.ref_name(alias["FunctionName"])]["Properties"]
        queue = resources[queue_id]["Properties"]
        assert queue["VisibilityTimeout"] == 6 * function["Timeout"], queue_id
        redrive = queue["RedrivePolicy"]
        dlq_id = _cfn.ref_name(redrive["deadLetterTargetArn"])
        assert resources[dlq_id]["Type"] == "AWS::SQS::Queue"
        assert 1 <= redrive["maxReceiveCount"] <= 10
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert "Ref" in props["ScalingConfig"]["MaximumConcurrency"]


def test_every_queue_is_either_a_dlq_or_has_one(transformed: dict[str, Any]) -> None:
    queues = _cfn.resources_of(transformed, "AWS::SQS::Queue")
    redrive_targets = {
        _cfn.ref_name(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    rule_targets = {
        _cfn.ref_name(t["DeadLetterConfig"]["Arn"])
        for r in _cfn.resources_of(transformed, "AWS::Events::Rule").values()
        for t in r["Properties"]["Targets"]
        if "DeadLetterConfig" in t
    }
    dead_letter_queues = redrive_targets | rule_targets
    for name, queue in queues.items():
        has_dlq = "RedrivePolicy" in queue["Properties"]
        assert has_dlq != (name in dead_letter_queues), f"{name}: neither a DLQ nor has one"


def test_every_dlq_has_an_alarm(transformed: dict[str, Any]) -> None:
    queues = _cfn.resources_of(transformed, "AWS::SQS::Queue")
    dlqs = {n for n, q in queues.items() if "RedrivePolicy" not in q["Properties"]}
    watched = {
        _cfn.ref_name(d["Value"])
        for a in _alarms(transformed).values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and float(a["Threshold"]) == 0
        and a["ComparisonOperator"] == "GreaterThanThreshold"
        for d in a["Dimensions"]
        if d["Name"] == "QueueName"
    }
    assert dlqs == watched
    assert len(dlqs) == 3


# ------------------------------------------------------------------ alarms
def test_brief_thresholds_each_have_an_alarm(transformed: dict[str, Any]) -> None:
    rate = {"AnalysisErrors", "AnalysesCompleted"}
    for threshold in (1, 5):
        (alarm,) = _find_alarms(transformed, rate, threshold, "GreaterThanThreshold")
        expression = _alarm_expression(alarm).replace(" ", "")
        assert "100*errors/(errors+completed)" in expression
    for threshold in (10_000, 20_000):
        (alarm,) = _find_alarms(transformed, {"AnalysisLatencyMs"}, threshold, "GreaterThanThreshold")
        assert alarm["Statistic"] == "Average"
    token_alarms = _find_alarms(transformed, {"TokensUsed"}, 125, "GreaterThanThreshold")
    assert token_alarms, "token usage > 125 % of the projection"
    for alarm in token_alarms:
        assert "${TokenProjectionPerDay}" in _alarm_expression(alarm)
    (dup,) = _find_alarms(transformed, {"DuplicateCandlesProcessed"}, 0, "GreaterThanThreshold")
    assert "critical" in _cfn.sub_text(dup["AlarmName"])  # type: ignore[operator]
    (auto,) = _find_alarms(transformed, {"WorkflowsAutoDisabled"}, 0, "GreaterThanThreshold")
    assert "info" in _cfn.sub_text(auto["AlarmName"])  # type: ignore[operator]
    (silent,) = _find_alarms(transformed, {"FeedCandlesPublished"}, 1, "LessThanThreshold")
    assert silent["TreatMissingData"] == "breaching"
    assert silent["Period"] * silent["EvaluationPeriods"] == 120
    assert silent["Statistic"] == "Sum"


def test_token_projection_parameter_defaults_to_the_brief(sam_template: dict[str, Any]) -> None:
    assert sam_template["Parameters"]["TokenProjectionPerDay"]["Default"] == 264000


def test_every_alarm_notifies_the_topic(transformed: dict[str, Any]) -> None:
    for name, alarm in _alarms(transformed).items():
        assert [_cfn.ref_name(a) for a in alarm["AlarmActions"]] == ["AlarmTopic"], name


def test_cmon_metrics_carry_service_and_stage_dimensions(transformed: dict[str, Any]) -> None:
    from functions.core.telemetry import (
        FUNCTION_DIMENSION,
        NAMESPACE,
        SERVICE,
        STAGE_DIMENSION,
        VERSION_DIMENSION,
        VERSIONED,
    )

    metrics: list[dict[str, Any]] = []
    for alarm in _alarms(transformed).values():
        if alarm.get("Namespace") == NAMESPACE:
            metrics.append(alarm)
        metrics.extend(m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m)
    cmon = [m for m in metrics if m.get("Namespace") == NAMESPACE]
    assert cmon
    for m in cmon:
        dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
        if m["MetricName"] in VERSIONED:  # the canary's per-version set (see test_canary_*)
            dims = {k: v for k, v in dims.items() if k not in (FUNCTION_DIMENSION, VERSION_DIMENSION)}
        assert dims == {"service": SERVICE, STAGE_DIMENSION: {"Ref": "Stage"}}


def test_dashboard_shows_the_briefs_metrics(sam_template: dict[str, Any]) -> None:
    (dashboard,) = _cfn.resources_of(sam_template, "AWS::CloudWatch::Dashboard").values()
    body = _cfn.sub_text(dashboard["Properties"]["DashboardBody"])
    assert body is not None
    # Valid JSON once the ${...} substitutions are filled in.
    parsed = json.loads(re.sub(r"\$\{[^}]+\}", "0", body))
    titles = " | ".join(w["properties"].get("title", "") for w in parsed["widgets"]).lower()
    for words in (
        "active setup",
        "active position",
        "analyses per hour",
        "tokens per hour",
        "error rate",
        "latency",
        "duplicate",
        "auto-disabled",
        "feed lag",
        "dlq",
    ):
        assert words in titles, words
    assert '"FeedPublishLagMs"' in body


# ------------------------------------------------------------------ security
def test_no_secret_is_in_the_function_configuration_only_secret_ids(sam_template: dict[str, Any]) -> None:
    from pydantic import SecretStr

    from functions.settings import Settings

    secret_vars = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in repr(field.annotation) or field.annotation is SecretStr
    }
    assert {"DATABASE_URL", "LLM_PROXY_API_KEY", "WEBHOOK_SECRET", "ADMIN_API_KEY"} <= secret_vars
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert not secret_vars & set(variables), "a secret value in the function configuration"
    assert "resolve:secretsmanager" not in json.dumps(sam_template["Globals"])
    for var in secret_vars:
        # Each secret setting is read at run time from the secret the template names.
        assert variables[f"{var}_SECRET_ID"] == {"Ref": "AppSecretId"}, var
        assert f"{var.lower()}_secret_id" in Settings.model_fields
    for name, param in sam_template["Parameters"].items():
        assert "NoEcho" not in param, f"{name}: a secret passed as a parameter"
        assert name.upper() not in secret_vars


def test_every_function_may_read_exactly_the_app_secret(sam_template: dict[str, Any]) -> None:
    functions = _cfn.resources_of(sam_template, "AWS::Serverless::Function")
    assert len(functions) == 5
    for name, fn in functions.items():
        grants = [
            p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
            for p in fn["Properties"].get("Policies", [])
            if isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p
        ]
        assert [_cfn.sub_text(g) for g in grants] == [
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AppSecretId}-??????"
        ], name


def test_the_feed_reads_its_database_url_from_secrets_manager(sam_template: dict[str, Any]) -> None:
    # The feed gets DATABASE_URL from Secrets Manager through ECS, not as plain text.
    (task,) = _cfn.resources_of(sam_template, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert "DATABASE_URL" not in {e["Name"] for e in container["Environment"]}
    assert {s["Name"] for s in container["Secrets"]} == {"DATABASE_URL"}


def test_feed_task_role_may_only_put_events_on_the_bus(sam_template: dict[str, Any]) -> None:
    role = sam_template["Resources"]["FeedTaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Fn::GetAtt": ["CandleBus", "Arn"]}}
    ]


def test_feed_security_group_has_no_ingress(sam_template: dict[str, Any]) -> None:
    group = sam_template["Resources"]["FeedSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert group["SecurityGroupEgress"]


def test_feed_container_health_check_probes_port_8080(sam_template: dict[str, Any]) -> None:
    (task,) = _cfn.resources_of(sam_template, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert "127.0.0.1:8080/health" in " ".join(container["HealthCheck"]["Command"])
    assert container["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]


def test_outputs(sam_template: dict[str, Any]) -> None:
    outputs = sam_template["Outputs"]
    assert _cfn.sub_text(outputs["WebhookUrl"]["Value"]) == (
        "https://${HttpApi}.execute-api.${AWS::Region}.amazonaws.com/webhooks/supabase"
    )
    for name in ("EventBusName", "SetupQueueUrl", "PositionQueueUrl", "DashboardName"):
        assert name in outputs


def _sent_to(role: dict[str, Any]) -> set[str]:
    """The queues a function role may send to (SQSSendMessagePolicy and DLQ destinations)."""
    queues: set[str] = set()
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            if actions == ["secretsmanager:GetSecretValue"]:
                continue  # the app secret (test_every_function_may_read_exactly_the_app_secret)
            assert all(a.startswith("sqs:SendMessage") for a in actions), actions
            resource = statement["Resource"]
            if "Fn::Sub" in resource:
                resource = resource["Fn::Sub"][1]["queueName"]
            name = _cfn.ref_name(resource)
            assert name is not None
            queues.add(name)
    return queues


def test_functions_may_send_only_to_their_queues(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    expected = {
        "ApiFunction": {"SetupQueue"},
        "FanoutFunction": {"SetupQueue", "PositionQueue", "FanoutDeadLetterQueue"},
        "SetupAnalysisFunction": set(),
        "PositionManagementFunction": set(),
        "ReconcilerFunction": {"SetupQueue"},  # initial analyses whose webhook was lost
    }
    for name, queues in expected.items():
        role = resources[_cfn.ref_name(resources[name]["Properties"]["Role"])]
        assert _sent_to(role) == queues, name
        managed = {a.rsplit("/", 1)[-1] for a in role["Properties"]["ManagedPolicyArns"]}
        # Tracing: Active adds the X-Ray write-only policy (PutTraceSegments, nothing to read).
        assert managed <= {
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaSQSQueueExecutionRole",
            "AWSXrayWriteOnlyAccess",
        }
        assert "AWSXrayWriteOnlyAccess" in managed, name


def test_every_function_is_traced(sam_template: dict[str, Any]) -> None:
    assert sam_template["Globals"]["Function"]["Tracing"] == "Active"
    for name, fn in _cfn.resources_of(sam_template, "AWS::Serverless::Function").items():
        assert fn["Properties"].get("Tracing", "Active") == "Active", name
