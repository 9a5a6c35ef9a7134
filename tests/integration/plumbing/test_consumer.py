"""The consumer plumbing against a real Redis: retries by claiming, dead letters, crashed consumers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
import structlog.testing
from faststream import Context
from faststream.redis import RedisBroker
from pydantic import BaseModel
from redis.asyncio.client import Pipeline

from shared import consumer, storage
from shared.consumer import dead_letter, ensure_group, make_router, publish_all, replay_dead, subscriber
from shared.settings import ServiceSettings
from shared.storage import claim_many, claim_once

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


def worker(settings: ServiceSettings, redis_url: str, handle, group: str = GROUP, **options: Any) -> RedisBroker:
    router = make_router(group, settings)
    subscriber(router, STREAM, service=group, settings=settings, **options)(handle)
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

    # claimed after 1 s: the reader reaches job 2 first even on a loaded machine (one entry per read)
    broker = worker(fast_settings(claim_idle_ms=1000), clean_redis, handle)
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


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_failing_entry_logs_one_traceback_not_one_per_attempt(redis: aioredis.Redis, clean_redis: str) -> None:
    """An expected failure (a source down) retried five times must not fill the log with five tracebacks from
    FastStream plus ours: the first attempt carries the traceback, the retries one line each."""
    await ensure_group(redis, STREAM, GROUP)

    async def handle(job: Job) -> None:
        raise RuntimeError("lookup failed: gave up on the source")

    settings = fast_settings(max_attempts=3)
    router = make_router(GROUP, settings)
    subscriber(router, STREAM, service=GROUP, settings=settings)(handle)
    faststream_log = logging.getLogger("test.consumer.faststream")  # what the broker logs, kept here
    faststream_log.setLevel(logging.DEBUG)
    handler = _Records()
    faststream_log.addHandler(handler)
    broker = RedisBroker(clean_redis, logger=faststream_log)
    broker.include_router(router)
    try:
        with structlog.testing.capture_logs() as logs:
            async with broker:
                await broker.start()
                await publish(broker, Job(event_id="down", n=1))

                async def dead() -> bool:
                    return await redis.xlen(f"{STREAM}.dead") == 1

                await wait_for(dead)
    finally:
        faststream_log.removeHandler(handler)
    failed = [entry for entry in logs if entry["event"] == "handler_failed"]
    assert [entry["attempt"] for entry in failed] == [1, 2, 3]
    assert [entry.get("exc_info") is not None for entry in failed] == [True, False, False]
    (dead,) = [entry for entry in logs if entry["event"] == "dead_lettered"]
    assert dead["log_level"] == "error" and dead["error"] == "RuntimeError: lookup failed: gave up on the source"
    assert isinstance(failed[0]["exc_info"], RuntimeError)
    assert any("nacked" in r.getMessage() for r in handler.records)  # FastStream saw the retries, as nacks
    tracebacks = [r for r in handler.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert tracebacks == []  # and logged none of them with the handler's traceback


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
    entry_id = await redis.xadd(STREAM, {"__data__": b"payload"})
    await dead_letter(redis, STREAM, GROUP, entry_id.decode(), {b"__data__": b"payload"}, "boom", 5)
    assert len(await replay_dead(redis, STREAM)) == 1
    assert await redis.xlen(f"{STREAM}.dead") == 0
    entries = await redis.xrange(STREAM)
    # the copy is marked for the group that gave up on it
    assert [fields for _, fields in entries] == [
        {b"__data__": b"payload"},
        {b"__data__": b"payload", b"replay.for": GROUP.encode(), b"replay.of": entry_id},
    ]


async def test_slow_handler_is_neither_claimed_nor_dead_lettered(redis: aioredis.Redis, clean_redis: str) -> None:
    """A live handler that outlasts claim_idle_ms several times over keeps its entry: no claimer (its own nor
    another replica's) runs it again, and the delivery count stays 1 (see r1_slow.py / r1b_replicas.py)."""
    await ensure_group(redis, STREAM, GROUP)
    claim_idle_ms = 500
    runs: list[str] = []
    delivered: list[int] = []

    def replica(name: str) -> RedisBroker:
        async def handle(job: Job) -> None:
            runs.append(name)
            await asyncio.sleep(claim_idle_ms * 4 / 1000)
            ((entry_id, _),) = await redis.xrange(STREAM)
            (pending,) = await redis.xpending_range(STREAM, GROUP, min=entry_id, max=entry_id, count=1)
            delivered.append(pending["times_delivered"])

        return worker(fast_settings(claim_idle_ms=claim_idle_ms, consumer_name=name), clean_redis, handle)

    brokers = [replica("a"), replica("b")]
    for broker in brokers:
        await broker.start()
    try:
        await publish(brokers[0], Job(event_id="slow", n=1))

        async def finished_and_acked() -> bool:
            return bool(delivered) and (await redis.xpending(STREAM, GROUP))["pending"] == 0

        await wait_for(finished_and_acked)
    finally:
        for broker in brokers:
            await broker.stop()
    assert len(runs) == 1
    assert delivered == [1]
    assert await redis.xlen(f"{STREAM}.dead") == 0


async def _group_done_with(redis: aioredis.Redis, group: str, entry_id: bytes) -> bool:
    info = {g["name"].decode(): g for g in await redis.xinfo_groups(STREAM)}[group]
    return info["last-delivered-id"] == entry_id and info["pending"] == 0


async def test_replayed_dead_letter_goes_only_to_its_group(redis: aioredis.Redis, clean_redis: str) -> None:
    """Two groups share the stream; only the one that dead-lettered the entry handles the replay (r3_replay.py)."""
    other = "other"
    await ensure_group(redis, STREAM, GROUP)
    await ensure_group(redis, STREAM, other)
    entry_id = await redis.xadd(STREAM, {"__data__": Job(event_id="e1", n=1).model_dump_json()})
    for group in (GROUP, other):
        await redis.xreadgroup(group, f"{group}-1", {STREAM: ">"})
        await redis.xack(STREAM, group, entry_id)
    await dead_letter(redis, STREAM, GROUP, entry_id.decode(), (await redis.xrange(STREAM))[0][1], "boom", 5)
    assert len(await replay_dead(redis, STREAM)) == 1
    replayed_id = (await redis.xrange(STREAM))[-1][0]
    handled: dict[str, list[int]] = {GROUP: [], other: []}

    def handler(group: str):
        async def handle(job: Job) -> None:
            handled[group].append(job.n)

        return handle

    brokers = [worker(fast_settings(), clean_redis, handler(g), group=g) for g in (GROUP, other)]
    for broker in brokers:
        await broker.start()
    try:

        async def both_done() -> bool:
            return await _group_done_with(redis, GROUP, replayed_id) and await _group_done_with(
                redis, other, replayed_id
            )

        await wait_for(both_done)
    finally:
        for broker in brokers:
            await broker.stop()
    assert handled == {GROUP: [1], other: []}


async def test_batch_skips_only_the_entries_replayed_for_another_group(redis: aioredis.Redis, clean_redis: str) -> None:
    other = "other"
    await ensure_group(redis, STREAM, GROUP)
    await ensure_group(redis, STREAM, other)
    first = await redis.xadd(STREAM, {"__data__": Job(event_id="e1", n=1).model_dump_json()})
    await dead_letter(redis, STREAM, GROUP, "0-1", {"__data__": Job(event_id="e0", n=0).model_dump_json()}, "x", 5)
    await replay_dead(redis, STREAM)
    last = await redis.xadd(STREAM, {"__data__": Job(event_id="e2", n=2).model_dump_json()})
    batches: list[tuple[list[int], list[bytes]]] = []

    async def handle(bodies: list[Any], message: Any = Context("message")) -> None:
        batches.append(([Job.model_validate(b).n for b in bodies], list(message.raw_message["message_ids"])))

    broker = worker(fast_settings(), clean_redis, handle, group=other, batch=True, max_records=10)
    async with broker:
        await broker.start()

        async def done() -> bool:
            return await _group_done_with(redis, other, last)

        await wait_for(done)
    # one read of the three entries; the replay for GROUP is acked unseen, bodies and ids stay aligned
    assert batches == [([1, 2], [first, last])]


async def test_entries_waiting_behind_a_slow_handler_are_not_claimed_and_run_twice(
    redis: aioredis.Redis, clean_redis: str
) -> None:
    """XREADGROUP without COUNT handed one consumer every new entry at once; those waiting their turn in memory went
    idle past claim_idle_ms and the claimer ran them a second time, beside the live reader."""
    await ensure_group(redis, STREAM, GROUP)
    for n in range(6):
        last = await redis.xadd(STREAM, {"__data__": Job(event_id=f"e{n}", n=n).model_dump_json()})
    handled: list[int] = []

    async def handle(job: Job) -> None:
        handled.append(job.n)
        await asyncio.sleep(0.2)  # six in a row: the last waits 1 s, past the 0.3 s claim idle time

    broker = worker(fast_settings(), clean_redis, handle)
    async with broker:
        await broker.start()

        async def done() -> bool:
            return await _group_done_with(redis, GROUP, last)

        await wait_for(done)
    assert sorted(handled) == list(range(6))


async def test_an_entry_that_is_not_utf8_is_dead_lettered_at_once(redis: aioredis.Redis, clean_redis: str) -> None:
    """Without ``__data__``, FastStream's parser failed before any middleware: redelivered forever, no dead letter.
    (Undecodable bytes under ``__data__`` reach the handler, which fails, and are dead-lettered after the cap.)"""
    fields = {"x": b"\xff\xfe"}
    await ensure_group(redis, STREAM, GROUP)
    bad = (await redis.xadd(STREAM, fields)).decode()
    last = await redis.xadd(STREAM, {"__data__": Job(event_id="e1", n=1).model_dump_json()})
    handled: list[int] = []

    async def handle(job: Job) -> None:
        handled.append(job.n)

    broker = worker(fast_settings(), clean_redis, handle)
    async with broker:
        await broker.start()

        async def done() -> bool:
            return await _group_done_with(redis, GROUP, last) and await redis.xlen(f"{STREAM}.dead") == 1

        await wait_for(done)
    assert handled == [1]
    [(_id, dead)] = await redis.xrange(f"{STREAM}.dead")
    assert dead[b"dead.id"].decode() == bad and dead[b"dead.error"].startswith(b"entry is not UTF-8 text")
    assert dead[b"dead.attempts"] == b"1"
    assert {k.decode(): v for k, v in dead.items() if not k.startswith(b"dead.")} == fields


async def test_a_batch_entry_that_is_not_utf8_is_dead_lettered_and_the_rest_handled(
    redis: aioredis.Redis, clean_redis: str
) -> None:
    """FastStream's batch parser fails the whole batch on such an entry, before any middleware: it was redelivered
    forever, never dead-lettered, and held up the entries read with it."""
    await ensure_group(redis, STREAM, GROUP)
    await redis.xadd(STREAM, {"__data__": Job(event_id="e1", n=1).model_dump_json()})
    bad = (await redis.xadd(STREAM, {"__data__": b"\xff\xfe garbage"})).decode()
    last = await redis.xadd(STREAM, {"__data__": Job(event_id="e2", n=2).model_dump_json()})
    handled: list[int] = []

    async def handle(bodies: list[Any], message: Any = Context("message")) -> None:
        jobs, rejected = consumer.parse_batch(bodies, Job)
        await consumer.bury_rejected(redis, STREAM, GROUP, message, rejected)
        handled.extend(job.n for job in jobs)

    broker = worker(fast_settings(), clean_redis, handle, batch=True, max_records=10)
    async with broker:
        await broker.start()

        async def done() -> bool:
            return await _group_done_with(redis, GROUP, last)

        await wait_for(done)
    assert handled == [1, 2]
    [(_id, fields)] = await redis.xrange(f"{STREAM}.dead")
    assert fields[b"dead.id"].decode() == bad and b"not UTF-8" in fields[b"dead.error"]
    assert fields[b"__data__"] == b"\xff\xfe garbage"  # the entry as it came, for a replay after a fix


async def test_publish_all_sends_every_event_in_order_across_chunks(redis: aioredis.Redis, clean_redis: str) -> None:
    """More events than one pipelined chunk: a FastStream subscriber receives every one, decoded, in order."""
    out = "test.out"
    count = 2 * consumer.PIPELINE_CHUNK + 3
    router = make_router(GROUP, fast_settings())
    publisher = router.publisher(stream=out)
    received: list[int] = []

    @router.subscriber(stream=out)
    async def collect(job: Job) -> None:
        received.append(job.n)

    broker = RedisBroker(clean_redis)
    broker.include_router(router)
    async with broker:
        await broker.start()
        await publish_all(redis, publisher, [Job(event_id=f"e{i}", n=i) for i in range(count)])

        async def all_received() -> bool:
            return len(received) >= count

        await wait_for(all_received)
    assert received == list(range(count))
    assert await redis.xlen(out) == count


async def test_claim_many_claims_each_key_once_across_chunks(redis: aioredis.Redis) -> None:
    """What a redelivered batch relies on: a key claimed before (alone or in an earlier chunk) is not claimed again,
    and a key twice in one call is claimed by its first occurrence only."""
    keys = [f"test-claim:{i}" for i in range(storage.PIPELINE_CHUNK + 5)]
    assert await claim_once(redis, keys[3])
    claimed = await claim_many(redis, [*keys, keys[0]])
    assert claimed == [i != 3 for i in range(len(keys))] + [False]
    assert await claim_many(redis, keys[-2:]) == [False, False]
    assert 0 < await redis.ttl(f"once:{keys[-1]}") <= 90 * 24 * 3600


async def test_publish_all_says_from_where_events_may_be_unsent(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second chunk's round trip fails: the first chunk is out, and the error says where the doubt starts."""
    monkeypatch.setattr(consumer, "PIPELINE_CHUNK", 4)
    original, calls = Pipeline.execute, [0]

    async def execute(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise ConnectionError("simulated: connection lost during the round trip")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", execute)
    broker = RedisBroker(clean_redis)
    publisher = broker.publisher(stream="test.out")
    async with broker:
        await broker.connect()
        with pytest.raises(consumer.PublishError, match="test.out failed from event 4 on: ConnectionError") as caught:
            await publish_all(redis, publisher, [Job(event_id=f"e{i}", n=i) for i in range(10)])
    assert caught.value.unsent_from == 4
    assert await redis.xlen("test.out") == 4


async def test_claim_many_counts_its_own_claims_when_a_round_trip_is_sent_twice(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py re-sends a pipeline whose reply was lost: the first send claimed the keys, and the second must not
    report them as taken by someone else (the match would be dropped for good)."""
    original = Pipeline.execute

    async def sent_twice(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        stack = list(self.command_stack)
        await original(self, *args, **kwargs)  # ran, but its reply never came back
        self.command_stack = stack
        return await original(self, *args, **kwargs)

    assert await claim_once(redis, "test-claim:taken")
    monkeypatch.setattr(Pipeline, "execute", sent_twice)
    assert await claim_many(redis, ["test-claim:a", "test-claim:taken", "test-claim:b"]) == [True, False, True]


async def test_consumers_gone_for_the_retention_are_forgotten(redis: aioredis.Redis) -> None:
    """Every process registers a new consumer name; a gone one with nothing pending is deleted, never one that
    still owns entries or still reads."""
    from shared.retention import _DELETE_IF_IDLE, forget_gone_consumers

    await ensure_group(redis, STREAM, GROUP)
    for i in range(3):
        await redis.xadd(STREAM, {"n": str(i)})
    await redis.xreadgroup(GROUP, "owner", {STREAM: ">"}, count=1)  # crashed with an entry: the claimer's job
    for name in ("gone", "live"):
        if name == "live":
            await asyncio.sleep(0.3)
        [[_stream, [(entry_id, _fields)]]] = await redis.xreadgroup(GROUP, name, {STREAM: ">"}, count=1)
        await redis.xack(STREAM, GROUP, entry_id)
    assert await forget_gone_consumers(redis, STREAM, idle_s=0.2) == [f"{GROUP}/gone"]
    names = {c["name"].decode() for c in await redis.xinfo_consumers(STREAM, GROUP)}
    assert names == {"owner", "live"}
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 1
    # the delete itself checks again: a consumer that read an entry since XINFO keeps it
    assert await redis.eval(_DELETE_IF_IDLE, 1, STREAM, GROUP, "owner") == 0
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 1
