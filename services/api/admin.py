"""What the CLI does, as plain async functions on a Redis URL (the CLI wraps them; tests call them too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import yaml

from services.api.store import OwnerStore, TokenInfo, TokenStore
from services.api.subscriptions import SubscriptionOps, subscription_view
from shared.config_yaml import load_yaml
from shared.consumer import ensure_groups
from shared.events import Event, Stream
from shared.runtime import make_broker
from shared.subscription import Subscription, SubscriptionSpec


@asynccontextmanager
async def connected(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, SubscriptionOps]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await ensure_groups(client)
        async with make_broker(redis_url) as broker:

            async def publish(stream: Stream, event: Event) -> Any:
                return await broker.publish(event, stream=str(stream))

            yield client, SubscriptionOps(client, publish)
    finally:
        await client.aclose()


async def create_owner(redis_url: str, owner: str) -> bool:
    async with connected(redis_url) as (client, _ops):
        return await OwnerStore(client).create(owner)


async def create_token(redis_url: str, owner: str) -> tuple[str, TokenInfo]:
    async with connected(redis_url) as (client, _ops):
        return await TokenStore(client).create(owner)


async def revoke_token(redis_url: str, token_id: str) -> bool:
    async with connected(redis_url) as (client, _ops):
        return await TokenStore(client).revoke(token_id)


async def list_tokens(redis_url: str, owner: str) -> list[TokenInfo]:
    async with connected(redis_url) as (client, _ops):
        return await TokenStore(client).list(owner)


def read_spec(text: str) -> SubscriptionSpec:
    """One subscription spec from YAML or JSON (JSON is YAML), read as ``subscriptions load`` reads a file."""
    return SubscriptionSpec.model_validate(load_yaml(text))


async def create_subscription(
    redis_url: str, owner: str, spec: SubscriptionSpec, subscription_id: str | None = None
) -> Subscription:
    async with connected(redis_url) as (client, ops):
        if not await OwnerStore(client).exists(owner):
            raise LookupError(f"owner {owner!r} does not exist: run `paperwire owners create {owner}` first")
        return await ops.create(owner, spec, subscription_id)


async def show_subscription(redis_url: str, subscription_id: str) -> dict[str, Any]:
    async with connected(redis_url) as (_client, ops):
        return subscription_view(await ops.get(None, subscription_id)).model_dump(mode="json")


async def export_subscriptions(redis_url: str, owner: str | None, with_secrets: bool = False) -> str:
    """YAML that ``paperwire subscriptions load`` reads back; webhook endpoints only with their secrets."""
    async with connected(redis_url) as (_client, ops):
        subscriptions = await ops.store.list(owner)
    entries = []
    for subscription in subscriptions:
        entry = subscription.model_dump(mode="json", exclude={"created_at", "updated_at"})
        if not with_secrets:
            entry["channels"].pop("webhooks", None)
        entries.append(entry)
    return yaml.safe_dump({"subscriptions": entries}, sort_keys=False, allow_unicode=True)
