"""Assembling the worker with its clients: shared by the app's background loops, the benchmark and tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis
import structlog

from services.notifier.email_render import Links
from services.notifier.intake import Intake
from services.notifier.queue import move_old_results
from services.notifier.senders import EmailSender, PinnedPoster, SlackSender, WebhookSender
from services.notifier.settings import NotifierSettings
from services.notifier.worker import DeliveryWorker, raise_if_cancelled
from shared.events import DeliveryResult, Stream
from shared.runtime import DEFAULT_REDIS_URL, make_broker

log = structlog.get_logger("paperwire.notifier")


def redis_url(settings: NotifierSettings) -> str:
    return settings.redis_url or DEFAULT_REDIS_URL


@contextlib.asynccontextmanager
async def delivery_worker(settings: NotifierSettings) -> AsyncIterator[DeliveryWorker]:
    url = redis_url(settings)
    redis = aioredis.Redis.from_url(url)
    broker = make_broker(url)
    await broker.connect()
    limits = httpx.Limits(max_connections=settings.delivery_concurrency, max_keepalive_connections=32)
    client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
    links = Links(settings.public_url, settings.link_secret)

    async def publish(stream: Stream, result: DeliveryResult) -> None:
        await broker.publish(result, stream=str(stream))

    poster = PinnedPoster(settings, client)
    senders = {
        "email": EmailSender(settings, links),
        "slack": SlackSender(settings, links, poster, redis),
        "webhook": WebhookSender(settings, poster),
    }
    worker = DeliveryWorker(redis, settings, senders, publish)  # type: ignore[arg-type]
    try:
        yield worker
    finally:
        await worker.shutdown(settings.shutdown_grace())
        await poster.aclose()
        await client.aclose()
        await broker.stop()
        await redis.aclose()


async def delivery_loop(settings: NotifierSettings) -> None:
    """Background loop: send what is due, retry what failed, one slow endpoint at a time."""
    async with delivery_worker(settings) as worker:
        if moved := await move_old_results(worker.redis):
            log.info("old_spent_deliveries_moved", entries=moved, to=str(Stream.DELIVERIES_FAILED))
        await worker.run_forever()


async def digest_loop(settings: NotifierSettings) -> None:
    """Background loop: queue daily and weekly digests when their local time has come."""
    redis = aioredis.Redis.from_url(redis_url(settings))
    intake = Intake(redis)
    try:
        while True:
            raise_if_cancelled()
            try:
                await intake.digest_tick(datetime.now(UTC))
            except Exception as exc:  # keep the loop alive across a Redis restart
                log.exception("digest_tick_failed", error=str(exc))
            await asyncio.sleep(settings.digest_poll_s)
    finally:
        await redis.aclose()
