"""Embedder settings (env prefix ``EMBEDDER_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ModelServiceSettings


class EmbedderSettings(ModelServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDDER_", extra="ignore")

    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        default="auto", description="auto: fp16 on CUDA, int8 on CPU when the export measured it faithful"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when it loads")
    max_tokens: int | None = Field(
        default=None, ge=8, description="truncate title + abstract to this many tokens (default: the model's)"
    )
    batch_max_records: int | None = Field(
        default=None,
        ge=1,
        description="events read per XREADGROUP (default 1024 on CUDA, 64 on CPU: a batch must finish well "
        "within claim_idle_ms, or the claimer takes its entries while they are still being embedded)",
    )
    token_budget: int | None = Field(default=None, ge=256, description="padded tokens per inference batch")
    tokenizer_workers: int | None = Field(
        default=None, ge=0, description="tokenizer processes (default: cores-1 on CUDA, none on CPU)"
    )
    tokenizer: Literal["auto", "flash", "hf"] = Field(
        default="auto",
        description="auto: flash-tokenizer for plain-ASCII texts when it reproduces HF tokenizers' ids exactly",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU: single-threaded ONNX Runtime runs side by side (default: one per core)"
    )
    vector_dtype: Literal["float16", "float32"] = "float16"

    def providers(self) -> list[str]:
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
