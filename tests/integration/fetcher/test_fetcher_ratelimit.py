"""The arXiv slot's lease: kept while its holder works, freed soon after its holder dies (a SIGKILL, no release)."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from pathlib import Path

import redis.asyncio as aioredis
from fetcher_replay import ReplayServer, Reply, replayed_settings

from services.fetcher.poll import make_fetcher
from services.fetcher.ratelimit import SharedRateLimiter

ROOT = Path(__file__).parents[3]
CL = (Path(__file__).parents[2] / "fixtures/arxiv_api/llmpaperradar_q_cat-cs.CL_max2_2026-05-11.xml").read_bytes()
LIVENESS_S = 30.0  # a bound on a hang only: what is tested is the order of events, not how fast they come

CHILD = """
import asyncio, sys, redis.asyncio as aioredis
from services.fetcher.poll import make_fetcher
from services.fetcher.settings import FetcherSettings
async def main(redis_url, url, lease, interval):
    settings = FetcherSettings(redis_url=redis_url, arxiv_lock_ttl_s=float(lease), arxiv_min_interval_s=float(interval))
    redis = aioredis.Redis.from_url(redis_url)
    fetcher, limiter = make_fetcher(settings, redis)
    await fetcher.get(url, limiter=limiter)
asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_live_holder_keeps_the_slot_past_its_lease(redis: aioredis.Redis) -> None:
    """A request four leases long: the renewed lease never lapses, so the next holder comes in only after it."""
    order: list[str] = []
    holder_in = asyncio.Event()

    async def holder() -> None:
        async with SharedRateLimiter(redis, "arxiv", min_interval_s=0.0, lock_ttl_s=0.6, poll_s=0.01).slot():
            order.append("holder in")
            holder_in.set()
            await asyncio.sleep(2.4)
            order.append("holder out")

    async def contender() -> None:
        await holder_in.wait()
        async with SharedRateLimiter(redis, "arxiv", min_interval_s=0.0, lock_ttl_s=0.6, poll_s=0.01).slot():
            order.append("contender in")

    await asyncio.wait_for(asyncio.gather(holder(), contender()), LIVENESS_S)
    assert order == ["holder in", "holder out", "contender in"]
    assert await redis.get("ratelimit:arxiv:lock") is None


async def test_a_killed_holder_frees_the_slot_within_its_lease(clean_redis: str, replay: ReplayServer) -> None:
    """A fetcher process SIGKILLed in the middle of a request slower than the lease: while it lives, it keeps the
    slot past its lease; once dead, the waiting replica gets the slot after the lease ends, no earlier than the
    interval after the dead request, instead of after a fixed TTL meant to outlast the slowest request."""
    lease, interval = 1.2, 0.4
    first_arrived, release_first = threading.Event(), threading.Event()

    def route(path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        if len(replay.seen) == 1:
            first_arrived.set()
            release_first.wait(LIVENESS_S)  # the holder's request hangs until its holder is dead
        return Reply(200, CL, {"Content-Type": "application/atom+xml"})

    replay.routes["/api/query"] = route
    url = f"{replay.url}/api/query"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, clean_redis, url, str(lease), str(interval), cwd=ROOT
    )
    redis = aioredis.Redis.from_url(clean_redis)
    settings = replayed_settings(clean_redis, arxiv_lock_ttl_s=lease, arxiv_min_interval_s=interval)
    fetcher, limiter = make_fetcher(settings, redis)
    limiter.poll_s = 0.01
    try:
        assert await asyncio.to_thread(first_arrived.wait, LIVENESS_S)
        waiter = asyncio.create_task(fetcher.get(url, limiter=limiter))
        await asyncio.sleep(2 * lease)
        assert len(replay.seen) == 1 and not waiter.done(), "the slot lapsed under a live holder"
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), LIVENESS_S)
        killed = time.time()
        result = await asyncio.wait_for(waiter, LIVENESS_S)
    finally:
        release_first.set()
        if child.returncode is None:
            child.kill()
            await child.wait()
        await fetcher.client.aclose()
        await redis.aclose()
    assert result.status == 200 and len(replay.seen) == 2
    assert replay.seen[1].started - killed >= interval - 0.05, (killed, replay.seen)
