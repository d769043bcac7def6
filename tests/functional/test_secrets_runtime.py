"""Secrets read at run time from Secrets Manager (moto), cached for a TTL, rotation picked up.

Powertools Parameters decides freshness with `datetime.now()`; the tests move that clock
instead of sleeping through the TTL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from functions.adapters import secrets
from functions.adapters.postgres import Database
from functions.core.errors import TransientError
from functions.handlers import api, wiring
from functions.settings import Settings
from tests.unit.fakes import FakeAdminReads, FakeLlm, FakeMetrics, FakeRepository

SECRET_NAME = "cmon/test"
VALUES = {
    "DATABASE_URL": "postgresql://cmon:db-pw-1@127.0.0.1:1/x",
    "LLM_PROXY_API_KEY": "llm-key-1",
    "WEBHOOK_SECRET": "webhook-1",
    "ADMIN_API_KEY": "admin-1",
}


class _Metrics(FakeMetrics):
    def flush(self) -> None:
        pass


class _Clock:
    offset = timedelta()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> type[_Clock]:
    import aws_lambda_powertools.utilities.parameters.base as base

    class MovedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> MovedDatetime:
            return datetime.now(tz) + _Clock.offset  # type: ignore[return-value]

    _Clock.offset = timedelta()
    monkeypatch.setattr(base, "datetime", MovedDatetime)
    return _Clock


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        secrets.default_reader.cache_clear()
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        client.create_secret(Name=SECRET_NAME, SecretString=json.dumps(VALUES))
        yield client
    secrets.default_reader.cache_clear()


def deployed_settings(**kw: Any) -> Settings:
    """What the template sets: secret ids only, no values."""
    ids: dict[str, Any] = {f"{k.lower()}_secret_id": SECRET_NAME for k in VALUES}
    return Settings.model_validate({"secrets_ttl_s": 300, **ids, **kw})


def rotate(client: Any, **changes: str) -> None:
    client.put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps({**VALUES, **changes}))


def test_each_secret_comes_from_its_key_and_a_rotation_shows_after_the_ttl(sm: Any, clock: Any) -> None:
    settings = deployed_settings()
    for key, value in VALUES.items():
        current = settings.secret(key.lower())  # type: ignore[arg-type]
        assert current is not None and current.get_secret_value() == value
    rotate(sm, WEBHOOK_SECRET="webhook-2")
    clock.offset = timedelta(seconds=299)
    assert settings.secret("webhook_secret").get_secret_value() == "webhook-1"  # type: ignore[union-attr]
    clock.offset = timedelta(seconds=301)
    assert settings.secret("webhook_secret").get_secret_value() == "webhook-2"  # type: ignore[union-attr]


def test_a_plain_string_secret_and_the_plain_env_var_for_local_runs(sm: Any) -> None:
    sm.create_secret(Name="cmon/plain", SecretString="just-the-key")
    assert Settings(llm_proxy_api_key_secret_id="cmon/plain").secret(
        "llm_proxy_api_key"
    ).get_secret_value() == (  # type: ignore[union-attr]
        "just-the-key"
    )
    local = Settings(webhook_secret="from-env")
    assert local.secret("webhook_secret").get_secret_value() == "from-env"  # type: ignore[union-attr]


def test_a_missing_secret_is_a_transient_error_naming_the_id_not_a_value(sm: Any) -> None:
    with pytest.raises(TransientError, match="cmon/absent"):
        Settings(webhook_secret_secret_id="cmon/absent").secret("webhook_secret")
    sm.create_secret(Name="cmon/nokey", SecretString=json.dumps({"OTHER": "x"}))
    with pytest.raises(TransientError, match="no key ADMIN_API_KEY"):
        Settings(admin_api_key_secret_id="cmon/nokey").secret("admin_api_key")


def test_the_api_accepts_the_rotated_webhook_secret_without_a_restart(sm: Any, clock: Any) -> None:
    settings = deployed_settings()
    wiring.use(
        wiring.Container(
            settings=settings,
            repo=FakeRepository(),
            metrics=_Metrics(),
            llm=FakeLlm(),
            reads=FakeAdminReads(),
        )
    )
    body: dict[str, Any] = {
        "type": "INSERT",
        "table": "traders",
        "schema": "public",
        "record": {},
        "old_record": None,
    }
    try:
        client = TestClient(api.app)

        def post(secret: str) -> int:
            headers = {"Authorization": f"Bearer {secret}"}
            return client.post("/webhooks/supabase", json=body, headers=headers).status_code

        assert (post("webhook-1"), post("webhook-2")) == (200, 401)
        rotate(sm, WEBHOOK_SECRET="webhook-2")
        clock.offset = timedelta(seconds=301)
        assert (post("webhook-1"), post("webhook-2")) == (401, 200)
        sm.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
        clock.offset = timedelta(seconds=700)
        assert client.get("/workflows", headers={"x-api-key": "admin-1"}).status_code == 503
    finally:
        wiring.use(None)


def test_the_database_url_is_read_again_at_each_reconnect(db_url: str) -> None:
    reads: list[str] = []

    def current() -> str:
        reads.append(db_url)
        return db_url

    db = Database(current)
    try:
        assert db.fetch_one("select 1 as one") == {"one": 1}
        assert len(reads) == 1  # one connection, one read
        db._conn.close()  # type: ignore[union-attr]  # the pooler dropped it
        assert db.fetch_one("select 2 as two") == {"two": 2}
        assert len(reads) == 2
    finally:
        db.close()
