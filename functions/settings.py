"""Every environment variable the serverless functions read, in one place.

Settings are read when a handler builds its dependencies on the first invocation
(`get_settings()`), never at import, so tests and the local runner can set the
environment first. Secrets are `SecretStr`: they never show in a repr or a log line.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.core.operator import InitialAnalysisBy


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
