"""The one Subscription model: the api validates it, the classifier scores it, the notifier reads its channels."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationInfo, field_validator, model_validator

from shared.paper import InvalidArxivId, normalize_arxiv_id
from shared.query import QueryError, parse_query
from shared.taxonomy import is_known_category
from shared.webhook_signing import secret_bytes

# An addr-spec of dot-atoms only (RFC 5322 atext, non-ASCII letters as RFC 6531 allows), domain labels of
# letters, digits and inner hyphens: no comments "(", groups ":", quotes, brackets or backslashes, which a mail
# library re-parsing the To header (aiosmtplib too, for the envelope) reads as another address than the one shown.
_ATOM = r"[\w!#$%&'*+/=?^`{|}~-]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"
_EMAIL_RE = re.compile(rf"(?=[^@]{{1,64}}@)(?=.{{3,254}}\Z){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
# Validation context of records read back from the store: they passed the rules of the release that stored them.
# Rules tightened since (e-mail addresses, webhook secrets) must not make a record unreadable, so its owner can
# still fix or delete it; the notifier refuses to send to what today's rules refuse (``is_email``, ``signs``).
STORED = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def is_email(value: str) -> bool:
    """An address today's rules accept: no comment, group, quote or bracket a mail library could re-parse."""
    return bool(_EMAIL_RE.fullmatch(value))


_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _canonical_url(url: str) -> str:
    """The URL as HttpUrl writes it, so spellings of one address give one endpoint id."""
    try:
        return str(HttpUrl(url))
    except ValueError:
        return url


class WebhookEndpoint(BaseModel):
    """A user's HTTP receiver; deliveries are signed with ``secret`` (Standard Webhooks, ``whsec_``).

    The id names the endpoint's delivery log and state (``webhook:{id}:*``), so it must never be shared by two
    subscriptions: it is random, or derived from the subscription id and URL for endpoints listed in a
    configuration file without one (see :class:`Subscription`), and kept as stored from then on."""

    id: str = Field(default="", description="default: random; in a subscriptions file, derived from its id and URL")
    url: HttpUrl
    secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/=]{16,}$")
    previous_secret: str | None = Field(default=None, description="still signed during a rotation")
    enabled: bool = True
    disabled_reason: str | None = None

    @field_validator("secret", "previous_secret")
    @classmethod
    def _signs(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A secret that the signer cannot use would fail every delivery (and the api's test event) later."""
        if value is not None and not _stored(info):
            secret_bytes(value)  # BadSecret is a ValueError: a validation error naming the field
        return value

    @model_validator(mode="after")
    def _has_id(self) -> WebhookEndpoint:
        if not self.id:
            self.id = new_id()
        return self


def webhook_endpoint_id(subscription_id: str, url: str) -> str:
    """The id of an endpoint configured without one: stable across reloads of the file, unique per subscription."""
    return hashlib.sha256(f"{subscription_id}\x1f{url}".encode()).hexdigest()[:12]


class Channels(BaseModel):
    email: str | None = None
    slack_webhook_url: HttpUrl | None = None
    webhooks: list[WebhookEndpoint] = Field(default_factory=list)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None, info: ValidationInfo) -> str | None:
        """fullmatch: ``$`` would let a trailing newline through, and the notifier's To header with it."""
        if value is not None and not is_email(value) and not _stored(info):
            raise ValueError(f"not an email address: {value!r}")
        return value


class Schedule(BaseModel):
    mode: Literal["instant", "daily", "weekly"] = "instant"
    at: time = time(8, 0)
    timezone: str = "UTC"
    weekday: int = Field(default=0, ge=0, le=6, description="weekly digests: 0 = Monday")
    heartbeat: bool = Field(default=False, description="send a one-line note when a period has nothing")

    @field_validator("at")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a local time (HH:MM) without an offset: the time zone is its own field")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        """OSError too: a tzdata folder ("America") or an over-long name fails as a file, and would be a 500."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone: {value[:100]!r}") from exc
        return value


class Trending(BaseModel):
    """Hugging Face Daily Papers' top papers by upvotes, optionally narrowed by interests or categories."""

    window: Literal["day", "week"] = "day"
    top: int = Field(default=10, ge=1, le=100)
    narrow: bool = Field(default=False, description="only trending papers that also match the interests")


class SubscriptionSpec(BaseModel):
    """What a user says they want; the api accepts exactly this."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    interests: list[str] = Field(default_factory=list, max_length=20)
    keywords: list[str] = Field(default_factory=list, max_length=50, description="boolean queries")
    categories: list[str] = Field(default_factory=list, max_length=50)
    exclude_categories: list[str] = Field(default_factory=list, max_length=50)
    include_cross_lists: bool = True
    authors: list[str] = Field(default_factory=list, max_length=100)
    """Followed authors: their papers always match, whatever the threshold and the category filters say."""
    seed_papers: list[str] = Field(default_factory=list, max_length=500)
    threshold: float = Field(default=0.45, ge=-1.0, le=1.0)
    top_k: int = Field(default=10, ge=1, le=200)
    trending: Trending | None = None
    channels: Channels = Field(default_factory=Channels)
    schedule: Schedule = Field(default_factory=Schedule)
    active: bool = True

    @field_validator("interests", "keywords", "authors")
    @classmethod
    def _no_blank(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values]
        if any(not v for v in cleaned):
            raise ValueError("entries must not be blank")
        if any(len(v) > 2000 for v in cleaned):
            raise ValueError("entries must be at most 2000 characters")
        return cleaned

    @field_validator("keywords")
    @classmethod
    def _queries_parse(cls, values: list[str]) -> list[str]:
        """The classifier runs these with the same parser, so a query that would fail there fails here."""
        problems = []
        for value in values:
            try:
                parse_query(value)
            except QueryError as exc:
                problems.append(f"{value!r}: {exc}")
        if problems:
            raise ValueError(f"bad keyword queries: {'; '.join(problems)}")
        return values

    @field_validator("categories", "exclude_categories")
    @classmethod
    def _known_categories(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if not is_known_category(v)]
        if unknown:
            raise ValueError(f"unknown arXiv categories: {', '.join(unknown)}")
        return values

    @field_validator("seed_papers")
    @classmethod
    def _arxiv_ids(cls, values: list[str]) -> list[str]:
        ids, bad = [], []
        for value in values:
            try:
                ids.append(normalize_arxiv_id(value))
            except InvalidArxivId:
                bad.append(value)
        if bad:
            raise ValueError(f"malformed arXiv ids: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(ids))

    @model_validator(mode="after")
    def _wants_something(self) -> SubscriptionSpec:
        if not (self.interests or self.seed_papers or self.keywords or self.authors or self.trending):
            raise ValueError(
                "a subscription needs interests, seed papers, keywords, authors or trending: all are empty"
            )
        return self


class Subscription(SubscriptionSpec):
    """A stored subscription: the spec plus identity, ownership and what the user rated."""

    id: str = Field(default_factory=new_id)
    owner: str = Field(default="default")
    liked: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="before")
    @classmethod
    def _configured_endpoint_ids(cls, data: Any) -> Any:
        """Endpoints given without an id (a subscriptions file) get one derived from the subscription id and URL,
        so loading the same file again keeps their delivery logs; the same URL twice is refused."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return data
        channels = data.get("channels")
        webhooks = channels.get("webhooks") if isinstance(channels, dict) else None
        if not isinstance(webhooks, list):
            return data
        given = {w["id"] for w in webhooks if isinstance(w, dict) and w.get("id")}
        filled = []
        for webhook in webhooks:
            if isinstance(webhook, dict) and not webhook.get("id") and isinstance(webhook.get("url"), str):
                endpoint_id = webhook_endpoint_id(data["id"], _canonical_url(webhook["url"]))
                if endpoint_id in given:
                    raise ValueError(f"channels.webhooks: {webhook['url']!r} is listed twice")
                given.add(endpoint_id)
                webhook = {**webhook, "id": endpoint_id}
            filled.append(webhook)
        return {**data, "channels": {**channels, "webhooks": filled}}

    @field_validator("id", "owner")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG_RE.fullmatch(value):
            raise ValueError("use 1-64 letters, digits, '_', '.' or '-'")
        return value
