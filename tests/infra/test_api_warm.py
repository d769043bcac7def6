"""The API function's provisioned concurrency: off in dev, on the `live` alias elsewhere.

A cold API environment imports FastAPI and connects to Postgres before it answers
(`python -m bench.bench_webhooks --cold-starts 3`): seconds, against pg_net's trigger
timeout. `ApiProvisionedConcurrency` keeps that many environments warm on the alias
that API Gateway invokes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import _cfn

PARAM = "ApiProvisionedConcurrency"


def _value(node: Any, params: dict[str, Any]) -> Any:
    """Just enough of CloudFormation to resolve this property: Ref, Fn::Equals, Fn::Not."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref":
            return params.get(arg, arg)
        if key == "Fn::Equals":
            return str(_value(arg[0], params)) == str(_value(arg[1], params))
        if key == "Fn::Not":
            return not _value(arg[0], params)
    return node


def _warm_executions(env: str) -> int:
    """ProvisionedConcurrentExecutions of the API's `live` alias as deployed in `env` (0: none)."""
    overrides = _cfn.parameter_overrides(env)
    template = _cfn.transform(_cfn.load_template(), overrides)
    params = {k: v.get("Default") for k, v in template["Parameters"].items()} | overrides
    aliases = _cfn.resources_of(template, "AWS::Lambda::Alias")
    (alias,) = [a["Properties"] for name, a in aliases.items() if name.startswith("ApiFunctionAlias")]
    assert alias["Name"] == "live"  # what the HTTP API integration invokes
    config = alias.get("ProvisionedConcurrencyConfig")
    if config is None:
        return 0
    if "Fn::If" in config:
        condition, when_true, when_false = config["Fn::If"]
        config = when_true if _value(template["Conditions"][condition], params) else when_false
    if config == {"Ref": "AWS::NoValue"}:
        return 0
    return int(_value(config["ProvisionedConcurrentExecutions"], params))


def test_the_parameter_defaults_to_off_and_dev_keeps_it_off() -> None:
    parameter = _cfn.load_template()["Parameters"][PARAM]
    assert parameter["Default"] == 0 and parameter["MinValue"] == 0
    assert _warm_executions("dev") == 0


@pytest.mark.parametrize(("env", "minimum"), [("staging", 1), ("prod", 2)])
def test_staging_and_prod_keep_api_environments_warm_on_the_live_alias(env: str, minimum: int) -> None:
    assert _warm_executions(env) == int(_cfn.parameter_overrides(env)[PARAM]) >= minimum
