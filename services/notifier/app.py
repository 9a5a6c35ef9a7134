"""Notifier wiring: matches and subscription changes in, deliveries out (by the background loops)."""

from __future__ import annotations

import redis.asyncio as aioredis
from faststream.redis import RedisRouter

from services.notifier.intake import Intake
from services.notifier.runtime import delivery_loop, digest_loop, redis_url
from services.notifier.settings import NotifierSettings
from shared.consumer import make_router, subscriber
from shared.events import MatchFound, Stream, SubscriptionChanged
from shared.runtime import create_service_app

SERVICE = "notifier"


def build_router(settings: NotifierSettings) -> RedisRouter:
    router = make_router(SERVICE, settings)
    intake = Intake(aioredis.Redis.from_url(redis_url(settings)))

    @subscriber(router, Stream.MATCHES, service=SERVICE, settings=settings)
    async def on_match(event: MatchFound) -> None:
        await intake.on_match(event)

    @subscriber(router, Stream.SUBSCRIPTIONS, service=SERVICE, settings=settings)
    async def on_subscription(event: SubscriptionChanged) -> None:
        await intake.on_subscription(event)

    return router


app = create_service_app(SERVICE, build_router, NotifierSettings(), tasks=[delivery_loop, digest_loop])
