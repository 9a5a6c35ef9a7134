"""Stopping tasks that talk to Redis: redis-py's asyncio client can swallow a cancel that lands mid-command."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from shared.tasks import cancel_and_wait

ROUNDS = 30


async def busy(redis: aioredis.Redis) -> None:
    while True:
        await redis.get("x")


async def test_a_loop_of_redis_commands_always_stops(redis: aioredis.Redis) -> None:
    swallowed = 0
    for i in range(ROUNDS):
        # A single cancel, as asyncio code usually stops a task: often lost while a command is in flight.
        task = asyncio.create_task(busy(redis))
        await asyncio.sleep(0.01 + (i % 7) * 0.003)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.2)
        swallowed += not done
        await cancel_and_wait(task)
        assert task.done()
        # cancel_and_wait alone, on a fresh task in the same state.
        task = asyncio.create_task(busy(redis))
        await asyncio.sleep(0.01 + (i % 7) * 0.003)
        await asyncio.wait_for(cancel_and_wait(task), timeout=30)
        assert task.cancelled()
    # Documents why cancel_and_wait exists; if a redis-py release fixes this, the helper is merely redundant.
    print(f"single cancels lost: {swallowed} of {ROUNDS}")
