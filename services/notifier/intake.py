"""From a match to queued deliveries: instant subscriptions queue a message per target at once, digest
subscriptions collect matches in Redis until their slot (``notifier:digest:<sub>``, one entry per paper).
A digest lists its papers as the paper store has them at the slot, not as they were when they matched.
"""

from __future__ import annotations

import time
from datetime import datetime

import redis.asyncio as aioredis
import structlog

from services.notifier.jobs import MatchItem, alert_jobs, current_item, digest_jobs, targets
from services.notifier.queue import DeliveryQueue
from services.notifier.schedule import digest_due
from shared.events import MatchFound, SubscriptionChanged
from shared.storage import PaperStore, SubscriptionStore, claim_once, release_once
from shared.subscription import Subscription

log = structlog.get_logger("paperwire.notifier")
# A slot's claim outlives the tick that builds it (seconds) but not by much: once the digest is queued, LAST_DIGEST
# has moved past the slot; a replica killed in between leaves the slot to another one a few minutes later.
DIGEST_CLAIM_TTL_S = 300
LAST_DIGEST = "notifier:digest:last"


def _buffer(subscription_id: str) -> str:
    return f"notifier:digest:{subscription_id}"


class Intake:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.queue = DeliveryQueue(redis)
        self.subscriptions = SubscriptionStore(redis)
        self.papers = PaperStore(redis)

    async def on_match(self, event: MatchFound) -> int:
        """Queue or buffer one match; returns how many jobs were queued now (0 for buffered or unknown)."""
        subscription = await self.subscriptions.get(event.subscription_id)
        if subscription is None or not subscription.active:
            log.info("match_ignored", subscription_id=event.subscription_id, reason="unknown or paused")
            return 0
        item = MatchItem.from_event(event)
        if subscription.schedule.mode != "instant":
            await self._buffer(subscription.id, item)
            return 0
        queued = 0
        for job in alert_jobs(subscription, item):
            queued += await self.queue.enqueue(job, time.time())
        return queued

    async def _buffer(self, subscription_id: str, item: MatchItem) -> None:
        key = _buffer(subscription_id)
        known = await self.redis.hget(key, item.paper.id)
        if known and MatchItem.model_validate_json(known).score >= item.score:
            return
        await self.redis.hset(key, item.paper.id, item.model_dump_json())

    async def on_subscription(self, event: SubscriptionChanged) -> None:
        """A deleted or paused subscription drops what it had waiting for its digest; one switched to instant
        gets what it had waiting now, as a last digest.

        The last-sent slot is forgotten only on delete: after a pause and resume the slot already sent is not
        due again (it would go out a second time, under the same delivery id). The store decides, not the event:
        a pause retried after the resume, or replayed from a dead letter, must not empty a live digest."""
        if event.action in ("deleted", "paused"):
            stored = await self.subscriptions.get(event.subscription_id)
            if stored is not None and stored.active:
                log.info("stale_change_ignored", subscription_id=event.subscription_id, action=event.action)
                return
            await self.redis.delete(_buffer(event.subscription_id))
            if event.action == "deleted" and stored is None:
                await self.redis.hdel(LAST_DIGEST, event.subscription_id)
        if event.action in ("created", "updated"):
            await self._flush_if_instant(event)

    async def _flush_if_instant(self, event: SubscriptionChanged) -> int:
        """Matches buffered for a digest that will now never come: one digest at once (not an alert per paper,
        which could be dozens of messages in a row), ranked and capped like the digest the subscriber expected.
        Its slot is the change's time, so a redelivered event maps to the same delivery."""
        subscription = await self.subscriptions.get(event.subscription_id)
        if subscription is None or not subscription.active or subscription.schedule.mode != "instant":
            return 0
        items = await self.buffered(subscription.id)
        if not items:
            return 0
        queued = await self._queue_digest(subscription, items, event.occurred_at, time.time(), heartbeat=False)
        log.info("digest_flushed", subscription_id=subscription.id, papers=len(items), reason="switched to instant")
        return queued

    async def _queue_digest(
        self,
        subscription: Subscription,
        items: list[MatchItem],
        slot: datetime,
        due: float,
        *,
        heartbeat: bool,
        slot_done: bool = False,
    ) -> int:
        """Queue the slot's jobs; the buffered matches are removed only when a job carrying them was queued
        (a job with the same id already waiting does not carry matches buffered since). ``slot_done``: the slot is
        marked sent in the same transaction, so no replica finds the buffer emptied and the slot still due (it
        would queue a "no new papers" heartbeat after the digest).

        With nowhere to deliver (feed only, every webhook disabled) the slot's matches are dropped: kept, they
        would pile up for months and flood the first digest after a channel is added.

        The matches are listed as the paper store has them now (:meth:`current`); withdrawn ones leave the buffer
        whatever was queued."""
        items, withdrawn = await self.current(subscription, items)
        deliverable = bool(targets(subscription))
        queued = 0
        for job in digest_jobs(subscription, items, slot, heartbeat=heartbeat):  # one per target: none without
            queued += await self.queue.enqueue(job, due)
        if items and not deliverable:
            log.info("digest_dropped", subscription_id=subscription.id, papers=len(items), reason="no channel")
        done = [i.paper.id for i in items] if items and (queued or not deliverable) else []
        async with self.redis.pipeline(transaction=True) as pipe:
            if done or withdrawn:
                pipe.hdel(_buffer(subscription.id), *done, *withdrawn)
            if slot_done:
                pipe.hset(LAST_DIGEST, subscription.id, slot.isoformat())
            await pipe.execute()
        return queued

    async def current(self, subscription: Subscription, items: list[MatchItem]) -> tuple[list[MatchItem], list[str]]:
        """The buffered matches with their papers as stored now, and the ids of those withdrawn since they matched.

        The classifier claims a match once per (subscription, paper), so nothing refreshes a buffered snapshot: a
        paper revised (v2's abstract and links), upvoted or categorised by arXiv after it matched is read again
        here, in one round trip, and its reasons' facts brought up to date (``jobs.current_reasons``; not scored
        again). A paper no longer stored (expired) keeps its snapshot."""
        stored = await self.papers.get_many([i.paper.id for i in items])
        fresh: list[MatchItem] = []
        withdrawn: list[str] = []
        for item in items:
            paper = stored.get(item.paper.id)
            if (paper or item.paper).withdrawn:
                withdrawn.append(item.paper.id)
            else:
                fresh.append(current_item(item, paper, subscription) if paper and paper != item.paper else item)
        if withdrawn:
            log.info("digest_withdrawn_left_out", subscription_id=subscription.id, papers=withdrawn)
        return fresh, withdrawn

    async def buffered(self, subscription_id: str) -> list[MatchItem]:
        raws = (await self.redis.hgetall(_buffer(subscription_id))).values()
        return [MatchItem.model_validate_json(raw) for raw in raws]

    async def last_sent(self, subscription: Subscription) -> datetime:
        raw = await self.redis.hget(LAST_DIGEST, subscription.id)
        return datetime.fromisoformat(raw.decode()) if raw else subscription.created_at

    async def digest_tick(self, now: datetime) -> int:
        """Queue every digest whose slot has passed; returns how many jobs were queued.

        Every replica ticks: each (subscription, slot) is claimed before its buffer is read, so one replica
        builds it. Otherwise a second one reads the buffer the first just emptied and queues a "no new papers"
        heartbeat for the same slot. A claim whose digest was not queued (an error) is given back, and one whose
        replica died expires (``DIGEST_CLAIM_TTL_S``)."""
        queued = 0
        for subscription in await self.subscriptions.active():
            slot = digest_due(subscription.schedule, await self.last_sent(subscription), now)
            if slot is None:
                continue
            claim = f"digest:{subscription.id}:{slot.isoformat()}"
            if not await claim_once(self.redis, claim, DIGEST_CLAIM_TTL_S):
                continue
            try:
                items = await self.buffered(subscription.id)
                heartbeat = subscription.schedule.heartbeat
                queued += await self._queue_digest(
                    subscription, items, slot, now.timestamp(), heartbeat=heartbeat, slot_done=True
                )
            except BaseException:
                await release_once(self.redis, claim)
                raise
            log.info("digest_queued", subscription_id=subscription.id, slot=slot.isoformat(), papers=len(items))
        return queued
