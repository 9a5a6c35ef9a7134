"""Fetcher service wiring: the polling loop (a startup task) and fetch.requests id_list lookups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from faststream.redis import RedisRouter

from services.fetcher.plan import seconds_until_wake
from services.fetcher.poll import make_fetcher, poll_once, source_keys, source_schedule
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import arxiv_api
from shared.consumer import make_router, subscriber
from shared.events import FetchRequested, RawPapers, Stream
from shared.runtime import DEFAULT_REDIS_URL, create_service_app, make_broker

SERVICE = "fetcher"
log = structlog.get_logger("paperwire.fetcher")


def build_router(settings: FetcherSettings) -> RedisRouter:
    router = make_router(SERVICE, settings)
    raw = router.publisher(stream=Stream.RAW)

    @subscriber(router, Stream.FETCH_REQUESTS, service=SERVICE, settings=settings)
    async def on_fetch_request(event: FetchRequested) -> None:
        redis = aioredis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL)
        fetcher, limiter = make_fetcher(settings, redis)
        try:
            reports = await arxiv_api.fetch_ids(fetcher, limiter, settings.arxiv_api_url, raw.publish, event.arxiv_ids)
        finally:
            await fetcher.client.aclose()
            await redis.aclose()
        failed = [r.error for r in reports if r.error]
        if failed:
            raise RuntimeError(f"id_list lookup failed: {failed[0]}")  # retried, then dead-lettered
        log.info("ids_fetched", ids=len(event.arxiv_ids), reason=event.reason, pages=sum(r.published for r in reports))

    return router


async def poll_forever(settings: FetcherSettings) -> None:
    """Poll what is due at start (if asked), then each source when it is due: every interval, a failed one sooner.

    When a source is due is read from Redis each time (``plan.py``), so a restart does not poll a source that ran
    recently, and replicas share one schedule: a source another replica is polling is waited for, not polled.
    """
    if (problem := settings.contact_problem()) is not None:
        log.warning("user_agent_placeholder", problem=problem)
    url = settings.redis_url or DEFAULT_REDIS_URL
    broker = make_broker(url)
    await broker.connect()
    redis = aioredis.Redis.from_url(url)

    async def publish(event: RawPapers) -> None:
        await broker.publish(event, stream=Stream.RAW)

    plan = source_schedule(settings, redis)
    keys = source_keys(settings)
    try:
        delay = 0.0 if settings.poll_on_start else settings.poll_interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                await poll_once(settings, redis, publish, plan=plan)
                now = datetime.now(UTC)
                delay = seconds_until_wake(await plan.decisions(keys, now), now, settings.poll_interval_s)
            except Exception:  # noqa: BLE001 - the loop must outlive any one cycle
                log.exception("poll_failed")
                delay = settings.retry_failed_after_s
    finally:
        await redis.aclose()
        await broker.stop()


app = create_service_app(SERVICE, build_router, FetcherSettings(), tasks=[poll_forever])
