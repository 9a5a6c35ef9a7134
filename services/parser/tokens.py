"""Token ids for the embedder, made here: parser replicas scale out, so the embedder host spends its cores
feeding the GPU instead of tokenizing (DESIGN.md: one host tokenizes at most ~27k texts/s).

Same text policy as the embedder (``shared.embedding.compose_text`` + ``tokenize``); the ids carry the
tokenizer's sha256 and max_tokens so an embedder with another model ignores them and tokenizes itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.embedding import ModelError, ModelManifest, compose_text, load_tokenizer, tokenize, verify_file
from shared.events import PaperParsed, TokenIds

log = logging.getLogger("paperwire.parser.tokens")


@dataclass
class PaperTokenizer:
    """The embedding model's tokenizer, identified by its sha256 from the model manifest."""

    tokenizer: Any
    sha256: str
    max_tokens: int

    @classmethod
    def open(cls, model_dir: Path, max_tokens: int | None = None) -> PaperTokenizer:
        """Raise ModelError when the directory has no usable manifest or the tokenizer file does not match it."""
        info = ModelManifest.read(model_dir)
        path = verify_file(model_dir, info.tokenizer)
        limit = min(max_tokens or info.max_tokens, info.max_tokens)
        return cls(load_tokenizer(path, limit), info.tokenizer.sha256, limit)

    def attach(self, events: list[PaperParsed]) -> int:
        """Set ``tokens`` on every event with text to embed (one batch call); returns how many got ids."""
        todo = [(e, compose_text(e.paper.title, e.paper.abstract)) for e in events]
        todo = [(e, text) for e, text in todo if text]
        if not todo:
            return 0
        flat, lengths = tokenize(self.tokenizer, [text for _, text in todo], self.max_tokens)
        start = 0
        for (event, _), length in zip(todo, lengths.tolist(), strict=True):
            event.tokens = TokenIds.pack(flat[start : start + length], self.sha256, self.max_tokens)
            start += length
        return len(todo)


def open_tokenizer(enabled: bool | None, model_dir: Path, max_tokens: int | None = None) -> PaperTokenizer | None:
    """``enabled`` None: tokenize when the model directory has a manifest (quietly off when it has none);
    True: a missing or broken model directory is an error; False: never."""
    if enabled is False:
        return None
    if enabled is None and not (Path(model_dir) / "manifest.json").is_file():
        log.info("no embedding model at %s: papers.parsed events carry no token ids", model_dir)
        return None
    try:
        return PaperTokenizer.open(Path(model_dir), max_tokens)
    except ModelError:
        if enabled:
            raise
        log.warning("embedding model at %s unusable: papers.parsed events carry no token ids", model_dir, exc_info=True)
        return None
