"""The SQL ships inside the package: a wheel installed outside the repository migrates and demos.

Builds the real wheel, installs it with `--no-deps` into a fresh venv that sees this
venv's site-packages (fast, no download of the dependencies), and runs the installed
`cmon` from a directory that has no `supabase/` folder anywhere above it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import psycopg
import pytest

from functions.adapters.migrations import discover, supabase_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _build_wheel(out: Path) -> Path:
    """`pip wheel .`: without build isolation when this venv's setuptools can build wheels
    itself (offline), else in pip's isolated build environment."""
    major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    extra = ["--no-build-isolation"] if (major, minor) >= (70, 1) else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out), *extra],
        check=True,
        cwd=out,
    )
    (wheel,) = out.glob("cmon-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; dependencies come from this venv."""
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh_site = next((venv / "lib").glob("python*/site-packages"))
    # A .pth line adds this venv's site-packages *after* the fresh one and, unlike a site
    # dir, does not run its .pth files: the editable install of the checkout stays out.
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return venv


def test_wheel_carries_migrations_bootstrap_and_seed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"functions/supabase/migrations/{m.path.name}" for m in discover(supabase_dir() / "migrations")
    }
    assert expected <= names
    assert {
        "functions/supabase/local_bootstrap.sql",
        "functions/supabase/seed.sql",
        "functions/adapters/supabase_webhooks.sql",  # applied by `cmon db install-webhooks`
    } <= names
    assert not any(n.startswith("supabase/") for n in names)  # the client package's place stays free


def test_installed_wheel_decodes_closed_klines_with_its_compiled_decoder(
    installed: Path, tmp_path: Path
) -> None:
    """The feed's C decoder ships built in the wheel (and its source for an sdist)."""
    if os.environ.get("CMON_REQUIRE_COMPILED") != "1":
        pytest.skip("the decoder is optional outside CI (CMON_REQUIRE_COMPILED=1 requires it)")
    code = (
        "import feed_service._kline as k, feed_service.binance as b, functions.core.contracts as c;"
        "print(k.__file__, b.KlineParser(c.Market.SPOT).compiled)"
    )
    out = _python_outside(installed, tmp_path, code).split()
    assert Path(out[0]).is_relative_to(installed) and out[1] == "True", out


def _outside_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp)
    return env


def _python_outside(installed: Path, tmp: Path, code: str) -> str:
    """What the installed venv's python prints for `code`, run away from the checkout."""
    return subprocess.run(
        [str(installed / "bin" / "python"), "-c", code],
        cwd=tmp,
        env=_outside_env(tmp),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_installed_wheel_migrates_and_demos_from_outside_the_repository(
    installed: Path, pg_admin_url: str, tmp_path: Path
) -> None:
    cmon = installed / "bin" / "cmon"
    where = _python_outside(installed, tmp_path, "import functions; print(functions.__file__)")
    assert Path(where).is_relative_to(installed)  # the wheel, not the checkout
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists wheel_migrate with (force)")
        conn.execute("create database wheel_migrate")
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname="wheel_migrate")

    done = subprocess.run(
        [str(cmon), "db", "migrate", "--json", "--database-url", url],
        cwd=tmp_path,
        env=_outside_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    versions = [m.version for m in discover(supabase_dir() / "migrations")]
    assert [a.split("_", 1)[0] for a in json.loads(done.stdout)["applied"]] == versions

    demo = subprocess.run(
        [str(cmon), "demo", "--short", "--json"],
        cwd=tmp_path,
        env=_outside_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert json.loads(demo.stdout)["ok"] is True
