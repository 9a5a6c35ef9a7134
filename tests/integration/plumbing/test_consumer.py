"""The consumer plumbing against a real Redis: retries by claiming, dead letters, crashed consumers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from pydantic import BaseModel

from shared.consumer import ensure_group, make_router, subscriber
from shared.settings import ServiceSettings

STREAM = "test.jobs"
GROUP = "worker"


class Job(BaseModel):
    event_id: str
    n: int


def fast_settings(**overrides: object) -> ServiceSettings:
    values = {"claim_idle_ms": 300, "claim_poll_ms": 50, "read_block_ms": 50, "max_attempts": 3}
    return ServiceSettings(**(values | overrides))


async def wait_for(predicate, limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def worker(settings: ServiceSettings, redis_url: str, handle) -> RedisBroker:
    router = make_router(GROUP, settings)
    subscriber(router, STREAM, service=GROUP, settings=settings)(handle)
    broker = RedisBroker(redis_url)
    broker.include_router(router)
    return broker


async def publish(broker: RedisBroker, job: Job) -> None:
    await broker.publish(job, stream=STREAM)


async def test_failed_handler_is_retried_by_the_claimer(redis: aioredis.Redis, clean_redis: str) -> None:
    await ensure_group(redis, STREAM, GROUP)
    attempts: dict[int, int] = {}
    done: list[int] = []

    async def handle(job: Job) -> None:
        attempts[job.n] = attempts.get(job.n, 0) + 1
        if job.n == 1 and attempts[job.n] < 2:
            raise RuntimeError("flaky downstream")
        done.append(job.n)

    broker = worker(fast_settings(), clean_redis, handle)
    async with broker:
        await broker.start()
        for n in range(3):
            await publish(broker, Job(event_id=f"e{n}", n=n))

        async def all_done() -> bool:
            return sorted(done) == [0, 1, 2]

        await wait_for(all_done)
        # the flaky job was retried once; the jobs behind it were not held up by it
        assert attempts == {0: 1, 1: 2, 2: 1}
        assert done.index(2) < done.index(1)

        async def nothing_pending() -> bool:
            return (await redis.xpending(STREAM, GROUP))["pending"] == 0

        await wait_for(nothing_pending)
    assert await redis.xlen(f"{STREAM}.dead") == 0


async def test_poison_message_is_dead_lettered_with_its_error(redis: aioredis.Redis, clean_redis: str) -> None:
    await ensure_group(redis, STREAM, GROUP)
    calls: list[int] = []

    async def handle(job: Job) -> None:
        calls.append(job.n)
        if job.n == 13:
            raise ValueError("cannot handle 13")

    broker = worker(fast_settings(max_attempts=3), clean_redis, handle)
    async with broker:
        await broker.start()
        await publish(broker, Job(event_id="bad", n=13))
        await publish(broker, Job(event_id="good", n=7))

        async def dead() -> bool:
            return await redis.xlen(f"{STREAM}.dead") == 1

        await wait_for(dead)
        await asyncio.sleep(0.8)  # a further claim round must not pick it up again

    assert calls.count(13) == 3
    assert calls.count(7) == 1
    ((_, fields),) = await redis.xrange(f"{STREAM}.dead")
    dead = {k.decode(): v.decode() for k, v in fields.items() if k.startswith(b"dead.")}
    assert dead["dead.error"] == "ValueError: cannot handle 13"
    assert dead["dead.attempts"] == "3"
    assert dead["dead.group"] == GROUP
    # the original entry travels unchanged, so it can be replayed
    (original_id, original), _ = await redis.xrange(STREAM)
    assert dead["dead.id"] == original_id.decode()
    assert {k: v for k, v in fields.items() if not k.startswith(b"dead.")} == original
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_entry_of_a_killed_consumer_is_claimed_by_another(redis: aioredis.Redis, clean_redis: str) -> None:
    await ensure_group(redis, STREAM, GROUP)
    producer = RedisBroker(clean_redis)
    async with producer:
        await producer.connect()
        await publish(producer, Job(event_id="orphan", n=42))
    # A consumer reads the entry and dies before acking: it stays in the PEL under that consumer's name.
    read = await redis.xreadgroup(GROUP, "crashed-consumer", {STREAM: ">"}, count=1)
    assert read and read[0][1]
    seen: list[int] = []

    async def handle(job: Job) -> None:
        seen.append(job.n)

    broker = worker(fast_settings(consumer_name="survivor"), clean_redis, handle)
    async with broker:
        await broker.start()

        async def handled() -> bool:
            return seen == [42]

        await wait_for(handled)

        async def acked() -> bool:
            return (await redis.xpending(STREAM, GROUP))["pending"] == 0

        await wait_for(acked)


async def test_group_created_at_zero_sees_entries_published_before_it(redis: aioredis.Redis) -> None:
    await redis.xadd(STREAM, {"__data__": json.dumps({"n": 1})})
    assert await ensure_group(redis, STREAM, GROUP) is True
    assert await ensure_group(redis, STREAM, GROUP) is False
    read = await redis.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=10)
    assert len(read[0][1]) == 1


@pytest.mark.parametrize("pending_first", [True, False])
async def test_retention_never_trims_unconsumed_entries(redis: aioredis.Redis, pending_first: bool) -> None:
    from shared.retention import trim_consumed

    await ensure_group(redis, STREAM, GROUP)
    ids = [await redis.xadd(STREAM, {"n": str(i)}) for i in range(6)]
    # consume 4 entries; ack all but (optionally) the first
    await redis.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=4)
    to_ack = ids[1:4] if pending_first else ids[:4]
    await redis.xack(STREAM, GROUP, *to_ack)
    # every entry is older than the retention (an hour from now): only what groups still need may stay
    removed = await trim_consumed(redis, STREAM, max_age_s=60, now=time.time() + 3600)
    remaining = [entry_id for entry_id, _ in await redis.xrange(STREAM)]
    if pending_first:
        assert removed == 0 and remaining == ids
    else:
        assert removed == 4 and remaining == ids[4:]


async def test_dead_letters_replay_onto_their_stream(redis: aioredis.Redis) -> None:
    from shared.consumer import dead_letter, replay_dead

    entry_id = await redis.xadd(STREAM, {"__data__": b"payload"})
    await dead_letter(redis, STREAM, GROUP, entry_id.decode(), {b"__data__": b"payload"}, "boom", 5)
    assert await replay_dead(redis, STREAM) == 1
    assert await redis.xlen(f"{STREAM}.dead") == 0
    entries = await redis.xrange(STREAM)
    assert [fields for _, fields in entries] == [{b"__data__": b"payload"}, {b"__data__": b"payload"}]
