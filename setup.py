"""Packaging that pyproject.toml cannot say: ship the top-level `supabase/` folder inside
the package as `functions.supabase`, and build the feed's optional C extension.

The folder keeps its place and name in the repository (the Supabase CLI looks for
`supabase/config.toml` and `supabase/migrations/`), but installed as a top-level
`supabase` it would collide with the `supabase` client package. `packages.find` cannot
see a folder mapped under another name, so the package list is computed here; every
other setting stays in pyproject.toml.

`feed_service._kline` is the compiled closed-kline decoder (~3 µs a closed frame instead
of ~5). It is optional: without a C compiler the install goes on and the feed runs on the
Python path, which decides exactly the same frames (`.ci/run` requires it built).
"""

from pathlib import Path

from setuptools import Extension, find_packages, setup

_SQL_ROOT = "supabase"
_SQL_PACKAGE = "functions.supabase"


def _sql_packages() -> list[str]:
    """`functions.supabase` and one package per sub-folder (migrations/, tests/)."""
    root = Path(__file__).parent / _SQL_ROOT
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [_SQL_PACKAGE, *(f"{_SQL_PACKAGE}.{name}" for name in subfolders)]


setup(
    packages=[*find_packages(include=["functions*", "feed_service*"]), *_sql_packages()],
    package_dir={_SQL_PACKAGE: _SQL_ROOT},
    ext_modules=[
        Extension("feed_service._kline", ["feed_service/_kline.c"], optional=True),
    ],
)
