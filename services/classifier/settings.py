"""Classifier settings (env prefix ``CLASSIFIER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ClassifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", extra="ignore")

    background_size: int = 2000
    """Recent paper vectors kept as the background the per-subscription models train against."""
    model_dir: Path | None = None
    """An exported ONNX model directory for embedding interest texts (else the bundled weights)."""
    cache_path: Path = Path("data/cache/embeddings.sqlite")
    batch_max_records: int = Field(
        default=256,
        ge=1,
        description="papers.embedded events read per XREADGROUP and scored in one matrix pass (a day's listing "
        "arrives as a burst; one paper at a time costs about 5x more per paper, `paperwire bench score`)",
    )
