"""Digest buffering across pauses, lost slot records and a switch to instant alerts (real Redis, no worker)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time

import pytest
import redis.asyncio as aioredis

from services.notifier.intake import DIGEST_CLAIM_TTL_S, LAST_DIGEST, Intake
from services.notifier.jobs import DeliveryJob
from services.notifier.queue import JOBS, DeliveryQueue
from shared.events import MatchFound, SubscriptionChanged
from shared.paper import Paper
from shared.storage import SubscriptionStore, claim_once
from shared.subscription import Channels, Schedule, Subscription
from tests.unit.notifier.notifier_papers import subscription


def match(sub: Subscription, paper_id: str) -> MatchFound:
    paper = Paper(id=paper_id, title=f"Paper {paper_id}", abstract="A")
    return MatchFound(subscription_id=sub.id, owner=sub.owner, paper=paper, score=0.9)


async def queued_jobs(redis: aioredis.Redis) -> list[DeliveryJob]:
    return [DeliveryJob.model_validate_json(raw) for raw in (await redis.hgetall(JOBS)).values()]


async def deliver_all(redis: aioredis.Redis) -> None:
    """What the worker does once the queued jobs went out."""
    for job in await queued_jobs(redis):
        await DeliveryQueue(redis).complete(job)


async def daily(redis: aioredis.Redis) -> Subscription:
    sub = subscription(schedule=Schedule(mode="daily", at=time(8, 0)), created_at=datetime(2024, 1, 1, tzinfo=UTC))
    await SubscriptionStore(redis).put(sub)
    return sub


async def change(redis: aioredis.Redis, intake: Intake, sub: Subscription, action: str) -> SubscriptionChanged:
    await SubscriptionStore(redis).put(sub)
    event = SubscriptionChanged(subscription_id=sub.id, action=action, subscription=sub)  # type: ignore[arg-type]
    await intake.on_subscription(event)
    return event


async def test_pause_and_resume_does_not_send_the_same_slot_again(redis: aioredis.Redis) -> None:
    intake = Intake(redis)
    sub = await daily(redis)
    await intake.on_match(match(sub, "2401.00001"))
    assert await intake.digest_tick(datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)) == 1
    (sent,) = await queued_jobs(redis)
    await deliver_all(redis)

    await change(redis, intake, sub.model_copy(update={"active": False}), "paused")
    await change(redis, intake, sub, "updated")
    await intake.on_match(match(sub, "2401.00002"))
    assert await intake.digest_tick(datetime(2024, 5, 2, 10, 0, 30, tzinfo=UTC)) == 0  # 08:00 went out already
    assert [i.paper.id for i in await intake.buffered(sub.id)] == ["2401.00002"]

    assert await intake.digest_tick(datetime(2024, 5, 3, 8, 0, 30, tzinfo=UTC)) == 1
    (next_day,) = await queued_jobs(redis)
    assert next_day.id != sent.id and next_day.paper_ids == ["2401.00002"]


async def test_matches_are_kept_when_their_digest_job_was_not_queued(redis: aioredis.Redis) -> None:
    intake = Intake(redis)
    sub = await daily(redis)
    slot_time = datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)
    await intake.on_match(match(sub, "2401.00001"))
    assert await intake.digest_tick(slot_time) == 1
    await redis.hdel(LAST_DIGEST, sub.id)  # lost: a crash between queueing the slot and recording it
    await intake.on_match(match(sub, "2401.00002"))
    assert await intake.digest_tick(slot_time) == 0  # same slot, same job id: not queued a second time
    assert [i.paper.id for i in await intake.buffered(sub.id)] == ["2401.00002"]
    (job,) = await queued_jobs(redis)
    assert job.paper_ids == ["2401.00001"]


async def test_switch_to_instant_sends_what_was_waiting_as_one_digest(redis: aioredis.Redis) -> None:
    intake = Intake(redis)
    sub = await daily(redis)
    for paper_id in ("2401.00003", "2401.00004"):
        await intake.on_match(match(sub, paper_id))
    instant = sub.model_copy(update={"schedule": Schedule(mode="instant")})
    event = await change(redis, intake, instant, "updated")
    (job,) = await queued_jobs(redis)
    assert job.kind == "digest" and sorted(job.paper_ids) == ["2401.00003", "2401.00004"]
    assert job.period == event.occurred_at.isoformat()
    assert await intake.buffered(sub.id) == []
    await intake.on_subscription(event)  # redelivered: nothing more
    assert len(await queued_jobs(redis)) == 1
    await intake.on_match(match(instant, "2401.00005"))  # from now on, alerts
    assert sorted(j.kind for j in await queued_jobs(redis)) == ["alert", "digest"]


async def test_pause_drops_and_delete_forgets_the_digest(redis: aioredis.Redis) -> None:
    intake = Intake(redis)
    sub = await daily(redis)
    await intake.on_match(match(sub, "2401.00001"))
    assert await intake.digest_tick(datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)) == 1
    await intake.on_match(match(sub, "2401.00002"))
    await change(redis, intake, sub.model_copy(update={"active": False}), "paused")
    assert await intake.buffered(sub.id) == []
    assert await redis.hexists(LAST_DIGEST, sub.id)
    await SubscriptionStore(redis).delete(sub.id)
    await intake.on_subscription(SubscriptionChanged(subscription_id=sub.id, action="deleted"))
    assert not await redis.hexists(LAST_DIGEST, sub.id)


@pytest.mark.parametrize("action", ["paused", "deleted"])
async def test_a_late_pause_or_delete_leaves_a_live_digest_alone(redis: aioredis.Redis, action: str) -> None:
    """A pause retried by the claimer after the resume, or replayed from a dead letter, emptied the buffer of a
    subscription that is active again (and a late delete made a sent slot due again)."""
    intake = Intake(redis)
    sub = await daily(redis)
    await intake.on_match(match(sub, "2401.00001"))
    assert await intake.digest_tick(datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)) == 1
    await intake.on_match(match(sub, "2401.00002"))
    paused = sub.model_copy(update={"active": False})
    await intake.on_subscription(SubscriptionChanged(subscription_id=sub.id, action=action, subscription=paused))
    assert [i.paper.id for i in await intake.buffered(sub.id)] == ["2401.00002"]
    assert await redis.hexists(LAST_DIGEST, sub.id)


async def test_a_slot_with_no_channel_drops_what_was_buffered(redis: aioredis.Redis) -> None:
    """Feed only (or every webhook disabled): nothing to send at the slot, and nothing kept for months either."""
    intake = Intake(redis)
    sub = await daily(redis)
    feed_only = sub.model_copy(update={"channels": Channels()})
    await SubscriptionStore(redis).put(feed_only)
    for day, paper_id in ((2, "2401.00001"), (3, "2401.00002")):
        await intake.on_match(match(sub, paper_id))
        assert await intake.digest_tick(datetime(2024, 5, day, 8, 0, 30, tzinfo=UTC)) == 0
        assert await intake.buffered(sub.id) == []
    await SubscriptionStore(redis).put(sub)  # an e-mail address again
    await intake.on_match(match(sub, "2401.00003"))
    assert await intake.digest_tick(datetime(2024, 5, 4, 8, 0, 30, tzinfo=UTC)) == 1
    (job,) = await queued_jobs(redis)
    assert job.paper_ids == ["2401.00003"] and job.more == 0


class LateReplica(Intake):
    """A replica that finds the slot due and then loses the race: ``first`` (another replica) runs its whole tick
    before this one reads the buffer, deterministically inside the window between the two."""

    def __init__(self, redis: aioredis.Redis, first: Callable[[], Awaitable[int]]) -> None:
        super().__init__(redis)
        self.first = first
        self.first_queued: int | None = None

    async def last_sent(self, subscription: Subscription) -> datetime:
        seen = await super().last_sent(subscription)
        if self.first_queued is None:
            self.first_queued = await self.first()
        return seen


async def test_replicas_ticking_together_build_one_message_per_slot(redis: aioredis.Redis) -> None:
    """Each replica runs the digest loop: the one that reads the buffer second must not see it empty and queue
    a "no new papers" heartbeat for the slot the other just queued the digest of."""
    sub = subscription(
        schedule=Schedule(mode="daily", at=time(8, 0), heartbeat=True), created_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    await SubscriptionStore(redis).put(sub)
    await Intake(redis).on_match(match(sub, "2401.00001"))
    slot_time = datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)
    late = LateReplica(redis, lambda: Intake(redis).digest_tick(slot_time))
    assert await late.digest_tick(slot_time) == 0
    assert late.first_queued == 1
    (job,) = await queued_jobs(redis)
    assert job.kind == "digest" and job.paper_ids == ["2401.00001"]


async def test_records_stored_under_older_rules_or_unreadable_do_not_stop_the_others(redis: aioredis.Redis) -> None:
    """An address today's rules refuse (a comment in it), stored by an older release, is still readable (its owner
    can fix it) but gets no mail; a record no release can read (a time zone tzdata dropped) is skipped with its
    reason; the other subscriptions' digests go out."""
    sub = await daily(redis)
    for subscription_id, field, value in (("old-rules", "email", "a(b@example.org"), ("unreadable", "tz", "Mars/X")):
        old = subscription(id=subscription_id, schedule=Schedule(mode="daily", at=time(8, 0))).model_dump(mode="json")
        old["created_at"] = "2024-01-01T00:00:00+00:00"
        if field == "email":
            old["channels"]["email"] = value
        else:
            old["schedule"]["timezone"] = value
        await redis.set(f"subscription:{subscription_id}", json.dumps(old))
        await redis.sadd("subscriptions:ids", subscription_id)
    intake = Intake(redis)
    for subscription_id in (sub.id, "old-rules"):
        await intake.on_match(match(sub.model_copy(update={"id": subscription_id}), "2401.00001"))
    assert sorted(s.id for s in await SubscriptionStore(redis).active()) == sorted([sub.id, "old-rules"])
    assert await intake.digest_tick(datetime(2024, 3, 2, 9, 0, tzinfo=UTC)) == 1
    assert {job.subscription_id for job in await queued_jobs(redis)} == {sub.id}


async def test_a_slot_whose_replica_died_after_claiming_it_is_built_once_the_claim_expires(
    redis: aioredis.Redis,
) -> None:
    sub = await daily(redis)
    intake = Intake(redis)
    await intake.on_match(match(sub, "2401.00001"))
    now = datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
    slot = datetime(2024, 3, 2, 8, 0, tzinfo=UTC)
    await claim_once(redis, f"digest:{sub.id}:{slot.isoformat()}", DIGEST_CLAIM_TTL_S)  # then it was killed
    assert await intake.digest_tick(now) == 0
    assert 0 < await redis.ttl(f"once:digest:{sub.id}:{slot.isoformat()}") <= DIGEST_CLAIM_TTL_S
    await redis.delete(f"once:digest:{sub.id}:{slot.isoformat()}")  # expired
    assert await intake.digest_tick(now) == 1


async def test_a_replica_dying_right_after_queueing_a_digest_leaves_no_slot_for_a_heartbeat(
    redis: aioredis.Redis, monkeypatch
) -> None:
    """The slot is marked sent with the buffer emptied, in one transaction: a replica that dies just after (its
    claim lapses) leaves no replica finding the buffer empty and the slot due, to queue "no new papers" for it."""
    sub = subscription(
        schedule=Schedule(mode="daily", at=time(8, 0), heartbeat=True), created_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    await SubscriptionStore(redis).put(sub)
    intake = Intake(redis)
    await intake.on_match(match(sub, "2401.00001"))
    queue_digest = Intake._queue_digest

    async def then_killed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        await queue_digest(self, *args, **kwargs)
        raise SystemExit("killed")

    monkeypatch.setattr(Intake, "_queue_digest", then_killed)
    now = datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
    with pytest.raises(SystemExit):
        await intake.digest_tick(now)
    monkeypatch.setattr(Intake, "_queue_digest", queue_digest)
    assert await Intake(redis).digest_tick(now) == 0  # another replica: nothing due
    assert [job.kind for job in await queued_jobs(redis)] == ["digest"]


async def test_a_change_to_a_record_stored_under_older_rules_reaches_the_consumers(redis: aioredis.Redis) -> None:
    """The api may store and announce edits of a record whose address today's rules refuse (its owner pausing
    it, say): the event must still parse where it is consumed, and the pause drop the buffered digest."""
    sub = await daily(redis)
    await Intake(redis).on_match(match(sub, "2401.00001"))
    record = sub.model_dump(mode="json") | {"active": False}
    record["channels"]["email"] = "ann@my_host.example.org"  # accepted by an older release, refused now
    await redis.set(f"subscription:{sub.id}", json.dumps(record))  # what the api stored before announcing it
    body = {"subscription_id": sub.id, "action": "paused", "subscription": record}
    event = SubscriptionChanged.model_validate_json(json.dumps(body))  # what the consumer helper does
    await Intake(redis).on_subscription(event)
    assert await Intake(redis).buffered(sub.id) == []
