"""Deployed stages leave a signal's initial analysis to the platform's own trigger."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import _cfn
from tests.infra.test_env_vars import _function_variables


def test_every_function_reads_who_does_the_initial_analysis_from_a_parameter(
    transformed: dict[str, Any],
) -> None:
    for name, variables in _function_variables(transformed).items():
        assert variables["INITIAL_ANALYSIS_BY"] == {"Ref": "InitialAnalysisBy"}, name


def test_the_parameter_defaults_to_the_platform(sam_template: dict[str, Any]) -> None:
    parameter = sam_template["Parameters"]["InitialAnalysisBy"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("platform", ["cmon", "platform"])


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_stage_says_platform(env: str) -> None:
    assert _cfn.parameter_overrides(env)["InitialAnalysisBy"] == "platform"
