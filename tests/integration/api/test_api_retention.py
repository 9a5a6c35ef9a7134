"""The api consumes `deliveries`, so it trims that stream too, like every service built by shared.runtime."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from services.api.app import create_api
from shared.consumer import ensure_groups
from tests.integration.api.api_helpers import api_settings


async def test_api_trims_the_deliveries_it_consumed(redis: aioredis.Redis, clean_redis: str) -> None:
    await ensure_groups(redis)
    for second in range(3):  # entries from long ago, read and acked by every group
        await redis.xadd("deliveries", {"x": "1"}, id=f"{1000 + second}-0")
    for group in await redis.xinfo_groups("deliveries"):
        await redis.xgroup_setid("deliveries", group["name"], "$")

    app = create_api(api_settings(clean_redis, retention_hours=1.0))
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 10
        for _ in range(200):
            if not await redis.xlen("deliveries") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert await redis.xlen("deliveries") == 0
