"""Every environment variable the serverless functions read, in one place.

Settings are read when a handler builds its dependencies on the first invocation
(`get_settings()`), never at import, so tests and the local runner can set the
environment first. Secrets are `SecretStr`: they never show in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.core.logs import register_secret
from functions.core.operator import InitialAnalysisBy

SecretName = Literal["database_url", "llm_proxy_api_key", "webhook_secret", "admin_api_key", "supabase_key"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    stage: str = Field(default="local", description="Deployment stage: local, dev, staging, prod.")
    database_url: SecretStr | None = None
    llm_proxy_url: str = "http://127.0.0.1:8790"
    llm_proxy_api_key: SecretStr = SecretStr("")
    llm_proxy_timeout_s: float = Field(default=20.0, gt=0)
    llm_proxy_max_attempts: int = Field(default=3, ge=1, le=10)
    webhook_secret: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    event_bus_name: str = "cmon-local"
    setup_queue_url: str | None = None
    position_queue_url: str | None = None
    max_reanalyses: int = Field(default=10, ge=1)
    max_consecutive_errors: int = Field(default=5, ge=1)
    # A candle older than this many intervals is not analysed: the market moved on.
    stale_candle_intervals: int = Field(default=2, ge=1)
    # How long a claim holds before a redelivered job may take it over (a crash mid-job).
    claim_lease_s: int = Field(default=300, ge=1)
    # Paper execution closes positions whose SL/TP the candle crossed (local runs, demo).
    paper_execution: bool = False
    # Guardrail: may the LLM move a stop-loss further from the price? Off = only tighten.
    allow_sl_loosening: bool = False
    # Who analyses a new signal first: the platform's own trigger (deployed stages) or cmon.
    initial_analysis_by: InitialAnalysisBy = InitialAnalysisBy.CMON
    # llm-proxy as a Supabase Edge Function (LLM_PROXY_TRANSPORT=edge): project URL and key.
    supabase_url: str | None = None
    supabase_key: SecretStr = SecretStr("")
    llm_proxy_transport: Literal["http", "edge"] = "http"
    llm_proxy_function: str = Field(default="llm-proxy", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    # Price of 1,000 LLM tokens in USD: `cmon cost` and `cmon metrics` show tokens as money.
    token_price_usd_per_1k: float = Field(default=0.0005, ge=0)
    # Set by the Lambda runtime: the canary's metrics carry the function and its version.
    aws_lambda_function_name: str = "local"
    aws_lambda_function_version: str = "$LATEST"
    # Secrets Manager, deployed: the id (ARN or name) of the secret holding each value above;
    # when set it wins over the plain variable and is re-read after SECRETS_TTL_S seconds.
    database_url_secret_id: str | None = None
    llm_proxy_api_key_secret_id: str | None = None
    webhook_secret_secret_id: str | None = None
    admin_api_key_secret_id: str | None = None
    supabase_key_secret_id: str | None = None
    secrets_ttl_s: int = Field(default=300, ge=0)

    def secret(self, name: SecretName) -> SecretStr | None:
        """The current value of a secret setting: from Secrets Manager when its
        `<NAME>_SECRET_ID` is set (cached `secrets_ttl_s`, so a rotation is picked up
        without a restart), else the plain environment variable (local runs, tests)."""
        secret_id: str | None = getattr(self, f"{name}_secret_id")
        if not secret_id:
            value: SecretStr | None = getattr(self, name)
            return value
        from functions.adapters.secrets import default_reader

        plain = default_reader().read(secret_id, name.upper(), max_age_s=self.secrets_ttl_s)
        register_secret(plain, urlsplit(plain).password if name == "database_url" else None)
        return SecretStr(plain)

    def secret_values(self) -> list[str]:
        """The plain value of every secret setting and the database password (masked in logs)."""
        values = [
            v.get_secret_value()
            for v in (
                self.database_url,
                self.llm_proxy_api_key,
                self.webhook_secret,
                self.admin_api_key,
                self.supabase_key,
            )
            if v is not None and v.get_secret_value()
        ]
        if self.database_url is not None:
            password = urlsplit(self.database_url.get_secret_value()).password
            values += [password] if password else []
        return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
