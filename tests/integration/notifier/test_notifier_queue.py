"""The delivery queue against a real Redis: a job is in ``notifier:jobs`` exactly while a queue holds it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.notifier.jobs import DeliveryJob
from services.notifier.queue import JOBS, DeliveryQueue, _queue


async def test_a_job_enqueued_while_its_twin_completes_stays_deliverable(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A match handled twice (a claimed read-ahead entry) enqueued the same job id while its first delivery was
    completing: complete's HDEL, then the enqueue, then complete's ZREM left a job no queue held, for ever."""
    queue = DeliveryQueue(redis)
    job = DeliveryJob(id="msg_1", subscription_id="s1", channel="email", target="ann@example.org")
    assert await queue.enqueue(job, 0.0)
    hdel, twin = redis.hdel, []

    async def hdel_then_the_twin_arrives(*args: object) -> int:  # the twin between complete's two steps
        removed = await hdel(*args)
        twin.append(await DeliveryQueue(redis).enqueue(job, 1.0))
        return removed

    monkeypatch.setattr(redis, "hdel", hdel_then_the_twin_arrives)
    await queue.complete(job)
    monkeypatch.undo()
    if not twin:  # complete is one step: the twin can only come before or after it
        assert await queue.enqueue(job, 1.0)
    assert await redis.hexists(JOBS, job.id)
    assert await redis.zscore(_queue(job.target_key), job.id) == 1.0  # leased and sent in its turn
