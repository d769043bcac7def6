"""`functions/local` stays a set of small modules with one job each (issue 11): a module
that grows past ~400 lines is two jobs, and the next engineer reads it as one."""

from __future__ import annotations

from pathlib import Path

LIMIT = 400
LOCAL = Path(__file__).resolve().parents[2] / "functions" / "local"


def test_no_local_module_is_over_the_limit() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in LOCAL.glob("*.py")}
    assert len(sizes) > 10  # the package is where this test thinks it is
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
