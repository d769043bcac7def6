#!/usr/bin/env bash
# Regenerate the locks from pyproject.toml (re-run after changing any dependency):
#   requirements/lock.sh            # needs uv (`pip install uv`, or in .venv) and PyPI
# dev.txt    CI and the README install (`pip install -c requirements/dev.txt -e '.[dev]'`),
#            Python 3.11+, any platform (universal markers)
# lambda.txt the Lambda artifact (infra/build_lambda.py): runtime dependencies only,
#            python3.12 on x86_64 manylinux
# feed.txt   the feed image (infra/feed.Dockerfile): runtime + `feed` extra, python3.12
# Add --upgrade to move every pin to the newest version the bounds in pyproject admit.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-$(command -v uv || echo .venv/bin/uv)}"
common=(--quiet --no-header --annotation-style line "$@")
"$UV" pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
    -o requirements/dev.txt "${common[@]}"
# The deployed sets are constrained by dev.txt: they ship the versions CI tested.
target=(--python-version 3.12 --python-platform x86_64-manylinux_2_28 --constraint requirements/dev.txt)
"$UV" pip compile pyproject.toml "${target[@]}" -o requirements/lambda.txt "${common[@]}"
"$UV" pip compile pyproject.toml --extra feed "${target[@]}" -o requirements/feed.txt "${common[@]}"
echo "locked: requirements/{dev,lambda,feed}.txt"
