"""A webhook endpoint's slots are counted in Redis: two notifier processes together never exceed the limit, a
crashed holder's slots come free when its lease ends, and a slot given back is free at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis

from services.notifier.jobs import alert_jobs
from services.notifier.queue import DeliveryQueue
from services.notifier.slots import EndpointSlots, slots_key
from shared.storage import SubscriptionStore
from shared.subscription import Channels
from tests.integration.notifier.conftest import running, wait_for
from tests.receiver import Received, Receiver, always, serve
from tests.unit.notifier.notifier_papers import HF_JUNE, endpoint, hf_papers, items, subscription

TARGET = "webhook:ep_slots"


@contextlib.asynccontextmanager
async def process_slots(url: str, lease_s: float = 30.0) -> AsyncIterator[EndpointSlots]:
    """Slots as another process would have them: a Redis connection of their own."""
    client = aioredis.Redis.from_url(url)
    try:
        yield EndpointSlots(client, lease_s)
    finally:
        await client.aclose()


async def test_two_processes_never_hold_more_than_the_limit(clean_redis: str) -> None:
    held, most = 0, 0

    async def use(slots: EndpointSlots, rounds: int) -> None:
        nonlocal held, most
        for _ in range(rounds):
            tokens = await slots.acquire(TARGET, 4, 2)
            held += len(tokens)
            most = max(most, held)
            await asyncio.sleep(0.002)
            held -= len(tokens)
            await slots.release(TARGET, *tokens)

    async with process_slots(clean_redis) as one, process_slots(clean_redis) as two:
        await asyncio.gather(*(use(slots, 40) for slots in (one, two) for _ in range(4)))
        assert most == 4  # reached, never passed
        assert await one.holders(TARGET) == 0
        assert len(await one.acquire(TARGET, 4, 3)) == 3
        assert len(await two.acquire(TARGET, 4, 3)) == 1  # what the other process left


async def test_crashed_holders_slots_free_when_the_lease_ends(clean_redis: str) -> None:
    async with process_slots(clean_redis, lease_s=0.3) as crashed, process_slots(clean_redis) as alive:
        assert len(await crashed.acquire(TARGET, 4, 4)) == 4  # then the process dies: no release, no renewal
        assert await alive.acquire(TARGET, 4, 1) == []
        await asyncio.sleep(0.4)
        assert len(await alive.acquire(TARGET, 4, 4)) == 4
        assert await alive.holders(TARGET) == 4


async def test_a_replica_with_a_shorter_lease_does_not_expire_the_others_slots(clean_redis: str) -> None:
    """Replicas may run with different leases (a rolling config change): the key lives as long as its longest."""
    async with process_slots(clean_redis, lease_s=120.0) as long, process_slots(clean_redis, lease_s=0.3) as short:
        assert len(await long.acquire(TARGET, 2, 1)) == 1
        assert len(await short.acquire(TARGET, 2, 1)) == 1  # sets the key's expiry, but not below the long lease
        await asyncio.sleep(0.5)  # the short holder's lease is over; the long one is still sending
        assert await long.holders(TARGET) == 1
        assert len(await short.acquire(TARGET, 2, 2)) == 1  # only the short one's freed slot


async def test_release_frees_the_slot_at_once(clean_redis: str) -> None:
    async with process_slots(clean_redis) as one, process_slots(clean_redis) as two:
        tokens = await one.acquire(TARGET, 2, 2)
        assert await two.acquire(TARGET, 2, 1) == []
        await one.release(TARGET, tokens[0])
        assert len(await two.acquire(TARGET, 2, 1)) == 1
        assert await one.holders(TARGET) == 2


async def test_a_held_slot_is_renewed_past_its_lease_and_given_back_after(clean_redis: str) -> None:
    async with process_slots(clean_redis, lease_s=0.3) as one, process_slots(clean_redis) as two:
        (token,) = await one.acquire(TARGET, 1, 1)
        async with one.hold(TARGET, token):
            await asyncio.sleep(0.8)  # more than two leases: only renewals keep it
            assert await two.acquire(TARGET, 1, 1) == []
        assert len(await two.acquire(TARGET, 1, 1)) == 1


async def queue_alerts(redis: aioredis.Redis, sub, papers) -> int:
    await SubscriptionStore(redis).put(sub)
    queue = DeliveryQueue(redis)
    count = 0
    for item in items(papers):
        for job in alert_jobs(sub, item):
            await queue.enqueue(job, time.time())
            count += 1
    return count


async def test_two_notifier_processes_send_at_most_the_limit_to_one_endpoint(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """Before the slots were shared, each worker opened its own 4: the receiver saw 8 requests at once."""
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def hang(request: Received, index: int):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await release.wait()
        finally:
            in_flight -= 1
        return 200, {}, b"ok"

    async with serve(Receiver(hang)) as receiver:
        sub = subscription(channels=Channels(webhooks=[endpoint(receiver.url + "/hook")]))
        total = await queue_alerts(redis, sub, hf_papers(fixtures_dir, HF_JUNE)[:12])
        settings = settings_for(webhook_timeout_s=120.0)
        limit = settings.webhook_concurrency_per_endpoint
        async with running(settings) as first, running(settings) as second:
            try:
                await wait_for(lambda: in_flight >= limit)
                await asyncio.sleep(0.5)  # both workers tick many times meanwhile
                assert most == limit
                assert sum(first.in_flight.values()) + sum(second.in_flight.values()) == limit
            finally:
                release.set()  # else a failure would wait out the shutdown grace (the 120 s timeout)
            await wait_for(lambda: len(receiver.bodies(status=200)) == total, limit_s=30.0)
        assert most == limit
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == total == len(receiver.requests)
        assert await redis.zcard(slots_key(f"webhook:{sub.channels.webhooks[0].id}")) == 0  # all given back


async def test_slots_of_a_crashed_replica_hold_off_sends_until_their_lease_ends(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    async with serve(Receiver(always())) as receiver:
        hook = endpoint(receiver.url + "/hook")
        sub = subscription(channels=Channels(webhooks=[hook]))
        seconds, micros = await redis.time()
        lease_end = seconds * 1000 + micros // 1000 + 1000
        await redis.zadd(slots_key(f"webhook:{hook.id}"), {f"dead-host-1:{i}": lease_end for i in range(4)})
        await queue_alerts(redis, sub, hf_papers(fixtures_dir)[:1])
        async with running(settings_for()):
            await asyncio.sleep(0.6)
            assert receiver.requests == []  # every slot is taken by the crashed replica's leases
            await wait_for(lambda: len(receiver.bodies(status=200)) == 1, limit_s=5.0)
