"""What the api does to subscriptions, independent of HTTP: store, then tell the other services by event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, HttpUrl

from services.api.seeds import new_seeds
from services.api.store import FeedSecrets
from services.api.webhooks import new_secret
from shared.events import Event, FeedbackGiven, Stream, SubscriptionChanged
from shared.storage import SubscriptionStore
from shared.subscription import STORED, Subscription, SubscriptionSpec, WebhookEndpoint, new_id

Publish = Callable[[Stream, Event], Awaitable[Any]]
MERGED_FIELDS = ("channels", "schedule", "trending")  # PATCH merges these one level down instead of replacing


class NotFound(LookupError):
    """Missing, or owned by someone else: the two look the same from outside."""


class Conflict(ValueError):
    pass


class WebhooksNotAccepted(ValueError):
    """Webhook endpoints are registered through their own endpoint, which generates their secret."""


def _now() -> datetime:
    return datetime.now(UTC)


class SubscriptionOps:
    def __init__(self, redis: aioredis.Redis, publish: Publish) -> None:
        self.redis = redis
        self.store = SubscriptionStore(redis)
        self.publish = publish

    async def _changed(self, subscription: Subscription, action: str) -> None:
        event = SubscriptionChanged(
            subscription_id=subscription.id,
            action=action,  # type: ignore[arg-type]
            subscription=None if action == "deleted" else subscription,
        )
        await self.publish(Stream.SUBSCRIPTIONS, event)

    async def get(self, owner: str | None, subscription_id: str) -> Subscription:
        """``owner`` None: no ownership check (signed links and feeds carry their own proof)."""
        subscription = await self.store.get(subscription_id)
        if subscription is None or (owner is not None and subscription.owner != owner):
            raise NotFound(f"subscription {subscription_id!r} not found")
        return subscription

    async def _update(
        self, owner: str | None, subscription_id: str, change: Callable[[Subscription], Subscription | None]
    ) -> tuple[Subscription, Subscription]:
        """Every edit: ``change`` applied to the stored record as one optimistic transaction, (before, after).

        A concurrent edit makes it run again on the fresh record; a concurrent delete makes it NotFound."""

        def owned(current: Subscription) -> Subscription | None:
            if owner is not None and current.owner != owner:
                raise NotFound(f"subscription {subscription_id!r} not found")
            return change(current)

        result = await self.store.update(subscription_id, owned)
        if result is None:
            raise NotFound(f"subscription {subscription_id!r} not found")
        return result

    async def list(self, owner: str) -> list[Subscription]:
        return await self.store.list(owner)

    async def create(self, owner: str, spec: SubscriptionSpec, subscription_id: str | None = None) -> Subscription:
        if spec.channels.webhooks:
            raise WebhooksNotAccepted("channels.webhooks: add endpoints with POST /v1/subscriptions/{id}/webhooks")
        data = spec.model_dump()
        if subscription_id:
            data["id"] = subscription_id
        subscription = Subscription(**data, owner=owner)
        if not await self.store.put(subscription, only_new=True):
            raise Conflict(f"id: subscription {subscription.id!r} already exists")
        await self._changed(subscription, "created")
        return subscription

    async def replace(self, owner: str | None, subscription_id: str, spec: SubscriptionSpec) -> Subscription:
        """New spec, same identity, ratings and webhook endpoints."""
        if spec.channels.webhooks:
            raise WebhooksNotAccepted("channels.webhooks: add endpoints with POST /v1/subscriptions/{id}/webhooks")
        before, updated = await self._update(owner, subscription_id, lambda current: _with_spec(current, spec))
        await self._changed(updated, "paused" if before.active and not updated.active else "updated")
        return updated

    async def patch(self, owner: str | None, subscription_id: str, changes: dict[str, Any]) -> Subscription:
        """Merge ``changes`` (top-level fields of the spec; ``channels``, ``schedule`` and ``trending`` merged one
        level down, so ``{"schedule": {"at": "09:00"}}`` keeps a weekly digest weekly) into the stored spec and
        revalidate. The web form's edits come here too; merged inside the transaction, on the fresh record."""

        def change(current: Subscription) -> Subscription:
            data = current.model_dump(include=set(SubscriptionSpec.model_fields))
            data["channels"].pop("webhooks", None)
            for key, value in changes.items():
                if key in MERGED_FIELDS and isinstance(value, dict) and isinstance(data.get(key), dict):
                    data[key] = {**data[key], **value}
                else:
                    data[key] = value
            spec = SubscriptionSpec.model_validate(data)
            if spec.channels.webhooks:
                raise WebhooksNotAccepted("channels.webhooks: add endpoints with POST /v1/subscriptions/{id}/webhooks")
            return _with_spec(current, spec)

        before, updated = await self._update(owner, subscription_id, change)
        await self._changed(updated, "paused" if before.active and not updated.active else "updated")
        return updated

    async def add_seeds(
        self, owner: str | None, subscription_id: str, ids: list[str]
    ) -> tuple[Subscription, list[str], list[str]]:
        """Add the seed papers it does not have yet, as an edit (stored, SubscriptionChanged published), and
        return (subscription, added, already there). Nothing new: nothing is stored or published."""
        found: dict[str, list[str]] = {}

        def change(current: Subscription) -> Subscription | None:
            found["added"], found["present"] = new_seeds(current.seed_papers, ids)
            if not found["added"]:
                return None
            spec = SubscriptionSpec.model_validate(
                {
                    **current.model_dump(include=set(SubscriptionSpec.model_fields)),
                    "seed_papers": [*current.seed_papers, *found["added"]],
                    "channels": current.channels.model_dump(exclude={"webhooks"}),
                }
            )
            return _with_spec(current, spec)

        _before, updated = await self._update(owner, subscription_id, change)
        if found["added"]:
            await self._changed(updated, "updated")
        return updated, found["added"], found["present"]

    async def set_active(self, owner: str | None, subscription_id: str, active: bool) -> Subscription:
        _before, updated = await self._update(
            owner, subscription_id, lambda current: current.model_copy(update={"active": active, "updated_at": _now()})
        )
        await self._changed(updated, "updated" if active else "paused")
        return updated

    async def delete(self, owner: str | None, subscription_id: str) -> None:
        """Remove it, then tell the other services. Idempotent: when the record is already gone because an
        earlier call removed it but could not publish, a retry by its owner publishes ``deleted`` again."""
        subscription = await self.store.get(subscription_id)
        if subscription is not None:
            if owner is not None and subscription.owner != owner:
                raise NotFound(f"subscription {subscription_id!r} not found")
            await self.store.delete(subscription_id)
        else:
            deleted_by = await self.store.deleted_owner(subscription_id)
            if deleted_by is None or (owner is not None and deleted_by != owner):
                raise NotFound(f"subscription {subscription_id!r} not found")
        await FeedSecrets(self.redis).forget(subscription_id)
        await self.publish(Stream.SUBSCRIPTIONS, SubscriptionChanged(subscription_id=subscription_id, action="deleted"))

    async def add_webhook(self, owner: str, subscription_id: str, url: HttpUrl | str) -> WebhookEndpoint:
        endpoint = WebhookEndpoint(id=new_id(), url=url, secret=new_secret())

        def change(current: Subscription) -> Subscription:
            if any(str(w.url) == str(endpoint.url) for w in current.channels.webhooks):
                raise Conflict(f"url: this subscription already has a webhook endpoint for {str(endpoint.url)!r}")
            if len(current.channels.webhooks) >= 10:
                raise Conflict("url: at most 10 webhook endpoints per subscription")
            return _with_webhooks(current, [*current.channels.webhooks, endpoint])

        _before, updated = await self._update(owner, subscription_id, change)
        await self._changed(updated, "updated")
        return endpoint

    def endpoint(self, subscription: Subscription, endpoint_id: str) -> WebhookEndpoint:
        for endpoint in subscription.channels.webhooks:
            if endpoint.id == endpoint_id:
                return endpoint
        raise NotFound(f"webhook endpoint {endpoint_id!r} not found")

    async def update_webhook(
        self, owner: str, subscription_id: str, endpoint_id: str, **changes: Any
    ) -> WebhookEndpoint:
        def change(current: Subscription) -> Subscription:
            self.endpoint(current, endpoint_id)
            webhooks = [w.model_copy(update=changes) if w.id == endpoint_id else w for w in current.channels.webhooks]
            return _with_webhooks(current, webhooks)

        _before, updated = await self._update(owner, subscription_id, change)
        await self._changed(updated, "updated")
        return self.endpoint(updated, endpoint_id)

    async def remove_webhook(self, owner: str, subscription_id: str, endpoint_id: str) -> None:
        def change(current: Subscription) -> Subscription:
            self.endpoint(current, endpoint_id)
            return _with_webhooks(current, [w for w in current.channels.webhooks if w.id != endpoint_id])

        _before, updated = await self._update(owner, subscription_id, change)
        await self._changed(updated, "updated")

    async def rate(
        self,
        subscription_id: str,
        paper_id: str,
        label: Literal["like", "dislike"],
        via: Literal["email", "slack", "api", "web"],
    ) -> Subscription:
        """Record the rating on the subscription (idempotent) and publish it for the classifier."""

        def change(current: Subscription) -> Subscription:
            liked = [p for p in current.liked if p != paper_id]
            disliked = [p for p in current.disliked if p != paper_id]
            (liked if label == "like" else disliked).append(paper_id)
            return current.model_copy(update={"liked": liked, "disliked": disliked, "updated_at": _now()})

        _before, updated = await self._update(None, subscription_id, change)
        await self.publish(
            Stream.FEEDBACK, FeedbackGiven(subscription_id=subscription_id, paper_id=paper_id, label=label, via=via)
        )
        return updated


def _with_spec(current: Subscription, spec: SubscriptionSpec) -> Subscription:
    """``spec`` applied to ``current``: its identity, ratings and webhook endpoints kept."""
    data = spec.model_dump()
    data["channels"]["webhooks"] = [w.model_dump() for w in current.channels.webhooks]
    keep = current.model_dump(include={"id", "owner", "liked", "disliked", "created_at"})
    # The spec was validated as input; the kept endpoints as stored (they may predate today's secret rule).
    return Subscription.model_validate({**data, **keep, "updated_at": _now()}, context=STORED)


def _with_webhooks(current: Subscription, webhooks: list[WebhookEndpoint]) -> Subscription:
    channels = current.channels.model_copy(update={"webhooks": webhooks})
    return current.model_copy(update={"channels": channels, "updated_at": _now()})


class WebhookView(BaseModel):
    """An endpoint as the api shows it after creation: the secret is never shown again."""

    id: str
    url: str
    enabled: bool
    disabled_reason: str | None = None
    secret_hint: str


def webhook_view(endpoint: WebhookEndpoint) -> WebhookView:
    return WebhookView(
        id=endpoint.id,
        url=str(endpoint.url),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        secret_hint=endpoint.secret[:10] + "…",
    )


class SubscriptionView(BaseModel):
    """A stored Subscription as answered by the api: same fields, webhook secrets hidden."""

    id: str
    owner: str
    spec: SubscriptionSpec
    webhooks: list[WebhookView]
    liked: list[str]
    disliked: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime


def subscription_view(subscription: Subscription) -> SubscriptionView:
    spec = subscription.model_dump(include=set(SubscriptionSpec.model_fields))
    spec["channels"]["webhooks"] = []
    return SubscriptionView(
        id=subscription.id,
        owner=subscription.owner,
        spec=SubscriptionSpec.model_validate(spec, context=STORED),  # shown as stored, so its owner can fix it
        webhooks=[webhook_view(w) for w in subscription.channels.webhooks],
        liked=subscription.liked,
        disliked=subscription.disliked,
        active=subscription.active,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )
