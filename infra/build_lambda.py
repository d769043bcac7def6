"""Build the Lambda artifact: the runtime dependencies plus the `functions` package.

    python infra/build_lambda.py                      # for Lambda: build/lambda/ + build/lambda.zip
    python infra/build_lambda.py --mode local         # pip, for the running interpreter
    python infra/build_lambda.py --mode installed     # offline: copy from this environment

`template.yaml` points every function's CodeUri at `build/lambda/`, so `sam build` only
copies it and `sam deploy` zips and uploads it. Only `[project].dependencies` of
pyproject.toml go in (not the `feed`, `local` or `dev` extras), and of our code only
`functions/` without `functions/local/` (the embedded runtime of `cmon local`).

Modes:
  lambda     `pip install --target -c requirements/lambda.txt` with `--platform manylinux2014_x86_64
             --only-binary=:all:
             --python-version 3.12 --implementation cp` (the Lambda python3.12 x86_64 runtime);
             needs the package index.
  local      `pip install --target` for the running interpreter; needs the package index.
  installed  copy the installed distributions of the runtime dependencies (and their own
             dependencies, resolved from their metadata) out of the running environment;
             no network, used by the tests (tests/infra/test_artifact.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "lambda"
# The pinned versions of the runtime closure (requirements/lock.sh writes it).
LAMBDA_LOCK = ROOT / "requirements" / "lambda.txt"
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
# Parts of our package that the functions never import.
EXCLUDED_SOURCE = ("functions/local",)
# Noise in an artifact: bytecode caches, and console scripts (top-level bin/).
JUNK_DIRS = {"__pycache__"}
JUNK_SUFFIXES = {".pyc", ".pyo"}


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """`[project].dependencies` of pyproject.toml, as written there."""
    with pyproject.open("rb") as f:
        data = tomllib.load(f)
    deps = data["project"]["dependencies"]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SystemExit("pyproject.toml: [project].dependencies must be a list of strings")
    return list(deps)


def pip_install(
    requirements: Sequence[str], target: Path, *, for_lambda: bool, lock: Path = LAMBDA_LOCK
) -> None:
    """`pip install --target` the requirements, pinned by the lock, for Lambda or this interpreter."""
    subprocess.run(pip_command(requirements, target, for_lambda=for_lambda, lock=lock), check=True)  # noqa: S603


def pip_command(
    requirements: Sequence[str], target: Path, *, for_lambda: bool, lock: Path = LAMBDA_LOCK
) -> list[str]:
    """The pip argv: every version comes from the lock (`-c`), not from the index of the day."""
    if not lock.is_file():
        raise SystemExit(f"{lock} is missing: run requirements/lock.sh")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-conflicts",
        "--target",
        str(target),
        "--constraint",
        str(lock),
    ]
    if for_lambda:
        for platform in LAMBDA_PLATFORMS:
            cmd += ["--platform", platform]
        cmd += [
            "--only-binary=:all:",
            "--python-version",
            LAMBDA_PYTHON,
            "--implementation",
            "cp",
        ]
    cmd += list(requirements)
    return cmd


def _distribution_closure(requirements: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions that the requirements need, transitively."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    base_env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    seen: dict[str, md.Distribution] = {}
    extras_done: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = []  # (name, extra or "")

    def push(req_text: str, extra_of_parent: str) -> None:
        req = Requirement(req_text)
        if req.marker is not None:
            env = {**base_env, "extra": extra_of_parent}
            if not req.marker.evaluate(env):
                return
        name = canonicalize_name(req.name)
        todo.append((name, ""))
        todo.extend((name, canonicalize_name(e)) for e in req.extras)

    for r in requirements:
        push(r, "")
    while todo:
        name, extra = todo.pop()
        if (name, extra) in extras_done:
            continue
        extras_done.add((name, extra))
        try:
            dist = seen.get(name) or md.distribution(name)
        except md.PackageNotFoundError as e:
            raise SystemExit(f"{name} is required at runtime but not installed here") from e
        seen[name] = dist
        for req_text in dist.requires or []:
            req = Requirement(req_text)
            marker_text = str(req.marker) if req.marker is not None else ""
            if extra == "" and "extra" in marker_text:
                continue  # belongs to an extra nobody asked for
            if extra != "" and "extra" not in marker_text:
                continue  # already handled with the base distribution
            push(req_text, extra)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def copy_installed(requirements: Sequence[str], target: Path) -> list[str]:
    """Copy the installed files (RECORD) of the requirement closure into `target`."""
    names: list[str] = []
    for dist in _distribution_closure(requirements):
        files = dist.files
        if files is None:
            raise SystemExit(f"{dist.metadata['Name']}: no RECORD, cannot copy it")
        names.append(f"{dist.metadata['Name']}=={dist.version}")
        for rel in files:
            if rel.parts and rel.parts[0] == "..":
                continue  # console scripts and data outside site-packages
            src = Path(str(dist.locate_file(rel)))
            if not src.is_file() or _is_junk(Path(*rel.parts)):
                continue
            dst = target / Path(*rel.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return names


def _is_junk(rel: Path) -> bool:
    return (
        rel.suffix in JUNK_SUFFIXES
        or any(p in JUNK_DIRS for p in rel.parts[:-1])
        or (len(rel.parts) > 1 and rel.parts[0] == "bin")
    )


def copy_sources(target: Path, root: Path = ROOT) -> None:
    """Copy the `functions` package (without the local runtime) into `target`."""
    src_root = root / "functions"
    for src in sorted(src_root.rglob("*")):
        rel = src.relative_to(root)
        if src.is_dir() or _is_junk(rel):
            continue
        if any(rel.as_posix().startswith(prefix + "/") for prefix in EXCLUDED_SOURCE):
            continue
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def clean_tree(target: Path) -> None:
    """Drop caches and console scripts that pip leaves behind."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for path in sorted(target.rglob("*"), reverse=True):
        if path.is_dir() and path.name in JUNK_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in JUNK_SUFFIXES:
            path.unlink()


def write_zip(source: Path, zip_path: Path) -> None:
    """A reproducible zip: sorted entries, fixed timestamps, 0644/0755 permissions."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), (1980, 1, 1, 0, 0, 0))
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def build(out: Path, mode: str, *, make_zip: bool = True) -> Path:
    """Build the artifact directory `out` (replaced) and, if asked, `<out>.zip`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    requirements = runtime_requirements()
    if mode == "installed":
        copy_installed(requirements, out)
    else:
        pip_install(requirements, out, for_lambda=(mode == "lambda"))
    copy_sources(out)
    clean_tree(out)
    if make_zip:
        write_zip(out, out.with_suffix(".zip"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--mode",
        choices=("lambda", "local", "installed"),
        default="lambda",
        help="lambda: wheels for the python3.12 x86_64 runtime (default); local: pip for "
        "this interpreter; installed: copy from this environment, offline",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact directory")
    parser.add_argument("--no-zip", action="store_true", help="do not write <out>.zip")
    args = parser.parse_args(argv)
    out = build(args.out.resolve(), args.mode, make_zip=not args.no_zip)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"built {out} ({size / 1e6:.1f} MB unzipped)")
    if not args.no_zip:
        zipped = out.with_suffix(".zip")
        print(f"zipped {zipped} ({zipped.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
