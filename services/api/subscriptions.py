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
from shared.subscription import Subscription, SubscriptionSpec, WebhookEndpoint

Publish = Callable[[Stream, Event], Awaitable[Any]]


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

    async def list(self, owner: str) -> list[Subscription]:
        return await self.store.list(owner)

    async def create(self, owner: str, spec: SubscriptionSpec, subscription_id: str | None = None) -> Subscription:
        if spec.channels.webhooks:
            raise WebhooksNotAccepted("channels.webhooks: add endpoints with POST /v1/subscriptions/{id}/webhooks")
        data = spec.model_dump()
        if subscription_id:
            if await self.store.get(subscription_id) is not None:
                raise Conflict(f"id: subscription {subscription_id!r} already exists")
            data["id"] = subscription_id
        subscription = Subscription(**data, owner=owner)
        await self.store.put(subscription)
        await self._changed(subscription, "created")
        return subscription

    async def replace(self, owner: str | None, subscription_id: str, spec: SubscriptionSpec) -> Subscription:
        """New spec, same identity, ratings and webhook endpoints."""
        current = await self.get(owner, subscription_id)
        if spec.channels.webhooks:
            raise WebhooksNotAccepted("channels.webhooks: add endpoints with POST /v1/subscriptions/{id}/webhooks")
        data = spec.model_dump()
        data["channels"]["webhooks"] = [w.model_dump() for w in current.channels.webhooks]
        keep = current.model_dump(include={"id", "owner", "liked", "disliked", "created_at"})
        updated = Subscription.model_validate({**data, **keep, "updated_at": _now()})
        await self.store.put(updated)
        await self._changed(updated, "paused" if current.active and not updated.active else "updated")
        return updated

    async def patch(self, owner: str | None, subscription_id: str, changes: dict[str, Any]) -> Subscription:
        """Merge ``changes`` (top-level fields of the spec; ``channels`` merged one level down) and revalidate."""
        current = await self.get(owner, subscription_id)
        data = current.model_dump(include=set(SubscriptionSpec.model_fields))
        data["channels"].pop("webhooks", None)
        for key, value in changes.items():
            if key == "channels" and isinstance(value, dict):
                data["channels"] = {**data["channels"], **value}
            else:
                data[key] = value
        spec = SubscriptionSpec.model_validate(data)
        return await self.replace(owner, subscription_id, spec)

    async def add_seeds(
        self, owner: str | None, subscription_id: str, ids: list[str]
    ) -> tuple[Subscription, list[str], list[str]]:
        """Add the seed papers it does not have yet, as an edit (stored, SubscriptionChanged published), and
        return (subscription, added, already there). Nothing new: nothing is stored or published."""
        current = await self.get(owner, subscription_id)
        added, present = new_seeds(current.seed_papers, ids)
        if not added:
            return current, added, present
        updated = await self.patch(owner, subscription_id, {"seed_papers": [*current.seed_papers, *added]})
        return updated, added, present

    async def set_active(self, owner: str | None, subscription_id: str, active: bool) -> Subscription:
        current = await self.get(owner, subscription_id)
        updated = current.model_copy(update={"active": active, "updated_at": _now()})
        await self.store.put(updated)
        await self._changed(updated, "updated" if active else "paused")
        return updated

    async def delete(self, owner: str | None, subscription_id: str) -> None:
        subscription = await self.get(owner, subscription_id)
        await self.store.delete(subscription.id)
        await FeedSecrets(self.redis).forget(subscription.id)
        await self._changed(subscription, "deleted")

    async def add_webhook(self, owner: str, subscription_id: str, url: HttpUrl | str) -> WebhookEndpoint:
        current = await self.get(owner, subscription_id)
        if len(current.channels.webhooks) >= 10:
            raise Conflict("url: at most 10 webhook endpoints per subscription")
        endpoint = WebhookEndpoint(url=url, secret=new_secret())
        channels = current.channels.model_copy(update={"webhooks": [*current.channels.webhooks, endpoint]})
        updated = current.model_copy(update={"channels": channels, "updated_at": _now()})
        await self.store.put(updated)
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
        current = await self.get(owner, subscription_id)
        self.endpoint(current, endpoint_id)
        webhooks = [w.model_copy(update=changes) if w.id == endpoint_id else w for w in current.channels.webhooks]
        await self._put_webhooks(current, webhooks)
        return self.endpoint((await self.get(owner, subscription_id)), endpoint_id)

    async def remove_webhook(self, owner: str, subscription_id: str, endpoint_id: str) -> None:
        current = await self.get(owner, subscription_id)
        self.endpoint(current, endpoint_id)
        await self._put_webhooks(current, [w for w in current.channels.webhooks if w.id != endpoint_id])

    async def _put_webhooks(self, current: Subscription, webhooks: list[WebhookEndpoint]) -> None:
        channels = current.channels.model_copy(update={"webhooks": webhooks})
        updated = current.model_copy(update={"channels": channels, "updated_at": _now()})
        await self.store.put(updated)
        await self._changed(updated, "updated")

    async def rate(
        self,
        subscription_id: str,
        paper_id: str,
        label: Literal["like", "dislike"],
        via: Literal["email", "slack", "api", "web"],
    ) -> Subscription:
        """Record the rating on the subscription (idempotent) and publish it for the classifier."""
        current = await self.get(None, subscription_id)
        liked = [p for p in current.liked if p != paper_id]
        disliked = [p for p in current.disliked if p != paper_id]
        (liked if label == "like" else disliked).append(paper_id)
        updated = current.model_copy(update={"liked": liked, "disliked": disliked, "updated_at": _now()})
        await self.store.put(updated)
        await self.publish(
            Stream.FEEDBACK, FeedbackGiven(subscription_id=subscription_id, paper_id=paper_id, label=label, via=via)
        )
        return updated


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
        spec=SubscriptionSpec.model_validate(spec),
        webhooks=[webhook_view(w) for w in subscription.channels.webhooks],
        liked=subscription.liked,
        disliked=subscription.disliked,
        active=subscription.active,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )
