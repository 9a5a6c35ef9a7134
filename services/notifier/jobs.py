"""What the notifier delivers: a job is one message to one channel target, carrying one or more matches.

Job ids are derived from what they deliver (subscription, channel, target, paper or digest period), so a
replayed match or a digest rebuilt after a crash lands on the same job instead of a second one. The job id
is also the webhook ``webhook-id`` and the e-mail ``Message-ID``: receivers can de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.events import MatchFound
from shared.paper import Paper
from shared.subscription import Subscription, is_email
from shared.taxonomy import category_matches

Channel = Literal["email", "slack", "webhook"]
JobKind = Literal["alert", "digest", "heartbeat"]

HEARTBEAT_NOTE = "no new papers: arXiv does not announce on Fridays and Saturdays"

# The classifier's reasons (services/classifier/scoring.py) that state facts about the paper, which a digest may
# list days later: these are brought up to date there, the others (similarity, keywords, score) are kept as scored.
CATEGORIES_UNKNOWN = "categories not known yet (listed on Hugging Face), so not filtered by category"
_UPVOTES_RE = re.compile(r"^\d+ upvotes on Hugging Face Daily Papers$")
_VERSION_RE = re.compile(r"^a new version \(v(\d+)\)( of an earlier paper.*)$")
_CATEGORY_RE = re.compile(r"^(?:primary category|cross-listed in) \S+$")


class MatchItem(BaseModel):
    """One matched paper as the notifier keeps it: the paper and why it matched."""

    paper: Paper
    score: float
    reasons: list[str] = Field(default_factory=list)
    trending_rank: int | None = None
    match_event_id: str | None = None

    @classmethod
    def from_event(cls, event: MatchFound) -> MatchItem:
        return cls(
            paper=event.paper,
            score=event.score,
            reasons=event.reasons,
            trending_rank=event.trending_rank,
            match_event_id=event.event_id,
        )


def _category_reason(paper: Paper, subscription: Subscription) -> str | None:
    """The classifier's category reason, for a paper whose categories became known after it matched."""
    hit = [c for c in paper.categories if any(category_matches(w, c) for w in subscription.categories)]
    if not hit:
        return None
    kind = "primary category" if hit[0] == paper.categories[0] else "cross-listed in"
    return f"{kind} {hit[0]}"


def current_reasons(item: MatchItem, paper: Paper, subscription: Subscription) -> list[str]:
    """``item``'s reasons, as of ``paper`` (the stored record, newer than the match's snapshot): nothing is scored
    again, but the facts a reason states are today's. "Categories not known yet" goes once they are known (in its
    place, the category the subscription asked for, if one is listed); an upvote count is the current one (a
    trending rank keeps the count it was ranked with); a "new version" reason names the current version."""
    upvotes = paper.hf.upvotes if paper.hf else 0
    out: list[str] = []
    for reason in item.reasons:
        if reason == CATEGORIES_UNKNOWN and paper.categories:
            category = _category_reason(paper, subscription)
            if category and not any(_CATEGORY_RE.match(r) for r in item.reasons):
                out.append(category)
            continue
        if _UPVOTES_RE.match(reason):
            out.append(f"{upvotes} upvotes on Hugging Face Daily Papers" if upvotes else reason)
            continue
        version = _VERSION_RE.match(reason)
        if version and paper.version and paper.version > int(version.group(1)):
            out.append(f"a new version (v{paper.version}){version.group(2)}")
            continue
        out.append(reason)
    return out


def current_item(item: MatchItem, paper: Paper, subscription: Subscription) -> MatchItem:
    """The match with the paper as stored now (version, abstract, links, categories, upvotes) instead of its
    snapshot from when it matched; score and the rest of the match are kept."""
    return item.model_copy(update={"paper": paper, "reasons": current_reasons(item, paper, subscription)})


class DeliveryJob(BaseModel):
    id: str
    subscription_id: str
    channel: Channel
    target: str = Field(description="email address, slack:<hash> or webhook endpoint id")
    kind: JobKind = "alert"
    items: list[MatchItem] = Field(default_factory=list)
    more: int = Field(default=0, description="matches left out of a digest capped at top-k")
    note: str | None = None
    period: str | None = Field(default=None, description="digest: the scheduled instant it covers")
    attempts: int = 0
    parts_done: int = Field(default=0, description="Slack messages of a split digest already accepted")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    last_error: str | None = None
    last_status: int | None = None

    @property
    def paper_ids(self) -> list[str]:
        return [item.paper.id for item in self.items]

    @property
    def target_key(self) -> str:
        """The queue's unit of fairness and throttling: one per receiving endpoint."""
        return f"{self.channel}:{self.target}"


def slack_target(url: str) -> str:
    """Slack webhook URLs are secrets: logs and results name them by a hash."""
    return "slack-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def job_id(subscription_id: str, channel: Channel, target: str, what: str) -> str:
    digest = hashlib.sha256(f"{subscription_id}\x1f{channel}\x1f{target}\x1f{what}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


def targets(subscription: Subscription) -> list[tuple[Channel, str]]:
    """Every (channel, target) a subscription delivers to now; disabled webhook endpoints are left out."""
    out: list[tuple[Channel, str]] = []
    channels = subscription.channels
    if channels.email and is_email(channels.email):  # one stored under older rules waits for its owner to fix it
        out.append(("email", channels.email))
    if channels.slack_webhook_url:
        out.append(("slack", slack_target(str(channels.slack_webhook_url))))
    out.extend(("webhook", endpoint.id) for endpoint in channels.webhooks if endpoint.enabled)
    return out


def alert_jobs(subscription: Subscription, item: MatchItem) -> list[DeliveryJob]:
    """An instant subscription: one message per matched paper to each target."""
    return [
        DeliveryJob(
            id=job_id(subscription.id, channel, target, f"paper:{item.paper.id}"),
            subscription_id=subscription.id,
            channel=channel,
            target=target,
            kind="alert",
            items=[item],
        )
        for channel, target in targets(subscription)
    ]


def rank(items: list[MatchItem]) -> list[MatchItem]:
    """Best first: score, then community upvotes, then id for a stable order."""

    def key(item: MatchItem) -> tuple[float, int, str]:
        upvotes = item.paper.hf.upvotes if item.paper.hf else 0
        return (-item.score, -upvotes, item.paper.id)

    return sorted(items, key=key)


def digest_jobs(
    subscription: Subscription, items: list[MatchItem], period: datetime, *, heartbeat: bool
) -> list[DeliveryJob]:
    """A digest: the period's matches ranked and capped at top-k with a count of the rest.

    Nothing when the period is empty, unless the subscriber asked for heartbeats.
    """
    if not items and not heartbeat:
        return []
    ranked = rank(items)
    kept, more = ranked[: subscription.top_k], max(0, len(ranked) - subscription.top_k)
    kind: JobKind = "digest" if kept else "heartbeat"
    return [
        DeliveryJob(
            id=job_id(subscription.id, channel, target, f"{kind}:{period.isoformat()}"),
            subscription_id=subscription.id,
            channel=channel,
            target=target,
            kind=kind,
            items=kept,
            more=more,
            note=None if kept else HEARTBEAT_NOTE,
            period=period.isoformat(),
        )
        for channel, target in targets(subscription)
    ]
