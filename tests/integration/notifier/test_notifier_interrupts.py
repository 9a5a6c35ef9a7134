"""Sends that never returned (shutdown, a crash inside a send) are tried again, not taken for delivered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis

from services.notifier.jobs import DeliveryJob, alert_jobs
from services.notifier.queue import DeliveryQueue
from services.notifier.runtime import delivery_worker
from services.notifier.senders import Outcome
from services.notifier.worker import DeliveryWorker
from shared.events import DeliveryResult, Stream
from shared.storage import SubscriptionStore
from shared.subscription import Channels, Subscription
from tests.integration.notifier.conftest import running, stream_results, wait_for
from tests.receiver import Received, Receiver, serve
from tests.unit.notifier.notifier_papers import endpoint, hf_papers, items, subscription


class Recorder:
    """A sender that delivers at once and remembers what it sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, job: DeliveryJob, sub: Subscription) -> Outcome:
        self.sent.append(job.id)
        return Outcome("delivered", 200)


class Stuck:
    """A send that never returns by itself (a slow SMTP peer, a long Slack Retry-After)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send(self, job: DeliveryJob, sub: Subscription) -> Outcome:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class CrashesOnce(Recorder):
    async def send(self, job: DeliveryJob, sub: Subscription) -> Outcome:
        if not self.sent and not getattr(self, "crashed", False):
            self.crashed = True
            raise ValueError("a bug inside send")
        return await super().send(job, sub)


def collector() -> tuple[list[DeliveryResult], object]:
    results: list[DeliveryResult] = []

    async def publish(stream: Stream, result: DeliveryResult) -> None:
        results.append(result)

    return results, publish


async def stop(worker: DeliveryWorker, loop: asyncio.Task[None]) -> None:
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await worker.drain()


async def one_alert(redis: aioredis.Redis, fixtures_dir: Path, sub: Subscription | None = None) -> DeliveryJob:
    sub = sub or subscription()
    await SubscriptionStore(redis).put(sub)
    (job,) = alert_jobs(sub, items(hf_papers(fixtures_dir)[:1])[0])
    await DeliveryQueue(redis).enqueue(job, time.time())
    return job


async def test_send_cancelled_at_shutdown_is_sent_after_restart(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    job = await one_alert(redis, fixtures_dir)
    settings = settings_for()
    results, publish = collector()
    stuck = Stuck()
    first = DeliveryWorker(redis, settings, {"email": stuck}, publish)  # type: ignore[arg-type, dict-item]
    loop = asyncio.create_task(first.run_forever())
    await stuck.started.wait()
    loop.cancel()
    for task in list(first.tasks):  # the shutdown grace period ran out: in-flight sends are cancelled
        task.cancel()
    await asyncio.gather(loop, *first.tasks, return_exceptions=True)
    assert await redis.keys("once:*") == []
    assert await DeliveryQueue(redis).pending() == 1

    recorder = Recorder()
    second = DeliveryWorker(redis, settings, {"email": recorder}, publish)  # type: ignore[arg-type, dict-item]
    loop = asyncio.create_task(second.run_forever())
    await wait_for(lambda: recorder.sent)
    await wait_for(lambda: [r.status for r in results] == ["delivered"])
    await stop(second, loop)
    assert recorder.sent == [job.id]
    assert results[0].attempts == 1  # the interrupted try does not count against the endpoint
    assert await DeliveryQueue(redis).pending() == 0


async def test_a_worker_that_dies_mid_send_does_not_lose_the_alert(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """A replica killed (SIGKILL) during a send runs no clean-up: its once-keys lasted 90 days, so the retry
    another replica made once the job's lease ran out found them and reported the lost alert as a "duplicate"."""
    job = await one_alert(redis, fixtures_dir)
    settings = settings_for(lease_s=0.5)
    dead_results, dead_publish = collector()
    stuck = Stuck()  # stands for the killed process: it holds its claims, never answers, and renews nothing
    killed = DeliveryWorker(redis, settings, {"email": stuck}, dead_publish)  # type: ignore[arg-type, dict-item]

    async def dead(job: DeliveryJob, keys: list[str]) -> bool:
        return False  # a killed process's renewals stop: its claims and its job's lease run out

    killed._keep_sending = dead  # type: ignore[method-assign]
    killed_loop = asyncio.create_task(killed.run_forever())
    await stuck.started.wait()
    killed_loop.cancel()  # it leases nothing more; its send stays in flight, as a dead process's would
    await asyncio.gather(killed_loop, return_exceptions=True)

    results, publish = collector()
    recorder = Recorder()
    survivor = DeliveryWorker(redis, settings, {"email": recorder}, publish)  # type: ignore[arg-type, dict-item]
    loop = asyncio.create_task(survivor.run_forever())
    try:
        await wait_for(lambda: [r.status for r in results][-1:] in (["delivered"], ["duplicate"]))
    finally:
        await stop(survivor, loop)
        for task in list(killed.tasks):
            task.cancel()
        await asyncio.gather(*killed.tasks, return_exceptions=True)
    assert recorder.sent == [job.id] and [r.status for r in results] == ["delivered"]


async def test_a_send_slower_than_its_lease_is_not_sent_again(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    """A live send past ``NOTIFIER_LEASE_S`` (a slow SMTP peer, Slack's Retry-After waits): its job was leased
    again and, its claims having run out, sent a second time, and again every lease after."""
    job = await one_alert(redis, fixtures_dir)
    settings = settings_for(lease_s=0.5)

    class Slow(Recorder):
        async def send(self, job: DeliveryJob, sub: Subscription) -> Outcome:
            self.sent.append(job.id)
            await asyncio.sleep(2.0)  # four leases
            return Outcome("delivered", 250)

    results, publish = collector()
    sender = Slow()
    worker = DeliveryWorker(redis, settings, {"email": sender}, publish)  # type: ignore[arg-type, dict-item]
    loop = asyncio.create_task(worker.run_forever())
    try:
        await wait_for(lambda: [r.status for r in results] == ["delivered"])
        await asyncio.sleep(1.5)  # three more leases: a second send would have started by now
    finally:
        await stop(worker, loop)
    assert sender.sent == [job.id] and [r.status for r in results] == ["delivered"]
    assert await DeliveryQueue(redis).pending() == 0


async def test_send_that_crashes_is_retried_not_reported_duplicate(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    job = await one_alert(redis, fixtures_dir)
    results, publish = collector()
    sender = CrashesOnce()
    settings = settings_for(lease_s=0.5)  # a crash that is not handled is found again once the lease ends
    worker = DeliveryWorker(redis, settings, {"email": sender}, publish)  # type: ignore[arg-type, dict-item]
    loop = asyncio.create_task(worker.run_forever())
    await wait_for(lambda: [r.status for r in results][-1:] in (["delivered"], ["duplicate"]))
    await stop(worker, loop)
    assert sender.sent == [job.id]
    assert [r.status for r in results] == ["failed", "delivered"]
    assert "ValueError: a bug inside send" in (results[0].error or "")
    assert await DeliveryQueue(redis).pending() == 0


async def test_shutdown_lets_an_in_flight_webhook_finish(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Received, index: int):
        arrived.set()
        await release.wait()
        return 200, {}, b"ok"

    async with serve(Receiver(slow)) as receiver:
        sub = subscription(channels=Channels(webhooks=[endpoint(receiver.url + "/hook")]))
        await one_alert(redis, fixtures_dir, sub)
        settings = settings_for(webhook_timeout_s=60.0)
        context = delivery_worker(settings)
        worker = await context.__aenter__()
        loop = asyncio.create_task(worker.run_forever())
        await arrived.wait()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        closing = asyncio.create_task(context.__aexit__(None, None, None))
        await asyncio.sleep(0)  # shutdown has begun while the request is still open
        release.set()
        await closing
    assert [r["status"] for r in await stream_results(redis)] == ["delivered"]
    assert await DeliveryQueue(redis).pending() == 0


async def test_gone_endpoint_of_a_subscription_deleted_meanwhile_does_not_bring_it_back(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    store = SubscriptionStore(redis)
    holder: dict[str, str] = {}

    async def deleted_then_gone(request: Received, index: int):
        await store.delete(holder["id"])  # the owner deletes the subscription while the request is open
        return 410, {}, b"gone"

    async with serve(Receiver(deleted_then_gone)) as receiver:
        sub = subscription(channels=Channels(webhooks=[endpoint(receiver.url + "/gone")]))
        holder["id"] = sub.id
        await one_alert(redis, fixtures_dir, sub)
        async with running(settings_for()) as worker:
            await wait_for(lambda: receiver.requests)

            async def finished() -> bool:
                return len(await stream_results(redis)) == 1

            await wait_for(finished)
            await worker.drain()
    assert await store.get(sub.id) is None
    assert await store.list() == []
    assert [r["status"] for r in await stream_results(redis)] == ["failed"]
