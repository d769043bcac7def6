"""Secrets Manager through Powertools Parameters: read at run time, cached for a TTL.

A deployed function is given secret ids (ARN or name) in `<SETTING>_SECRET_ID` variables,
never the values, so rotating a secret needs no redeploy: after the cache TTL
(`SECRETS_TTL_S`) the next read returns the new value. A secret's string is either the
value itself or a JSON object holding it under the setting's name (one secret per stage
with keys `DATABASE_URL`, `LLM_PROXY_API_KEY`, `WEBHOOK_SECRET`, `ADMIN_API_KEY`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from functions.core.errors import TransientError


class SecretUnavailable(TransientError):
    """Secrets Manager did not give the secret (missing, no permission, outage)."""


class SecretsManagerReader:
    def __init__(self, client: Any = None) -> None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        self._provider = SecretsProvider(boto3_client=client)

    def read(self, secret_id: str, key: str, *, max_age_s: int) -> str:
        """The value under `key` of the secret's JSON, or its whole string if it is not JSON."""
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            raw = self._provider.get(secret_id, max_age=max_age_s)
        except GetParameterError as exc:
            # The message names the secret id, never a value.
            raise SecretUnavailable(f"secret {secret_id}: {type(exc.__cause__ or exc).__name__}") from exc
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, dict):
            if key not in parsed:
                raise SecretUnavailable(f"secret {secret_id}: no key {key}")
            return str(parsed[key])
        return text


@lru_cache(maxsize=1)
def default_reader() -> SecretsManagerReader:
    """One reader (one boto3 client, one cache) per process; `cache_clear()` in tests."""
    import boto3

    return SecretsManagerReader(boto3.client("secretsmanager"))
