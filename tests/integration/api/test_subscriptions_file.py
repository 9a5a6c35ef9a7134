"""Subscriptions as configuration, loaded again over a running service: what users did meanwhile is kept."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from paperwire.subscriptions_file import SubscriptionFileError, load_subscriptions, read_subscriptions
from services.api.admin import read_spec
from shared.storage import SubscriptionStore
from shared.subscription import WebhookEndpoint

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "subscriptions.yaml"


async def test_reloading_the_file_keeps_ratings_api_webhooks_and_creation_time(
    redis: aioredis.Redis, clean_redis: str, tmp_path: Path
) -> None:
    (loaded,) = [s for s in read_subscriptions(EXAMPLE) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [loaded])
    store = SubscriptionStore(redis)
    added = WebhookEndpoint(url="https://hooks.example.org/mine", secret="whsec_" + "A" * 32)

    def rated_and_hooked(current):  # noqa: ANN001, ANN202 - what the api does for a like and a new endpoint
        channels = current.channels.model_copy(update={"webhooks": [*current.channels.webhooks, added]})
        return current.model_copy(update={"liked": ["2401.00001"], "channels": channels})

    _, after = await store.update("llm-agents", rated_and_hooked)
    # A plain export leaves webhooks out (their secrets); the operator edits the threshold and loads it back.
    edited = tmp_path / "subs.yaml"
    text = EXAMPLE.read_text().replace("threshold: 0.45", "threshold: 0.5")
    edited.write_text(text.split("    channels:")[0] + "    channels:\n      email: researcher@example.org\n")
    (again,) = [s for s in read_subscriptions(edited) if s.id == "llm-agents"]
    assert await load_subscriptions(clean_redis, [again]) == [
        "updated llm-agents (LLM agents, reasoning and retrieval)"
    ]
    stored = await store.get("llm-agents")
    assert stored is not None and stored.threshold == 0.5
    assert stored.liked == ["2401.00001"] and stored.created_at == after.created_at
    assert [w.id for w in stored.channels.webhooks] == [w.id for w in after.channels.webhooks]
    assert added.id in {w.id for w in stored.channels.webhooks}


async def test_a_new_owner_in_the_file_takes_the_subscription_from_the_old_one(
    redis: aioredis.Redis, clean_redis: str
) -> None:
    (loaded,) = [s for s in read_subscriptions(EXAMPLE) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [loaded])
    moved = loaded.model_copy(update={"owner": "alice"})
    assert await load_subscriptions(clean_redis, [moved]) == [
        f"updated llm-agents (LLM agents, reasoning and retrieval, owner {loaded.owner} -> alice)"
    ]
    store = SubscriptionStore(redis)
    assert [s.id for s in await store.list("alice")] == ["llm-agents"]
    assert await store.list(loaded.owner) == []


async def test_a_reload_keeps_an_unsubscribe_unless_the_file_says_active(
    redis: aioredis.Redis, clean_redis: str, tmp_path: Path
) -> None:
    """The user unsubscribed from an email's one-click link (the subscription is paused): loading the operator's
    file again must not start mailing them."""
    (loaded,) = [s for s in read_subscriptions(EXAMPLE) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [loaded])
    store = SubscriptionStore(redis)
    await store.update("llm-agents", lambda current: current.model_copy(update={"active": False}))
    assert await load_subscriptions(clean_redis, [loaded]) == [
        "updated llm-agents (LLM agents, reasoning and retrieval, paused)"
    ]
    stored = await store.get("llm-agents")
    assert stored is not None and not stored.active
    resumed = tmp_path / "subs.yaml"
    resumed.write_text(EXAMPLE.read_text().replace("  - id: llm-agents\n", "  - id: llm-agents\n    active: true\n", 1))
    (again,) = [s for s in read_subscriptions(resumed) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [again])
    stored = await store.get("llm-agents")
    assert stored is not None and stored.active


def test_a_file_entry_needs_an_id(tmp_path: Path) -> None:
    path = tmp_path / "noid.yaml"
    path.write_text("subscriptions:\n  - name: no id\n    interests: [graph neural networks]\n")
    with pytest.raises(SubscriptionFileError, match="id: required"):
        read_subscriptions(path)


async def test_an_entry_without_an_owner_keeps_the_stored_owner(
    redis: aioredis.Redis, clean_redis: str, tmp_path: Path
) -> None:
    (loaded,) = [s for s in read_subscriptions(EXAMPLE) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [loaded])
    ownerless = tmp_path / "subs.yaml"
    ownerless.write_text(EXAMPLE.read_text().replace("    owner: demo\n", "", 1))
    (again,) = [s for s in read_subscriptions(ownerless) if s.id == "llm-agents"]
    await load_subscriptions(clean_redis, [again])
    stored = await SubscriptionStore(redis).get("llm-agents")
    assert stored is not None and stored.owner == "demo"


def test_an_unquoted_delivery_time_is_a_time_not_a_base_60_number(tmp_path: Path) -> None:
    path = tmp_path / "digest.yaml"
    path.write_text(
        "subscriptions:\n  - id: digest\n    interests: [graph neural networks]\n    name: daily\n"
        "    schedule:\n      mode: daily\n      at: 10:30\n"
    )
    (subscription,) = read_subscriptions(path)
    assert subscription.schedule.at == time(10, 30)
    spec = read_spec("name: daily\ninterests: [graph neural networks]\nschedule: {mode: daily, at: 10:30}\n")
    assert spec.schedule.at == time(10, 30), "subscriptions create reads a spec the same way"
