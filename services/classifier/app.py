"""Classifier service wiring: papers.embedded and papers.trending -> matches; subscriptions and feedback refresh
profiles."""

from __future__ import annotations

from typing import Any

import structlog
from faststream import Context
from faststream.redis import RedisRouter

from services.classifier.embedding import text_model
from services.classifier.settings import ClassifierSettings
from services.classifier.state import ClassifierState
from shared.consumer import bury_rejected, make_router, parse_batch, publish_all, subscriber
from shared.events import (
    FeedbackGiven,
    FetchRequested,
    PaperEmbedded,
    Stream,
    SubscriptionChanged,
    UpvotesChanged,
)
from shared.runtime import create_service_app, service_redis
from shared.storage import SubscriptionStore

SERVICE = "classifier"
log = structlog.get_logger("paperwire.classifier")


def build_router(settings: ClassifierSettings) -> RedisRouter:
    router = make_router(SERVICE, settings)
    matches = router.publisher(stream=Stream.MATCHES)
    fetches = router.publisher(stream=Stream.FETCH_REQUESTS)
    changes = router.publisher(stream=Stream.SUBSCRIPTIONS)
    redis = service_redis(settings)
    subscriptions = SubscriptionStore(redis)
    model = text_model(settings.resolved_model_dir(), settings.model_id)  # another model's export: refuse to start
    state = ClassifierState(
        redis,
        model.space,
        settings.background_size,
        settings.cache_path,
        resync_after_s=settings.retention_hours * 3600 / 2,
        text_model=model,
    )

    @subscriber(
        router, Stream.EMBEDDED, service=SERVICE, settings=settings, batch=True, max_records=settings.batch_max_records
    )
    async def on_embedded(bodies: list[Any], message: Any = Context("message")) -> None:
        """A batch of embedded papers scored in one matrix pass; an entry that is no PaperEmbedded is dead-lettered
        and the rest go on."""
        events, rejected = parse_batch(bodies, PaperEmbedded)
        await bury_rejected(redis, Stream.EMBEDDED, SERVICE, message, rejected)
        found = await state.score_events(events)
        await publish_all(redis, matches, found)  # failed: retried, its events' own claims publish again
        arrived = [event.paper.id for event in events]
        refreshed = await state.waiting_for(arrived)
        for subscription_id in refreshed:
            # Every replica rebuilds the profile when it reads this (the notifier ignores an unchanged update).
            subscription = await subscriptions.get(subscription_id)
            if subscription is not None:
                await changes.publish(
                    SubscriptionChanged(subscription_id=subscription_id, action="updated", subscription=subscription)
                )
        await state.done_waiting(arrived)
        log.info(
            "scored",
            papers=len(events),
            rejected=len(rejected),
            matches=len(found),
            subscriptions=len(state.profiles),
            seed_of=refreshed or None,
        )

    @subscriber(router, Stream.TRENDING, service=SERVICE, settings=settings)
    async def on_trending(event: UpvotesChanged) -> None:
        found = await state.upvotes_changed(event)
        await publish_all(redis, matches, found)  # failed: retried, its events' own claims publish again
        log.info(
            "upvotes_changed",
            paper=event.paper_id,
            day=event.daily_date.isoformat(),
            upvotes=event.upvotes,
            before=event.upvotes_before,
            matches=len(found),
        )

    async def fetch_missing(subscription_id: str, paper_ids: list[str], what: str) -> None:
        missing = await state.await_papers(subscription_id, await state.missing_papers(paper_ids))
        if missing:  # not asked for already
            try:
                await fetches.publish(FetchRequested(arxiv_ids=missing, reason=f"{what} of {subscription_id}"))
            except BaseException:
                await state.stop_awaiting(subscription_id, missing)  # else the retry would find them "asked for"
                raise

    # The groups below do what happens once per change; every replica's profiles follow the streams in state.sync.
    @subscriber(router, Stream.SUBSCRIPTIONS, service=SERVICE, settings=settings)
    async def on_subscription(event: SubscriptionChanged) -> None:
        await state.sync()
        subscription = await subscriptions.get(event.subscription_id)
        if subscription is not None and subscription.active:
            await fetch_missing(subscription.id, subscription.seed_papers, "seeds")

    @subscriber(router, Stream.FEEDBACK, service=SERVICE, settings=settings)
    async def on_feedback(event: FeedbackGiven) -> None:
        if await subscriptions.get(event.subscription_id) is None:  # deleted since, or junk: nothing to train
            log.info("feedback_ignored", subscription_id=event.subscription_id, reason="no such subscription")
            return
        await state.record_feedback(event)
        await state.sync()
        await fetch_missing(event.subscription_id, [event.paper_id], "a rated paper")

    return router


settings = ClassifierSettings()
app = create_service_app(SERVICE, build_router, settings)
