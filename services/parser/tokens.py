"""Token ids for the embedder, made here: parser replicas scale out, so the embedder host spends its cores
feeding the GPU instead of tokenizing (DESIGN.md: one host tokenizes at most ~27k texts/s).

Same text policy as the embedder (``shared.text_tokens.compose_text`` + ``tokenize``); the ids carry the
tokenizer's sha256 and max_tokens so an embedder with another model ignores them and tokenizes itself.

``attach`` is CPU work (~0.2-0.3 ms a paper, a document holds hundreds): the service runs it in a worker
thread so the event loop (consumer heartbeats, other handlers) keeps running meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.events import PaperParsed, TokenIds
from shared.model_files import DEFAULT_MODEL_ID, ModelError, ModelManifest, check_model_id, verify_file
from shared.text_tokens import compose_text, load_tokenizer, tokenize

log = logging.getLogger("paperwire.parser.tokens")


@dataclass
class PaperTokenizer:
    """The embedding model's tokenizer, identified by its sha256 from the model manifest."""

    tokenizer: Any
    sha256: str
    max_tokens: int
    # Texts per flash-tokenizer call: it holds the GIL for a whole call (a 387-paper document: ~80 ms), so a
    # worker thread alone would still stall the event loop; 32 texts is a few ms and costs no throughput.
    # HF tokenizers releases the GIL while it encodes, so it gets the whole batch in one call.
    flash_chunk: int = 32

    @classmethod
    def open(
        cls, model_dir: Path, max_tokens: int | None = None, *, model_id: str = DEFAULT_MODEL_ID
    ) -> PaperTokenizer:
        """Raise ModelError when the directory has no usable manifest, holds another model than ``model_id``, or
        its tokenizer file does not match the manifest."""
        info = ModelManifest.read(model_dir)
        check_model_id(info, model_id, model_dir)
        path = verify_file(model_dir, info.tokenizer)
        limit = min(max_tokens or info.max_tokens, info.max_tokens)
        return cls(load_tokenizer(path, limit), info.tokenizer.sha256, limit)

    def attach(self, events: list[PaperParsed]) -> int:
        """Set ``tokens`` on every event with text to embed; returns how many got ids.

        Blocking (CPU): call it from a worker thread (``asyncio.to_thread``), not on the event loop.
        """
        todo = [(e, compose_text(e.paper.title, e.paper.abstract)) for e in events]
        todo = [(e, text) for e, text in todo if text]
        step = self.flash_chunk if getattr(self.tokenizer, "engine", "hf") == "flash" else len(todo)
        for first in range(0, len(todo), max(step, 1)):
            part = todo[first : first + step]
            flat, lengths = tokenize(self.tokenizer, [text for _, text in part], self.max_tokens)
            start = 0
            for (event, _), length in zip(part, lengths.tolist(), strict=True):
                event.tokens = TokenIds.pack(flat[start : start + length], self.sha256, self.max_tokens)
                start += length
        return len(todo)


def open_tokenizer(
    enabled: bool | None, model_dir: Path, max_tokens: int | None = None, *, model_id: str = DEFAULT_MODEL_ID
) -> PaperTokenizer | None:
    """``enabled`` None: tokenize when the model directory has a manifest (quietly off when it has none);
    True: a missing or broken model directory is an error; False: never."""
    if enabled is False:
        return None
    if enabled is None and not (Path(model_dir) / "manifest.json").is_file():
        log.info("no embedding model at %s: papers.parsed events carry no token ids", model_dir)
        return None
    try:
        return PaperTokenizer.open(Path(model_dir), max_tokens, model_id=model_id)
    except ModelError:
        if enabled:
            raise
        log.warning("embedding model at %s unusable: papers.parsed events carry no token ids", model_dir, exc_info=True)
        return None
