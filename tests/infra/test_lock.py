"""The locks are what CI, the Lambda artifact and the feed image install, and they are current.

A dependency added to pyproject.toml without `requirements/lock.sh` fails here: it has no
pin, or its pin is outside the new bounds.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.infra.test_artifact import _load_builder

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)\s*(;[^#]*)?(#.*)?$")


def pins(lock: str) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = PIN.match(line.strip())
        assert m, f"{lock}: not an exact pin: {line!r}"
        found[canonicalize_name(m["name"])] = Version(m["version"])
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "cmon":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


@pytest.mark.parametrize(
    ("lock", "extras"), [("dev.txt", ("dev",)), ("lambda.txt", ()), ("feed.txt", ("feed",))]
)
def test_every_dependency_is_pinned_within_its_bounds(lock: str, extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    for req in requirements(*extras):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements/{lock}: run requirements/lock.sh"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]} outside {req.specifier}: run requirements/lock.sh"
        )


def test_the_deployed_sets_ship_the_versions_ci_tests() -> None:
    dev = pins("dev.txt")
    for lock in ("lambda.txt", "feed.txt"):
        for name, version in pins(lock).items():
            assert dev.get(name) == version, f"{lock}: {name} {version} != dev {dev.get(name)}"
    assert "websockets" in pins("feed.txt") and "websockets" not in pins("lambda.txt")


def test_mangum_is_bounded_to_the_version_whose_internals_the_api_subclasses() -> None:
    (mangum,) = [r for r in requirements() if r.name == "mangum"]
    assert mangum.specifier.contains("0.22.0") and not mangum.specifier.contains("0.23.0")
    assert pins("lambda.txt")["mangum"] < Version("0.23")


def test_ci_the_artifact_and_the_image_install_from_the_locks(tmp_path: Path) -> None:
    build_lambda = _load_builder()
    cmd = build_lambda.pip_command(["mangum>=0.22,<0.23"], tmp_path, for_lambda=True)
    assert cmd[cmd.index("--constraint") + 1] == str(ROOT / "requirements" / "lambda.txt")
    assert "-c requirements/dev.txt -e '.[dev]'" in (ROOT / ".ci" / "run").read_text()
    assert "-c requirements/dev.txt -e '.[dev]'" in (ROOT / "README.md").read_text().splitlines()[3]
    dockerfile = (ROOT / "infra" / "feed.Dockerfile").read_text()
    assert "--constraint requirements/feed.txt" in dockerfile
    with pytest.raises(SystemExit, match=r"lock\.sh"):
        build_lambda.pip_command([], tmp_path, for_lambda=False, lock=tmp_path / "absent.txt")
