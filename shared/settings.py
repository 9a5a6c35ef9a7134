"""Settings: one pydantic-settings class per service, each with its own env prefix, all sharing REDIS_URL."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` (``FETCHER_``, ``PARSER_``, ...)."""

    model_config = SettingsConfigDict(env_prefix="PAPERWIRE_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL"),
        description="unset: `paperwire run` starts the embedded Redis",
    )
    data_dir: Path = Field(default=Path("data"), validation_alias=AliasChoices("PAPERWIRE_DATA_DIR"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("PAPERWIRE_LOG_LEVEL"))
    consumer_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PAPERWIRE_CONSUMER_NAME"),
        description="stable per process; default host-pid",
    )
    public_url: str = Field(
        default="http://localhost:8000",
        validation_alias=AliasChoices("PAPERWIRE_PUBLIC_URL"),
        description="where the api is reached: base of feedback, unsubscribe and feed links",
    )
    link_secret: str = Field(
        default="dev-insecure-link-secret-change-me",
        validation_alias=AliasChoices("PAPERWIRE_LINK_SECRET"),
        description="HMAC key of signed links; set it in production",
    )
    max_attempts: int = Field(default=5, ge=1, description="deliveries before an event is dead-lettered")
    claim_idle_ms: int = Field(default=30_000, ge=100, description="pending longer than this is claimed")
    claim_poll_ms: int = Field(default=1_000, ge=10)
    read_block_ms: int = Field(default=1_000, ge=10)
    retention_hours: float = Field(default=72.0, gt=0, description="consumed entries older than this are trimmed")
