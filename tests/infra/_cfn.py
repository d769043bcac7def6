"""Helpers for the template tests: CloudFormation YAML, the SAM transform, code scans."""

from __future__ import annotations

import ast
import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "infra" / "samconfig.toml"
REGION = "ap-northeast-1"
# What every function in the transformed template gets for the required parameters.
REQUIRED_PARAMETERS = {
    "Stage": "dev",
    "FeedImageUri": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/cmon-feed:test",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0",
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation short tags, turned into their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(data, dict)
    return data


class _NoManagedPolicies:
    """samtranslator asks for AWS managed policy names only when a template uses them."""

    def load(self) -> dict[str, str]:
        return {}


def transform(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation that the SAM transform makes of `template`, offline."""
    from samtranslator.translator.transform import transform as sam_transform

    sam = copy.deepcopy(template)
    # samtranslator rejects a local CodeUri: point each function at a fake S3 object.
    sam.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for name, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = f"s3://bucket/{name}.zip"
    values = {**REQUIRED_PARAMETERS, **(parameters or {})}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        result: dict[str, Any] = sam_transform(sam, values, _NoManagedPolicies())
    return result


def resources_of(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def ref_name(value: Any) -> str | None:
    """The logical id in `{"Ref": X}` or `{"Fn::GetAtt": [X, ...]}`."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def sub_text(value: Any) -> str | None:
    """The template string of a plain string or an `Fn::Sub`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    return None


# ------------------------------------------------------------------ samconfig
def samconfig() -> dict[str, Any]:
    with SAMCONFIG.open("rb") as f:
        return tomllib.load(f)


def parameter_overrides(env: str) -> dict[str, str]:
    raw = samconfig()[env]["deploy"]["parameters"]["parameter_overrides"]
    items = raw if isinstance(raw, list) else re.findall(r'(\S+?=(?:"[^"]*"|\S+))', raw)
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value.strip('"')
    return out


# ------------------------------------------------------------------ code scans
def python_files(*roots: str, exclude: tuple[str, ...] = ()) -> Iterator[Path]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in exclude):
                continue
            yield path


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def env_reads(paths: Iterator[Path]) -> dict[str, set[str]]:
    """Names read through os.environ[...] / os.environ.get(...) / os.getenv(...), by file."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            key: ast.expr | None = None
            if isinstance(node, ast.Subscript) and _is_environ(node.value):
                key = node.slice
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in {"get", "setdefault", "pop"}:
                    if _is_environ(func.value):
                        key = node.args[0]
                elif (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                    isinstance(func, ast.Name) and func.id == "getenv"
                ):
                    key = node.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.setdefault(key.value, set()).add(path.relative_to(ROOT).as_posix())
    return found


def attribute_uses(paths: Iterator[Path], owner: str) -> set[str]:
    """Every `<owner>.<ATTR>` attribute name used in the files (AST, not text)."""
    used: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == owner
            ):
                used.add(node.attr)
    return used
