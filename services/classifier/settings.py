"""Classifier settings (env prefix ``CLASSIFIER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ModelServiceSettings


class ClassifierSettings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIFIER_", extra="ignore")

    background_size: int = 2000
    """Recent paper vectors kept as the background the per-subscription models train against."""
    cache_path: Path = Path("data/cache/embeddings.sqlite")
    batch_max_records: int = Field(
        default=256,
        ge=1,
        description="papers.embedded events read per XREADGROUP and scored in one matrix pass (a day's listing "
        "arrives as a burst; one paper at a time costs about 5x more per paper, `paperwire bench score`)",
    )

    @model_validator(mode="after")
    def _cache_in_data_dir(self) -> ClassifierSettings:
        """PAPERWIRE_DATA_DIR moves what the process writes, the cache too, unless CLASSIFIER_CACHE_PATH is set."""
        if "cache_path" not in self.model_fields_set:
            self.cache_path = self.data_dir / "cache" / "embeddings.sqlite"
        return self
