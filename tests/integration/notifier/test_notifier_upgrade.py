"""Data an older notifier left behind, read by this one (real Redis)."""

from __future__ import annotations

import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.notifier.queue import DEAD_RESULTS, OLD_DEAD_RESULTS, move_old_results
from shared.consumer import dead_letter
from shared.events import DeliveryResult, Stream, entry_body


async def test_spent_deliveries_on_the_old_stream_move_and_dead_letters_stay(
    redis: aioredis.Redis, clean_redis: str
) -> None:
    """Spent deliveries were once written to ``deliveries.dead``, the name of the dead-letter stream of
    ``deliveries``: the api could not replay them, and status counted them as dead letters."""
    spent = DeliveryResult(
        event_id="job-1", subscription_id="s1", paper_ids=["2401.00001"], channel="webhook", target="e1", status="dead"
    )
    async with RedisBroker(clean_redis) as broker:
        await broker.publish(spent, stream=OLD_DEAD_RESULTS)  # as the older notifier did
        await broker.publish(spent.model_copy(update={"event_id": "r1", "status": "sent"}), stream=Stream.DELIVERIES)
    [(entry_id, fields)] = await redis.xrange(Stream.DELIVERIES, count=1)
    await dead_letter(redis, Stream.DELIVERIES, "api", entry_id.decode(), fields, "history write failed", 5)

    assert await move_old_results(redis) == 1
    assert await move_old_results(redis) == 0  # a second replica starting later: nothing left to move
    [(_id, moved)] = await redis.xrange(DEAD_RESULTS)
    assert entry_body(moved)["event_id"] == "job-1"
    [(_id, stays)] = await redis.xrange(OLD_DEAD_RESULTS)
    assert stays[b"dead.error"] == b"history write failed" and entry_body(stays)["event_id"] == "r1"
