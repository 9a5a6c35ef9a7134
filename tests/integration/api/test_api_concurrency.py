"""Edits racing each other on a real Redis: no lost update, no deleted subscription written back, and a delete
whose event could not be published can be retried."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

import shared.storage
from services.api.subscriptions import NotFound, SubscriptionOps
from shared.events import SubscriptionChanged
from shared.storage import SubscriptionStore
from shared.subscription import Subscription, SubscriptionSpec
from tests.integration.api.api_helpers import SPEC, owner_token, stream_events


class Interleave:
    """Stands in for ``Subscription`` in shared.storage: right after the first stored subscription is read, before
    the reader can write it back, runs ``between`` to completion (own thread, event loop and Redis connection), so
    the other request deterministically lands inside the read-modify-write window."""

    def __init__(self, redis_url: str, between: Callable[[SubscriptionOps], Awaitable[Any]]) -> None:
        self.redis_url, self.between, self.fired = redis_url, between, False
        self.events: list[tuple[str, Any]] = []
        self.error: BaseException | None = None

    def model_validate_json(self, raw: bytes | str, **options: Any) -> Subscription:
        subscription = Subscription.model_validate_json(raw, **options)
        if not self.fired:
            self.fired = True
            thread = threading.Thread(target=lambda: asyncio.run(self._run()))
            thread.start()
            thread.join()
            if self.error:
                raise self.error
        return subscription

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self.redis_url)

        async def publish(stream: Any, event: Any) -> None:
            self.events.append((str(stream), event))

        try:
            await self.between(SubscriptionOps(client, publish))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc
        finally:
            await client.aclose()


def ops_for(redis: aioredis.Redis) -> tuple[SubscriptionOps, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []

    async def publish(stream: Any, event: Any) -> None:
        events.append((str(stream), event))

    return SubscriptionOps(redis, publish), events


async def test_rating_racing_a_delete_never_brings_the_subscription_back(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, events = ops_for(redis)
    sub = await ops.create("alice", SubscriptionSpec(name="s", keywords=["helium"]))
    race = Interleave(clean_redis, lambda other: other.delete("alice", sub.id))
    monkeypatch.setattr(shared.storage, "Subscription", race)

    with pytest.raises(NotFound):  # a feedback link for a subscription deleted meanwhile
        await ops.rate(sub.id, "2401.00001", "like", "email")

    assert race.fired and [e.action for _s, e in race.events] == ["deleted"]
    assert await SubscriptionStore(redis).get(sub.id) is None
    assert await ops.list("alice") == [] and await SubscriptionStore(redis).active() == []
    assert [s for s, _e in events if s == "feedback"] == []  # no feedback event for a deleted subscription


async def test_concurrent_patch_and_webhook_registration_both_stick(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, _events = ops_for(redis)
    sub = await ops.create("alice", SubscriptionSpec(name="s", keywords=["helium"]))
    race = Interleave(clean_redis, lambda other: other.patch("alice", sub.id, {"keywords": ["neon"], "name": "new"}))
    monkeypatch.setattr(shared.storage, "Subscription", race)

    endpoint = await ops.add_webhook("alice", sub.id, "https://hooks.example.org/in")

    assert race.fired
    stored = await SubscriptionStore(redis).get(sub.id)
    assert stored is not None
    assert (stored.name, stored.keywords) == ("new", ["neon"])  # the PATCH is not undone ...
    assert [w.id for w in stored.channels.webhooks] == [endpoint.id]  # ... and the endpoint is kept


async def test_update_never_writes_a_subscription_that_is_gone(redis: aioredis.Redis) -> None:
    store = SubscriptionStore(redis)
    assert await store.update("nope", lambda s: s.model_copy(update={"active": False})) is None
    assert await redis.keys("*") == []
    sub = Subscription(id="s1", owner="alice", name="s", keywords=["x"])
    await store.put(sub)
    before, after = await store.update("s1", lambda s: s.model_copy(update={"liked": ["2401.00001"]}))
    assert before.liked == [] and after.liked == ["2401.00001"]
    assert (await store.get("s1")) == after
    assert await store.update("s1", lambda s: None) == (after, after)  # nothing to change: nothing written


async def test_delete_whose_event_failed_can_be_retried_by_its_owner_only(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    alice = await owner_token(redis, "alice")
    mallory = await owner_token(redis, "mallory")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    ctx = api._transport.app.state.ctx  # type: ignore[attr-defined]
    real_publish, calls = ctx.publish, []

    async def broker_down_once(stream: Any, event: Any) -> Any:
        calls.append(event)
        if len(calls) == 1:
            raise ConnectionError("broker unavailable")
        return await real_publish(stream, event)

    ctx.publish = broker_down_once
    with pytest.raises(ConnectionError):  # what the client sees as a 500
        await api.delete(f"/v1/subscriptions/{sid}", headers=alice)
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 404

    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=mallory)).status_code == 404
    assert (await api.delete("/v1/subscriptions/neverexisted", headers=alice)).status_code == 404
    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 204  # the retry
    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 204  # idempotent

    events = [SubscriptionChanged.model_validate(b) for b in await stream_events(redis, "subscriptions")]
    assert [e.action for e in events] == ["created", "deleted", "deleted"]
    assert {e.subscription_id for e in events} == {sid}
