"""Every environment variable the code reads is set by the template, for every function.

The list is derived, not kept by hand: the fields of `functions.settings.Settings` (and
`feed_service.settings.FeedSettings` for the container) plus every literal name read
through `os.environ` / `os.getenv` in the production code.
"""

from __future__ import annotations

from typing import Any

from tests.infra import _cfn

# Set by the Lambda or ECS runtime itself, never by a template.
RUNTIME_PROVIDED_PREFIXES = ("AWS_", "_", "LAMBDA_", "ECS_")
RUNTIME_PROVIDED = {"TZ", "LANG", "PATH", "HOME", "PWD"}
# Read by Powertools, not by our code; the template sets them on purpose.
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "cmon",
    "POWERTOOLS_METRICS_NAMESPACE": "Cmon",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
}
# Code that never runs in a Lambda function.
NOT_IN_LAMBDA = ("functions/local", "functions/cli.py")


def _env_name(name: str, field: Any) -> str:
    alias = field.validation_alias or field.alias
    return (alias if isinstance(alias, str) else name).upper()


def _runtime_provided(name: str) -> bool:
    return name in RUNTIME_PROVIDED or name.startswith(RUNTIME_PROVIDED_PREFIXES)


def lambda_env_vars() -> set[str]:
    from functions.settings import Settings

    fields = Settings.model_fields
    # A secret setting with a `<name>_secret_id` sibling is read from Secrets Manager in
    # Lambda: the template sets the id, never the value.
    names = {_env_name(n, f) for n, f in fields.items() if f"{n}_secret_id" not in fields}
    names = {n for n in names if not _runtime_provided(n)}  # e.g. AWS_LAMBDA_FUNCTION_VERSION
    scanned = _cfn.env_reads(_cfn.python_files("functions", exclude=NOT_IN_LAMBDA))
    names |= {n for n in scanned if not _runtime_provided(n)}
    return names


def feed_env_vars() -> set[str]:
    """What the feed container must be given: the contract's variables plus direct reads."""
    names = {
        "BINANCE_MARKET",
        "BINANCE_WS_URL",
        "BINANCE_REST_URL",
        "FEED_STREAMS",
        "EVENT_BUS_NAME",
        "STAGE",
        "DATABASE_URL",
    }
    scanned = _cfn.env_reads(_cfn.python_files("feed_service"))
    return names | {n for n in scanned if not _runtime_provided(n)}


def _function_variables(transformed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: f["Properties"]["Environment"]["Variables"]
        for name, f in _cfn.resources_of(transformed, "AWS::Lambda::Function").items()
    }


def test_the_scan_finds_the_settings() -> None:
    names = lambda_env_vars()
    assert {"DATABASE_URL_SECRET_ID", "LLM_PROXY_URL", "STAGE", "SETUP_QUEUE_URL"} <= names
    assert "DATABASE_URL" not in names  # read from Secrets Manager in Lambda


def test_every_function_gets_every_variable_the_code_reads(transformed: dict[str, Any]) -> None:
    required = lambda_env_vars()
    for name, variables in _function_variables(transformed).items():
        missing = sorted(required - set(variables))
        assert missing == [], f"{name} lacks {missing}"


def test_no_function_gets_a_variable_nobody_reads(transformed: dict[str, Any]) -> None:
    known = lambda_env_vars() | set(POWERTOOLS) | {"POWERTOOLS_LOG_LEVEL"}
    for name, variables in _function_variables(transformed).items():
        unknown = sorted(set(variables) - known)
        assert unknown == [], f"{name} sets {unknown}: a typo or a setting that was removed"


def test_powertools_and_paper_execution_values(transformed: dict[str, Any]) -> None:
    for name, variables in _function_variables(transformed).items():
        for var, value in POWERTOOLS.items():
            assert variables[var] == value, name
        assert variables["PAPER_EXECUTION"] == "false", name
        assert variables["STAGE"] == {"Ref": "Stage"}, name


def _feed_container(sam_template: dict[str, Any]) -> dict[str, Any]:
    (task,) = _cfn.resources_of(sam_template, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_feed_container_gets_every_variable_it_needs(sam_template: dict[str, Any]) -> None:
    container = _feed_container(sam_template)
    given = {e["Name"] for e in container["Environment"]} | {s["Name"] for s in container["Secrets"]}
    assert sorted(feed_env_vars() - given) == []


def test_feed_container_sets_only_variables_the_feed_reads(sam_template: dict[str, Any]) -> None:
    from feed_service.settings import FeedSettings

    known = {_env_name(n, f) for n, f in FeedSettings.model_fields.items()} | feed_env_vars()
    known |= set(POWERTOOLS)
    container = _feed_container(sam_template)
    given = {e["Name"] for e in container["Environment"]} | {s["Name"] for s in container["Secrets"]}
    unknown = sorted(n for n in given - known if not _runtime_provided(n))
    assert unknown == []
