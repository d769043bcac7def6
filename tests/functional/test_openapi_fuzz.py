"""schemathesis against the running API (uvicorn + migrated Postgres), a few examples each,
fuzzing phase only (the coverage and stateful phases run in CI).

CI runs the same harness with more examples (.ci/schemathesis.sh). Without the secrets
every answer is a 401 and no table gains or loses a row; with them, every check passes.
"""

from __future__ import annotations

import pytest

from tests.support.api_fuzz import run

pytestmark = pytest.mark.slow


def test_schemathesis_finds_nothing_and_nothing_is_written_without_the_secrets(db_url: str) -> None:
    unauthenticated, authenticated = run(db_url, max_examples=5, phases="fuzzing")
    assert unauthenticated.returncode == 0, unauthenticated.output[-4000:]
    assert authenticated.returncode == 0, authenticated.output[-4000:]
    assert unauthenticated.counts_before == unauthenticated.counts_after
    assert unauthenticated.counts_before["workflow_schedules"].startswith(
        "2 rows"
    )  # the seeded rows were counted
