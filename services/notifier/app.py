"""Notifier wiring: matches and subscription changes in, deliveries out (by the background loops)."""

from __future__ import annotations

import time

import structlog
from faststream.redis import RedisRouter

from services.notifier.intake import Intake
from services.notifier.queue import DeliveryQueue
from services.notifier.runtime import delivery_loop, digest_loop
from services.notifier.settings import NotifierSettings
from shared.consumer import make_router, subscriber
from shared.events import MatchFound, ReplayRequested, Stream, SubscriptionChanged
from shared.runtime import create_service_app, service_redis

SERVICE = "notifier"
log = structlog.get_logger("paperwire.notifier")


def build_router(settings: NotifierSettings) -> RedisRouter:
    router = make_router(SERVICE, settings)
    redis = service_redis(settings)
    intake = Intake(redis)

    @subscriber(router, Stream.MATCHES, service=SERVICE, settings=settings)
    async def on_match(event: MatchFound) -> None:
        await intake.on_match(event)

    @subscriber(router, Stream.SUBSCRIPTIONS, service=SERVICE, settings=settings)
    async def on_subscription(event: SubscriptionChanged) -> None:
        await intake.on_subscription(event)

    @subscriber(router, Stream.DELIVERIES_REPLAY, service=SERVICE, settings=settings)
    async def on_replay(event: ReplayRequested) -> None:
        jobs = await DeliveryQueue(redis).replay(event.delivery_ids or None, time.time(), event.subscription_id)
        log.info("replay_requested", subscription=event.subscription_id, by=event.requested_by, requeued=len(jobs))

    return router


app = create_service_app(SERVICE, build_router, NotifierSettings(), tasks=[delivery_loop, digest_loop])
