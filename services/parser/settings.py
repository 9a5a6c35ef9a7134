"""Parser settings (env prefix ``PARSER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ParserSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARSER_", extra="ignore")

    max_document_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="larger bodies are rejected")
