"""Turning one XREADGROUP batch of papers.parsed bodies into texts to embed, and the events that come out.

Pure: no Redis, no model. A body that is not a PaperParsed, or whose paper has no words to embed, is
rejected with a reason (the app dead-letters it) while the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from shared.consumer import BadEvent, parse_event
from shared.events import EmbeddingManifest, PaperEmbedded, PaperParsed
from shared.text_tokens import TextTokenizer, compose_text

_WORD = re.compile(r"\w", re.UNICODE)


class UnembeddableText(ValueError):
    """The paper has nothing an embedding could represent: dead-letter, never retry."""


@dataclass
class Item:
    index: int  # position in the XREADGROUP batch (matches the entry id)
    event: PaperParsed
    text: str


@dataclass
class Rejected:
    index: int
    reason: str


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)  # same event id earlier in this batch


def paper_text(event: PaperParsed) -> str:
    """The text policy of ``shared.text_tokens.compose_text``, refusing papers with no words."""
    text = compose_text(event.paper.title, event.paper.abstract)
    if not text:
        raise UnembeddableText(f"empty text: paper {event.paper.id} has neither title nor abstract")
    if not _WORD.search(text):
        raise UnembeddableText(f"broken text: paper {event.paper.id} has no words in title or abstract: {text[:80]!r}")
    return text


def is_current(item: Item, stored: bytes | None) -> bool:
    """Whether the event still describes the stored paper's text (``stored``: the paper's JSON in the store).

    A parser writes a paper before publishing its event, so one whose stored text has moved on is an older version
    published late (a racing replica): the writer of the stored text publishes that version's own event, which is
    the one to embed. A paper not in the store (an event from elsewhere) is embedded as it comes. Only the two text
    fields are read, not the whole model: a batch on the GPU is a thousand papers.
    """
    if stored is None:
        return True
    paper = json.loads(stored)
    return compose_text(paper.get("title") or "", paper.get("abstract") or "") == item.text


def plan_batch(bodies: list[Any]) -> Plan:
    plan = Plan()
    seen: set[str] = set()
    for index, body in enumerate(bodies):
        try:
            event = parse_event(body, PaperParsed)
            text = paper_text(event)
        except (BadEvent, UnembeddableText) as exc:
            plan.rejected.append(Rejected(index, str(exc)))
            continue
        if event.event_id in seen:
            plan.repeats.append(index)
            continue
        seen.add(event.event_id)
        plan.items.append(Item(index, event, text))
    return plan


def drop_broken(
    items: list[Item], vectors: np.ndarray, precision: str
) -> tuple[list[Item], np.ndarray, list[tuple[int, str]]]:
    """The items whose vectors are finite, their vectors, and ``(index, reason)`` for the others: stored, a NaN
    would reach every profile that uses the paper as a seed or a rating (fp16 can overflow on odd text)."""
    broken = ~np.isfinite(vectors).all(axis=1)
    reason = f"the model ({precision}) gave NaN or infinite values for this text"
    rejected = [(items[i].index, reason) for i in np.flatnonzero(broken)]
    return [item for item, bad in zip(items, broken, strict=True) if not bad], vectors[~broken], rejected


def embedded_events(
    items: list[Item],
    vectors: np.ndarray,
    manifest: EmbeddingManifest,
    dtype: Literal["float16", "float32"] = "float16",
) -> list[PaperEmbedded]:
    return [
        PaperEmbedded(paper=item.event.paper, vector=PaperEmbedded.pack(vec, dtype), dtype=dtype, manifest=manifest)
        for item, vec in zip(items, vectors, strict=True)
    ]


class CarriedIdsUser(Protocol):
    """What ``carried_ids`` needs of the embedder (an ``Embedder``; the protocol keeps this module model-free)."""

    max_tokens: int
    tokenizer: TextTokenizer

    def accepts(self, tokenizer_sha256: str, max_tokens: int) -> bool: ...


def carried_ids(event: PaperParsed, embedder: CarriedIdsUser) -> np.ndarray | None:
    """The parser's token ids when they were made by this embedder's tokenizer with its max_tokens and could
    have come from it (strict base64, ids within the vocabulary, [CLS] first and [SEP] last), else None: the
    embedder then tokenizes the text itself, so a parser running another model never changes a vector, and
    one bad paper's ids never fail its whole batch in ONNX Runtime."""
    tokens = event.tokens
    if tokens is None or not embedder.accepts(tokens.tokenizer_sha256, tokens.max_tokens):
        return None
    try:
        ids = np.frombuffer(base64.b64decode(tokens.ids, validate=True), dtype="<u2").astype(np.int64)
    except ValueError:  # not base64 (binascii.Error) or an odd byte count
        return None
    return ids if embedder.tokenizer.well_formed(ids) else None


def done_key(event_id: str) -> str:
    """Marks a papers.parsed event as embedded and published: redelivery then publishes nothing twice."""
    return f"once:embedder:{event_id}"
