"""template.yaml transforms offline and passes cfn-lint, before and after the transform."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from tests.infra import _cfn


def _problems(text: str, *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """cfn-lint's errors and warnings (informational findings are not counted)."""
    matches = lint(text, config=ManualArgs(regions=[_cfn.REGION]))
    return [
        f"{m.rule.id} {m.message} (line {m.linenumber})"
        for m in matches
        if m.rule.id[0] in "EW" and m.rule.id not in ignore
    ]


def test_sam_template_passes_cfn_lint() -> None:
    assert _problems(_cfn.TEMPLATE.read_text()) == []


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_transformed_template_passes_cfn_lint(sam_template: dict[str, Any], env: str) -> None:
    transformed = _cfn.transform(sam_template, _cfn.parameter_overrides(env))
    assert "Transform" not in transformed
    text = json.dumps(transformed)
    # The transform resolves DeploymentType into DeploymentConfigName itself, which leaves
    # the parameter unused in its output (W2001); that is the transform's doing.
    assert _problems(text, ignore=frozenset({"W2001"})) == []


def test_layout_follows_the_agreed_order(sam_template: dict[str, Any]) -> None:
    sections = [k for k in sam_template if k in {"Globals", "Parameters", "Resources", "Outputs"}]
    assert sections == ["Globals", "Parameters", "Resources", "Outputs"]
    types = [r["Type"] for r in sam_template["Resources"].values()]

    def first(type_: str) -> int:
        return types.index(type_)

    order = [
        first("AWS::Serverless::Function"),
        first("AWS::Events::EventBus"),
        first("AWS::SQS::Queue"),
        first("AWS::CloudWatch::Alarm"),
        first("AWS::CloudWatch::Dashboard"),
    ]
    assert order == sorted(order), "functions -> bus -> queues -> alarms -> dashboard"
