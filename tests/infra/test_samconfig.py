"""infra/samconfig.toml: three environments that deploy this template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra import _cfn

ENVS = ("dev", "staging", "prod")


def test_environments() -> None:
    config = _cfn.samconfig()
    assert set(config) - {"version"} == set(ENVS)


@pytest.mark.parametrize("env", ENVS)
def test_environment_sections(env: str) -> None:
    section = _cfn.samconfig()[env]
    assert section["global"]["parameters"]["stack_name"] == f"cmon-{env}"
    assert section["global"]["parameters"]["region"]
    assert "build" in section
    deploy = section["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert deploy["s3_prefix"]
    overrides = _cfn.parameter_overrides(env)
    assert overrides["Stage"] == env
    assert int(overrides["SetupMaxConcurrency"]) >= 2
    assert int(overrides["PositionMaxConcurrency"]) >= 2


@pytest.mark.parametrize("env", ENVS)
def test_overrides_name_real_parameters_and_fill_the_required_ones(
    sam_template: dict[str, Any], env: str
) -> None:
    parameters = sam_template["Parameters"]
    overrides = _cfn.parameter_overrides(env)
    assert sorted(set(overrides) - set(parameters)) == []
    required = {name for name, p in parameters.items() if "Default" not in p}
    assert sorted(required - set(overrides)) == []
    for name, value in overrides.items():
        allowed = parameters[name].get("AllowedValues")
        if allowed:
            assert value in [str(a) for a in allowed], (name, value)


def test_canary_outside_dev() -> None:
    assert _cfn.parameter_overrides("dev")["DeploymentType"] == "AllAtOnce"
    for env in ("staging", "prod"):
        assert _cfn.parameter_overrides(env)["DeploymentType"] == "Canary10Percent5Minutes"
