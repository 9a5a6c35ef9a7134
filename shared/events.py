"""The event contract: stream names and the pydantic model carried on each stream.

Every event has an ``event_id`` (idempotency and log correlation) and a ``schema_version``.
A consumer that meets a version it does not know dead-letters the event instead of guessing.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import BaseModel, Field, field_validator, model_validator

from shared.paper import Paper, SourceName
from shared.subscription import STORED, Subscription


class Stream(StrEnum):
    RAW = "papers.raw"
    PARSED = "papers.parsed"
    EMBEDDED = "papers.embedded"
    TRENDING = "papers.trending"
    MATCHES = "matches"
    DELIVERIES = "deliveries"
    DELIVERIES_FAILED = "deliveries.failed"  # retries spent; not `deliveries.dead`, the dead letters of `deliveries`
    FEEDBACK = "feedback"
    SUBSCRIPTIONS = "subscriptions"
    FETCH_REQUESTS = "fetch.requests"
    DELIVERIES_REPLAY = "deliveries.replay"


def dead_letter_stream(stream: str) -> str:
    return f"{stream}.dead"


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    schema_version: Literal[1] = 1
    occurred_at: datetime = Field(default_factory=_now)


class RawPapers(Event):
    """One fetched response, verbatim: the parser owns turning it into papers."""

    source: SourceName
    url: str
    fetched_at: datetime = Field(default_factory=_now)
    content_type: str | None = None
    body: str


class TokenIds(BaseModel):
    """Word-piece ids of the paper's embedding text, made upstream (parser replicas scale out) so the
    embedder spends its host's cores feeding the GPU instead of tokenizing. Used only when the
    tokenizer and max_tokens match the embedder's model; otherwise the embedder tokenizes itself."""

    tokenizer_sha256: str
    max_tokens: int
    ids: str = Field(description="base64 of little-endian uint16 ids, [CLS] ... [SEP] included")

    @classmethod
    def pack(cls, ids: np.ndarray, tokenizer_sha256: str, max_tokens: int) -> TokenIds:
        data = base64.b64encode(np.asarray(ids, dtype="<u2").tobytes()).decode()
        return cls(tokenizer_sha256=tokenizer_sha256, max_tokens=max_tokens, ids=data)

    def array(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.ids), dtype="<u2").astype(np.int64)


class PaperParsed(Event):
    paper: Paper
    change: Literal["new", "updated", "merged"] = "new"
    tokens: TokenIds | None = None


class UpvotesChanged(Event):
    """A known paper's Hugging Face Daily Papers upvotes moved: what trending ranks are made of.

    The parser publishes one whenever the stored count changes, and one for the first count it learns
    (a paper first listed on Daily Papers, ``upvotes_before`` None), so a consumer's board holds every
    listed paper. An upvote move alone is no ``PaperParsed`` event: the paper's text did not change.
    """

    paper_id: str
    daily_date: date = Field(description="the Daily Papers day the paper is listed on")
    upvotes: int
    upvotes_before: int | None = Field(default=None, description="None: the first count seen for this paper")


class EmbeddingManifest(BaseModel):
    """Identifies the vector space: vectors with different manifests are never compared."""

    model_id: str
    dims: int
    max_tokens: int
    precision: str
    sha256: str

    @property
    def space(self) -> str:
        """The key that decides comparability: model id and dims, not the runtime precision (``sha256`` is the
        precision's own file, so it differs between fp32, fp16 and int8 of the same weights). Other weights under
        the same model id would be compared: export a fine-tuned model under an id of its own."""
        return f"{self.model_id}:{self.dims}"


class PaperEmbedded(Event):
    paper: Paper
    vector: str = Field(description="base64 of little-endian float16 or float32 values")
    dtype: Literal["float16", "float32"] = "float16"
    manifest: EmbeddingManifest

    @classmethod
    def pack(cls, vector: np.ndarray, dtype: Literal["float16", "float32"] = "float16") -> str:
        return base64.b64encode(np.asarray(vector, dtype=f"<{'f2' if dtype == 'float16' else 'f4'}").tobytes()).decode()

    def array(self) -> np.ndarray:
        raw = base64.b64decode(self.vector)
        return np.frombuffer(raw, dtype="<f2" if self.dtype == "float16" else "<f4").astype(np.float32)

    @model_validator(mode="after")
    def _a_usable_vector(self) -> PaperEmbedded:
        """One wrong-length or non-finite vector in the classifier's background sample would break the
        calibration of every subscription: such an event is refused here, and so dead-lettered."""
        try:
            vector = self.array()
        except ValueError as exc:  # not base64, or not a whole number of floats
            raise ValueError(f"vector is not {self.dtype} values: {exc}") from exc
        if len(vector) != self.manifest.dims:
            raise ValueError(f"vector has {len(vector)} values, the manifest says {self.manifest.dims} dims")
        if not np.isfinite(vector).all():
            raise ValueError("vector holds NaN or infinite values")
        return self


class MatchFound(Event):
    subscription_id: str
    owner: str
    paper: Paper
    score: float
    reasons: list[str] = Field(default_factory=list, description="why it matched, in plain words")
    trending_rank: int | None = None


DeliveryStatus = Literal["delivered", "failed", "dead", "skipped", "duplicate"]


class DeliveryResult(Event):
    match_event_id: str | None = None
    subscription_id: str
    paper_ids: list[str]
    channel: Literal["email", "slack", "webhook"]
    target: str
    status: DeliveryStatus
    attempts: int = 1
    status_code: int | None = None
    error: str | None = None


class FeedbackGiven(Event):
    subscription_id: str
    paper_id: str
    label: Literal["like", "dislike"]
    via: Literal["email", "slack", "api", "web"] = "api"


class SubscriptionChanged(Event):
    subscription_id: str
    action: Literal["created", "updated", "paused", "deleted"]
    subscription: Subscription | None = None

    @field_validator("subscription", mode="before")
    @classmethod
    def _as_stored(cls, value: Any) -> Any:
        """The record as the api stored it: read like the store reads it (rules tightened since, such as the e-mail
        pattern, must not make consumers reject the change of a record its owner has yet to fix)."""
        return Subscription.model_validate(value, context=STORED) if isinstance(value, dict) else value


class FetchRequested(Event):
    """Ask the fetcher for specific papers (seed papers, liked papers it has not seen yet)."""

    arxiv_ids: list[str]
    reason: str = ""


class ReplayRequested(Event):
    """Ask the notifier to retry dead deliveries (all of a subscription's, or the given delivery ids of it).

    The subscription is required: an entry that does not name one is malformed, not a command to retry every
    subscription's dead deliveries (operators do that with ``paperwire deliveries replay --all``)."""

    subscription_id: str = Field(min_length=1)
    delivery_ids: list[str] = Field(default_factory=list)
    requested_by: str = ""


# Which service groups consume each stream. Every service creates all of them at id 0 on start,
# so entries published before a consumer first runs are never skipped.
CONSUMER_GROUPS: dict[Stream, tuple[str, ...]] = {
    Stream.RAW: ("parser",),
    Stream.PARSED: ("embedder",),
    Stream.EMBEDDED: ("classifier",),
    Stream.TRENDING: ("classifier",),
    Stream.MATCHES: ("notifier",),
    Stream.FEEDBACK: ("classifier",),
    Stream.SUBSCRIPTIONS: ("classifier", "notifier"),
    Stream.FETCH_REQUESTS: ("fetcher",),
    Stream.DELIVERIES: ("api",),
    Stream.DELIVERIES_REPLAY: ("notifier",),
}

STREAM_MODELS: dict[Stream, type[Event]] = {
    Stream.RAW: RawPapers,
    Stream.PARSED: PaperParsed,
    Stream.EMBEDDED: PaperEmbedded,
    Stream.TRENDING: UpvotesChanged,
    Stream.MATCHES: MatchFound,
    Stream.DELIVERIES: DeliveryResult,
    Stream.FEEDBACK: FeedbackGiven,
    Stream.SUBSCRIPTIONS: SubscriptionChanged,
    Stream.FETCH_REQUESTS: FetchRequested,
    Stream.DELIVERIES_REPLAY: ReplayRequested,
}


def entry_body(fields: dict[Any, Any]) -> dict[str, Any] | None:
    """The JSON body FastStream published in a stream entry (``__data__``, its binary envelope, which also reads
    the older JSON one), or None when the entry is not one of ours: for code that reads a stream directly."""
    data = next((v for k, v in fields.items() if k in (b"__data__", "__data__")), None)
    if data is None:
        return None
    body, _headers = BinaryMessageFormatV1.parse(data if isinstance(data, bytes) else str(data).encode())
    try:
        value = json.loads(body)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None
