from __future__ import annotations

from typing import Any

import pytest

from tests.infra import _cfn


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    return _cfn.load_template()


@pytest.fixture(scope="session")
def transformed(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation, with the dev environment's parameters."""
    return _cfn.transform(sam_template, _cfn.parameter_overrides("dev"))
