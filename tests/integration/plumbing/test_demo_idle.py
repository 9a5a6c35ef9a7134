"""The demo (and the end-to-end tests) wait for the whole pipeline, the notifier's delivery queue included."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from paperwire.demo import wait_until_idle
from services.notifier.jobs import DeliveryJob
from services.notifier.queue import DeliveryQueue


async def test_idle_waits_for_delivery_jobs_left_after_their_matches_were_consumed(redis: aioredis.Redis) -> None:
    await redis.xadd("papers.raw", {"x": "1"})
    queue = DeliveryQueue(redis)
    # A Slack message held back by the 1/s pace: its match was consumed, the job is still queued.
    job = DeliveryJob(id="job-1", subscription_id="sub", channel="slack", target="slack:abc")
    assert await queue.enqueue(job, time.time())

    assert not await wait_until_idle(redis, time.monotonic() + 1.5, settle_s=0.2, groups=())

    async def deliver_later() -> None:
        await asyncio.sleep(0.5)
        await queue.complete(job)

    delivery = asyncio.create_task(deliver_later())
    assert await wait_until_idle(redis, time.monotonic() + 10, settle_s=0.2, groups=())
    await delivery
    assert await queue.pending() == 0
