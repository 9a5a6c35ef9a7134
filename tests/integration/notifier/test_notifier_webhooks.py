"""Webhooks to a real local HTTP receiver: signatures, retries, 410, dead letters and replay, isolation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from standardwebhooks import Webhook

from services.notifier.jobs import alert_jobs
from services.notifier.queue import DeliveryQueue
from shared.storage import DeliveryLog, SubscriptionStore
from shared.subscription import Channels
from tests.integration.notifier.conftest import running, stream_results, wait_for
from tests.receiver import Received, Receiver, always, serve
from tests.unit.notifier.notifier_papers import HF_JUNE, OLD_SECRET, SECRET, endpoint, hf_papers, items, subscription


async def queue_alerts(redis: aioredis.Redis, sub, papers) -> list:
    await SubscriptionStore(redis).put(sub)
    queue = DeliveryQueue(redis)
    jobs = []
    for item in items(papers):
        for job in alert_jobs(sub, item):
            await queue.enqueue(job, time.time())
            jobs.append(job)
    return jobs


async def test_signed_delivery_verifies_and_flaky_receiver_gets_exactly_one(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    def flaky(request: Received, index: int):
        return (503, {}, b"down") if index < 3 else (200, {}, b"ok")

    async with serve(Receiver(flaky)) as receiver:
        hook = endpoint(receiver.url + "/hook", previous_secret=OLD_SECRET)
        sub = subscription(channels=Channels(webhooks=[hook]))
        paper = hf_papers(fixtures_dir)[0]
        (job,) = await queue_alerts(redis, sub, [paper])
        settings = settings_for(webhook_retry_schedule_s=[0.05, 0.05, 0.05, 0.05])
        async with running(settings) as worker:
            await wait_for(lambda: receiver.bodies(status=200))
            await asyncio.sleep(0.3)  # nothing else may arrive after the accepted one
            await worker.drain()
        assert [r.status for r in receiver.requests] == [503, 503, 503, 200]
        assert {r.headers["webhook-id"] for r in receiver.requests} == {job.id}  # same id on every retry
        accepted = receiver.bodies(status=200)[0]
        for secret in (SECRET, OLD_SECRET):  # rotation: old and new secret both verify
            payload = Webhook(secret).verify(accepted.body, accepted.headers)
        assert payload["type"] == "paper.matched"
        assert payload["data"]["papers"][0]["id"] == "2605.05242"
        assert payload["data"]["papers"][0]["upvotes"] == 86
        attempts = await DeliveryLog(redis).recent_attempts(hook.id)
        assert [a["status_code"] for a in attempts] == [200, 503, 503, 503]
        assert (await DeliveryLog(redis).state(hook.id))["state"] == "active"
        results = await stream_results(redis)
        assert [r["status"] for r in results] == ["failed", "failed", "failed", "delivered"]
        assert await DeliveryQueue(redis).pending() == 0


async def test_gone_endpoint_is_disabled(redis: aioredis.Redis, settings_for, fixtures_dir: Path) -> None:
    async with serve(Receiver(always(410, b"gone"))) as receiver:
        hook = endpoint(receiver.url + "/gone")
        sub = subscription(channels=Channels(webhooks=[hook]))
        await queue_alerts(redis, sub, hf_papers(fixtures_dir)[:2])
        # one delivery at a time to this endpoint, so the second one starts after the 410
        async with running(settings_for(webhook_concurrency_per_endpoint=1)) as worker:

            async def disabled() -> bool:
                stored = await SubscriptionStore(redis).get(sub.id)
                return not stored.channels.webhooks[0].enabled

            await wait_for(disabled)
            await asyncio.sleep(0.3)
            await worker.drain()
        stored = await SubscriptionStore(redis).get(sub.id)
        assert stored.channels.webhooks[0].disabled_reason == "the endpoint answered 410 Gone"
        assert (await DeliveryLog(redis).state(hook.id))["state"] == "disabled"
        # the second paper is not sent to the disabled endpoint: one 410, then nothing
        assert len(receiver.requests) == 1
        statuses = sorted(r["status"] for r in await stream_results(redis))
        assert statuses == ["failed", "skipped"]
        assert await DeliveryQueue(redis).pending() == 0


async def test_dead_after_last_attempt_then_replayed_once(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    state = {"up": False}

    def switch(request: Received, index: int):
        return (200, {}, b"ok") if state["up"] else (500, {}, b"boom")

    async with serve(Receiver(switch)) as receiver:
        hook = endpoint(receiver.url + "/hook")
        sub = subscription(channels=Channels(webhooks=[hook]))
        (job,) = await queue_alerts(redis, sub, hf_papers(fixtures_dir)[:1])
        settings = settings_for(webhook_retry_schedule_s=[0.05, 0.05])
        async with running(settings) as worker:

            async def dead() -> bool:
                return await redis.xlen("deliveries.failed") == 1

            await wait_for(dead)
            assert len(receiver.requests) == 3  # first try + 2 retries
            (buried,) = await stream_results(redis, "deliveries.failed")
            assert buried["status"] == "dead" and buried["event_id"] == job.id and buried["attempts"] == 3
            state["up"] = True
            replayed = await DeliveryQueue(redis).replay([job.id], time.time())
            assert [j.id for j in replayed] == [job.id]
            assert await redis.xlen("deliveries.failed") == 0  # replayed: no longer listed as dead
            worker.wake.set()
            await wait_for(lambda: receiver.bodies(status=200))

            async def delivered() -> bool:
                return (await stream_results(redis))[-1]["status"] == "delivered"

            await wait_for(delivered)
            # a second replay of the same (now delivered) paper sends nothing
            await DeliveryQueue(redis).enqueue(replayed[0].model_copy(update={"attempts": 0}), time.time())
            await asyncio.sleep(0.3)
            await worker.drain()
        assert len(receiver.bodies(status=200)) == 1
        assert [r["status"] for r in await stream_results(redis)][-2:] == ["delivered", "duplicate"]


async def test_hanging_endpoint_does_not_delay_the_others(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """Causal, not timed: every delivery to a healthy endpoint completes while all of a hanging endpoint's
    requests are still open (its timeout is far away), so none of them waited on it. The time bound itself is
    measured by `paperwire bench deliver`."""
    arrived: list[float] = []
    release = asyncio.Event()

    async def hang(request: Received, index: int):
        arrived.append(time.monotonic())
        await release.wait()
        return 200, {}, b"late"

    papers = hf_papers(fixtures_dir)
    async with serve(Receiver(hang)) as slow, serve(Receiver(always())) as fast:
        stuck = subscription(name="stuck", channels=Channels(webhooks=[endpoint(slow.url + "/hang")]))
        healthy = subscription(name="healthy", channels=Channels(webhooks=[endpoint(fast.url + "/ok")]))
        # the hanging endpoint's deliveries are queued first, so they are taken first
        await queue_alerts(redis, stuck, hf_papers(fixtures_dir, HF_JUNE)[:10])
        settings = settings_for(webhook_timeout_s=120.0)
        async with running(settings):
            # the slow endpoint now holds all its slots (4 requests hanging)
            await wait_for(lambda: len(arrived) == settings.webhook_concurrency_per_endpoint)
            await queue_alerts(redis, healthy, papers)
            await wait_for(lambda: len(fast.requests) == len(papers), limit_s=60.0)
            assert not release.is_set()  # every hanging request is still open
            release.set()
        assert len(fast.requests) == len(papers)
        assert len(arrived) == settings.webhook_concurrency_per_endpoint  # none beyond its own slots


async def test_replay_request_requeues_only_that_subscriptions_dead_jobs(
    redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    """The api asks for a replay with a ReplayRequested event; the notifier requeues that subscription's jobs."""
    queue = DeliveryQueue(redis)
    mine = subscription(id="mine", channels=Channels(webhooks=[endpoint("http://127.0.0.1:9/a")]))
    theirs = subscription(id="theirs", channels=Channels(webhooks=[endpoint("http://127.0.0.1:9/b")]))
    paper_items = items(hf_papers(fixtures_dir)[:1])
    mine_job, theirs_job = alert_jobs(mine, paper_items[0])[0], alert_jobs(theirs, paper_items[0])[0]
    for job in (mine_job, theirs_job):
        await queue.bury(job)
    requeued = await queue.replay(None, time.time(), subscription_id="mine")
    assert [j.id for j in requeued] == [mine_job.id]
    assert [j.id for j in await queue.dead_jobs()] == [theirs_job.id]


async def test_unbounded_retry_after_does_not_park_the_delivery(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """``Retry-After: inf`` (``float`` takes it) or a year: the delivery still runs its retry schedule, each wait
    at most the schedule's longest step, and goes dead where ``deliveries replay`` finds it."""
    busy_forever = always(503, b"busy", {"retry-after": "inf"})
    busy_for_a_year = always(503, b"busy", {"retry-after": "31536000"})
    async with serve(Receiver(busy_forever)) as forever, serve(Receiver(busy_for_a_year)) as year:
        hooks = [endpoint(forever.url + "/hook"), endpoint(year.url + "/hook")]
        sub = subscription(channels=Channels(email=None, webhooks=hooks))
        jobs = await queue_alerts(redis, sub, hf_papers(fixtures_dir)[:1])
        async with running(settings_for(webhook_retry_schedule_s=[0.1, 0.2, 0.3])) as worker:

            async def all_dead() -> bool:
                return await redis.xlen("deliveries.failed") == len(jobs)

            await wait_for(all_dead, limit_s=8.0)
            await worker.drain()
        assert len(forever.requests) == len(year.requests) == 4  # first try + 3 retries
        assert sorted(j.id for j in await DeliveryQueue(redis).dead_jobs()) == sorted(j.id for j in jobs)
