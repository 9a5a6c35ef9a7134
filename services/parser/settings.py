"""Parser settings (env prefix ``PARSER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ModelServiceSettings


class ParserSettings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARSER_", extra="ignore")

    max_document_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="larger bodies are rejected")
    tokenize: bool | None = Field(
        default=None,
        description="carry the embedding model's token ids in papers.parsed (default: when a model "
        "directory with a manifest is found; true makes a missing model an error)",
    )
    max_tokens: int | None = Field(default=None, ge=8, description="must equal the embedder's to be used there")
