"""Parser settings (env prefix ``PARSER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.embedding import default_model_dir
from shared.settings import ServiceSettings


class ParserSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARSER_", extra="ignore")

    max_document_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="larger bodies are rejected")
    tokenize: bool | None = Field(
        default=None,
        description="carry the embedding model's token ids in papers.parsed (default: when a model "
        "directory with a manifest is found; true makes a missing model an error)",
    )
    model_dir: Path | None = Field(default=None, description="default: PAPERWIRE_MODEL_DIR, else data/models/<id>")
    max_tokens: int | None = Field(default=None, ge=8, description="must equal the embedder's to be used there")

    def resolved_model_dir(self) -> Path:
        return self.model_dir or default_model_dir()
