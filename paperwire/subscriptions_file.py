"""Subscriptions as configuration: a YAML file of subscriptions, validated, stored and announced."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
import yaml
from pydantic import ValidationError

from shared.cli_errors import file_problem
from shared.config_yaml import load_yaml, yaml_problem
from shared.events import Stream, SubscriptionChanged
from shared.runtime import make_broker
from shared.storage import SubscriptionStore
from shared.subscription import Subscription


class SubscriptionFileError(ValueError):
    """The file is not a list of valid subscriptions; the message names the entry and the field."""


def read_subscriptions(path: Path) -> list[Subscription]:
    """The subscriptions of a YAML file; a file that is missing, unreadable or invalid is a SubscriptionFileError
    naming it, so ``subscriptions load`` prints one line instead of a traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriptionFileError(file_problem(path, exc)) from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SubscriptionFileError(f"{path}: {yaml_problem(exc)}") from exc
    if isinstance(data, dict):
        data = data.get("subscriptions", [])
    if not isinstance(data, list):
        raise SubscriptionFileError(f"{path}: expected a list of subscriptions (or a 'subscriptions:' key)")
    subscriptions = []
    for index, entry in enumerate(data):
        if isinstance(entry, dict) and not entry.get("id"):
            name = entry.get("name", "?")
            raise SubscriptionFileError(
                f"{path}: subscription #{index + 1} ({name}): id: required in a file (without one, every load would "
                "store another copy)"
            )
        try:
            subscriptions.append(Subscription.model_validate(entry))
        except ValidationError as exc:
            name = entry.get("name", "?") if isinstance(entry, dict) else "?"
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(entry)'}: {e['msg']}" for e in exc.errors())
            raise SubscriptionFileError(f"{path}: subscription #{index + 1} ({name}): {problems}") from exc
    ids = [s.id for s in subscriptions]
    if len(ids) != len(set(ids)):
        raise SubscriptionFileError(f"{path}: duplicate subscription ids")
    return subscriptions


async def load_subscriptions(redis_url: str, subscriptions: list[Subscription]) -> list[str]:
    """Store each subscription and publish a SubscriptionChanged so running services pick it up."""
    client = aioredis.Redis.from_url(redis_url)
    store = SubscriptionStore(client)
    actions = []
    try:
        async with make_broker(redis_url) as broker:
            for subscription in subscriptions:
                stored = await store.get(subscription.id)
                action = "updated" if stored else "created"
                notes = ""
                if stored is not None:
                    subscription = kept_from_store(subscription, stored)
                    if subscription.owner != stored.owner:
                        notes += f", owner {stored.owner} -> {subscription.owner}"
                    if not subscription.active:
                        notes += ", paused"
                await store.put(subscription)
                event = SubscriptionChanged(subscription_id=subscription.id, action=action, subscription=subscription)
                await broker.publish(event, stream=Stream.SUBSCRIPTIONS)
                actions.append(f"{action} {subscription.id} ({subscription.name}{notes})")
    finally:
        await client.aclose()
    return actions


def kept_from_store(loaded: Subscription, stored: Subscription) -> Subscription:
    """A file loaded again over a running service keeps what its users did meanwhile, unless the file sets it:
    their ratings, a pause or an unsubscribe (a reload must not mail someone who unsubscribed), the webhook
    endpoints they added through the api (a plain export leaves them out, secrets and all), when the subscription
    was created, and its owner (else an entry without one moves it to "default")."""
    keep: dict[str, object] = {
        name: getattr(stored, name)
        for name in ("owner", "active", "liked", "disliked", "created_at")
        if name not in loaded.model_fields_set
    }
    if "channels" not in loaded.model_fields_set or "webhooks" not in loaded.channels.model_fields_set:
        keep["channels"] = loaded.channels.model_copy(update={"webhooks": stored.channels.webhooks})
    return loaded.model_copy(update=keep)


async def list_subscriptions(redis_url: str, owner: str | None = None) -> list[Subscription]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await SubscriptionStore(client).list(owner)
    finally:
        await client.aclose()
