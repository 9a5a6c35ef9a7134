"""The delivery worker: takes due jobs target by target, guards each (subscription, paper, target) with a
once-key, sends, and records the outcome (retry with backoff, throttle, disable on 410, dead after the last try).

At most once: a paper is claimed for a (subscription, channel, target) right before sending and released
when the send failed, crashed or was cancelled (shutdown) before it returned; a claim that exists means it was
delivered (or the whole process died while sending it), so retries, restarts and replays never send it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import redis.asyncio as aioredis
import structlog

from services.notifier.jobs import DeliveryJob, targets
from services.notifier.queue import DeliveryQueue
from services.notifier.schedule import retry_delay
from services.notifier.senders import Outcome, attempt_record
from services.notifier.settings import NotifierSettings
from services.notifier.slots import EndpointSlots
from shared.events import DeliveryResult, DeliveryStatus, Stream
from shared.storage import (
    DeliveryLog,
    SubscriptionStore,
    claim_once,
    claims_left_ms,
    keep_claims,
    mark_done,
    release_once,
)
from shared.subscription import Subscription
from shared.tasks import cancel_and_wait, lease_kept

log = structlog.get_logger("paperwire.notifier")

Publish = Callable[[Stream, DeliveryResult], Awaitable[None]]


class Sender(Protocol):
    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome: ...


def raise_if_cancelled() -> None:
    """Stop a loop whose cancellation was swallowed on the way (Python 3.11: a cancel racing a timeout in
    asyncio or in a client library can be lost); ``Task.cancelling()`` still remembers it was asked."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def shares_slots(target_key: str) -> bool:
    """Webhook slots bound what a receiver sees from every replica, so they are counted in Redis; e-mail's bound
    one process's SMTP sessions, and Slack's one-at-a-time keeps a process's order (its pace is shared anyway)."""
    return target_key.split(":", 1)[0] == "webhook"


DELIVERED_TTL_S = 90 * 24 * 3600  # how long a target is known to have had a paper


async def _nothing() -> None:
    """A send's claims are not released when it returns: delivered, they are marked done; failed, released."""


def once_key(job: DeliveryJob, paper_id: str | None) -> str:
    what = paper_id if paper_id is not None else f"job:{job.id}"
    return f"delivered:{job.subscription_id}:{job.channel}:{job.target}:{what}"


class DeliveryWorker:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: NotifierSettings,
        senders: dict[str, Sender],
        publish: Publish,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.sending_s = max(1, math.ceil(settings.lease_s))  # a send's claims outlive it by no more than its lease
        self.senders = senders
        self.publish = publish
        self.queue = DeliveryQueue(redis)
        self.subscriptions = SubscriptionStore(redis)
        self.delivery_log = DeliveryLog(redis)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.slots = EndpointSlots(redis, settings.webhook_slot_lease_s)
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()

    def pool(self, target_key: str) -> str:
        """The key a target's sends are counted under in ``in_flight``: all e-mail shares one (the limit is on
        the process's SMTP sessions, whoever they are for); a webhook or Slack target has its own."""
        channel = target_key.split(":", 1)[0]
        return channel if channel == "email" else target_key

    def limit(self, target_key: str) -> int:
        channel = target_key.split(":", 1)[0]
        if channel == "webhook":
            return self.settings.webhook_concurrency_per_endpoint
        if channel == "email":
            return self.settings.email_concurrency
        return 1  # slack: one message at a time per webhook keeps order and the 1/s pace

    async def tick(self) -> int:
        """Start what is due and has a free slot; returns how many jobs were started.

        A webhook's slots are taken from Redis (:mod:`services.notifier.slots`), shared with every replica,
        before its jobs are leased; a busy endpoint, here or anywhere, is looked at again ``worker_poll_s`` later.
        """
        now = time.time()
        started = 0
        for target_key in await self.queue.due_targets(now):
            free_global = self.settings.delivery_concurrency - len(self.tasks)
            if free_global <= 0:
                break
            # every local webhook send holds a shared slot, so a full count here needs no question to Redis
            free = min(self.limit(target_key) - self.in_flight[self.pool(target_key)], free_global)
            tokens: list[str] | None = None
            if free > 0 and shares_slots(target_key):
                tokens = await self.slots.acquire(target_key, self.limit(target_key), free)
                free = len(tokens)
            if free <= 0:
                await self.queue.postpone_target(target_key, now + self.settings.worker_poll_s)
                continue
            jobs: list[DeliveryJob] = []
            try:
                jobs = await self.queue.lease(target_key, now, now + self.settings.lease_s, free)
            finally:
                if tokens is not None and len(tokens) > len(jobs):  # fewer jobs due than slots taken
                    await self.slots.give_back(target_key, *tokens[len(jobs) :])
            for index, job in enumerate(jobs):
                self.in_flight[self.pool(target_key)] += 1
                token = tokens[index] if tokens is not None else None
                task = asyncio.create_task(self._run(job, token), name=f"deliver:{job.id}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                started += 1
        return started

    async def run_forever(self) -> None:
        while True:
            raise_if_cancelled()
            await self.tick()
            self.wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that races its
            # timeout, and the loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.worker_poll_s):
                    await self.wake.wait()

    async def shutdown(self, grace_s: float) -> None:
        """Stop: in-flight sends get ``grace_s`` to finish; what is still running then is cancelled, and the
        cancellation puts its job back in the queue (see :meth:`_abandon`)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)
        await cancel_and_wait(*self.tasks)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _run(self, job: DeliveryJob, slot: str | None = None) -> None:
        """Deliver ``job``, holding its shared endpoint slot (when it has one) until the delivery is done."""
        held: contextlib.AbstractAsyncContextManager[None] = (
            self.slots.hold(job.target_key, slot) if slot is not None else contextlib.nullcontext()
        )
        try:
            async with held:
                await self.deliver(job)
        except Exception as exc:  # a bug or Redis hiccup: the job was put back (or its lease expires)
            log.exception("delivery_crashed", delivery_id=job.id, error=str(exc))
        finally:
            self.in_flight[self.pool(job.target_key)] -= 1
            self.wake.set()

    async def deliver(self, job: DeliveryJob) -> DeliveryStatus:
        subscription = await self.subscriptions.get(job.subscription_id)
        if subscription is None or not subscription.active:
            return await self._finish(job, "skipped", error="subscription deleted or paused")
        if (job.channel, job.target) not in targets(subscription):
            return await self._finish(job, "skipped", error="target removed or disabled")
        mine: list[str] = []
        outcome: Outcome | None = None
        attempts = job.attempts
        try:
            claimed = await self._claim(job, mine)
            if sending_elsewhere := await self._sending_elsewhere(job, claimed):
                for key in mine:
                    await release_once(self.redis, key)
                await self.queue.reschedule(job, time.time() + sending_elsewhere)
                log.info("delivery_in_flight_elsewhere", delivery_id=job.id, retry_in_s=round(sending_elsewhere, 1))
                return "skipped"
            if claimed is not None and (claimed or not job.items):
                job.items = [item for item in job.items if item.paper.id in claimed]
                job.attempts += 1
                started = time.time()
                async with lease_kept(
                    lambda: self._keep_sending(job, mine), _nothing, self.sending_s / 3, "delivery", delivery_id=job.id
                ):
                    outcome = await self.senders[job.channel].send(job, subscription)
        except BaseException as exc:
            job.attempts = attempts if isinstance(exc, asyncio.CancelledError) else attempts + 1
            await self._abandon(job, mine, exc)
            raise
        if outcome is None:
            return await self._finish(job, "duplicate", error="already delivered to this target")
        finished = time.time()
        if outcome.kind != "delivered":
            await self._release(job)
        if job.channel == "webhook":
            await self.delivery_log.record_attempt(job.target, attempt_record(job, outcome, started, finished))
        if outcome.kind == "delivered":
            await mark_done(self.redis, mine, DELIVERED_TTL_S)
            await self.queue.unthrottle(job.target_key)
            if job.channel == "webhook":
                await self._endpoint_state(job, "active", outcome, failures=0)
            return await self._finish(job, "delivered", outcome)
        if outcome.kind == "gone":
            await self._disable_endpoint(job, "the endpoint answered 410 Gone")
            return await self._finish(job, "failed", outcome, error="410 Gone: endpoint disabled")
        if outcome.kind == "refused":
            return await self._finish(job, "failed", outcome)
        return await self._retry(job, outcome, finished)

    async def _abandon(self, job: DeliveryJob, claimed_keys: list[str], exc: BaseException) -> None:
        """A claim or send that did not return (cancelled at shutdown, or a bug / Redis hiccup) sent nothing we
        know of: release its once-keys and put the job back, so it is not later taken for delivered. Cancelled:
        due again at once, the attempt not counted; crashed: a failed attempt with the usual backoff."""

        async def put_back() -> None:
            for key in claimed_keys:
                await release_once(self.redis, key)
            if isinstance(exc, asyncio.CancelledError):
                await self.queue.reschedule(job, time.time())
                log.info("delivery_interrupted", delivery_id=job.id, channel=job.channel, target=job.target)
            else:
                await self._retry(job, Outcome("retry", error=f"crashed: {type(exc).__name__}: {exc}"), time.time())

        try:
            # shielded: a second cancellation (impatient shutdown) must not leave the keys half released
            await asyncio.shield(put_back())
        except Exception as failure:  # Redis gone too: the lease expires and the job is leased again
            log.exception("delivery_abandon_failed", delivery_id=job.id, error=str(failure))

    async def _claim(self, job: DeliveryJob, claimed_keys: list[str]) -> list[str] | None:
        """Papers of the job this target has not had yet (claimed now); None for a heartbeat already sent.

        A claim holds for the send (``sending_s``) and is kept for good once delivered (``keep_claims``): a worker
        killed mid-send leaves claims that expire, so the job's retry sends what it could not confirm (at least
        once), where a lasting claim made the retry call the lost alert a "duplicate". Each key is added to
        ``claimed_keys`` as soon as it is taken, so an interrupted claim can be undone."""
        if not job.items:
            key = once_key(job, None)
            if not await claim_once(self.redis, key, self.sending_s):
                return None
            claimed_keys.append(key)
            return []
        papers = []
        for item in job.items:
            key = once_key(job, item.paper.id)
            if await claim_once(self.redis, key, self.sending_s):
                claimed_keys.append(key)
                papers.append(item.paper.id)
        return papers

    async def _keep_sending(self, job: DeliveryJob, keys: list[str]) -> bool:
        """While a send runs (Slack's Retry-After waits, a slow SMTP peer), its claims and its job's lease are
        renewed: a send longer than the lease was otherwise leased again and sent a second time."""
        await self.queue.extend_lease(job, time.time() + self.settings.lease_s)
        return await keep_claims(self.redis, keys, self.sending_s)

    async def _sending_elsewhere(self, job: DeliveryJob, claimed: list[str] | None) -> float:
        """Seconds until the claims of this job another worker holds for its send run out (0: none): it may be
        sending them now, or it died doing so; either way this job waits for the outcome instead of dropping
        them as sent."""
        if not job.items:
            held = [once_key(job, None)] if claimed is None else []
        else:
            held = [once_key(job, item.paper.id) for item in job.items if item.paper.id not in (claimed or [])]
        if not held:
            return 0.0
        left = [ms for ms in await claims_left_ms(self.redis, held) if 0 < ms <= self.sending_s * 1000]
        return max(left) / 1000 + 0.1 if left else 0.0

    async def _release(self, job: DeliveryJob) -> None:
        for paper_id in job.paper_ids or [None]:
            await release_once(self.redis, once_key(job, paper_id))

    def retry_after(self, outcome: Outcome) -> float | None:
        """The receiver's Retry-After, capped at the longest step of the retry schedule: a receiver asking for a
        year (or a date far ahead) would otherwise park the delivery, and throttle its endpoint, for that long."""
        if outcome.retry_after is None:
            return None
        return min(outcome.retry_after, max(self.settings.webhook_retry_schedule_s, default=0.0))

    async def _retry(self, job: DeliveryJob, outcome: Outcome, now: float) -> DeliveryStatus:
        job.last_error, job.last_status = outcome.error, outcome.status_code
        schedule = self.settings.webhook_retry_schedule_s
        delay = retry_delay(schedule, job.attempts, self.settings.retry_jitter)
        retry_after = self.retry_after(outcome)
        if outcome.throttle:
            pause = retry_after if retry_after is not None else schedule[0]
            await self.queue.throttle(job.target_key, now + pause)
        if job.channel == "webhook":
            state = "dead" if delay is None else "failing"
            await self._endpoint_state(job, state, outcome, failures=job.attempts)
        if delay is None:
            await self.queue.bury(job)
            status = await self._finish(job, "dead", outcome, done=False)
            return status
        if retry_after is not None:
            delay = max(delay, retry_after)
        await self.queue.reschedule(job, now + delay)
        log.info(
            "delivery_retry",
            channel=job.channel,
            target=job.target,
            attempt=job.attempts,
            in_s=round(delay, 3),
            status_code=outcome.status_code,
            error=outcome.error,
        )
        await self.publish(Stream.DELIVERIES, self._result(job, "failed", outcome))
        return "failed"

    def _result(
        self, job: DeliveryJob, status: DeliveryStatus, outcome: Outcome | None, error: str | None = None
    ) -> DeliveryResult:
        return DeliveryResult(
            match_event_id=job.items[0].match_event_id if len(job.items) == 1 else None,
            subscription_id=job.subscription_id,
            paper_ids=job.paper_ids,
            channel=job.channel,
            target=job.target,
            status=status,
            attempts=max(job.attempts, 1),
            status_code=outcome.status_code if outcome else None,
            error=error or (outcome.error if outcome else None),
        )

    async def _finish(
        self,
        job: DeliveryJob,
        status: DeliveryStatus,
        outcome: Outcome | None = None,
        *,
        error: str | None = None,
        done: bool = True,
    ) -> DeliveryStatus:
        if done:
            await self.queue.complete(job)
        result = self._result(job, status, outcome, error)
        if status == "delivered":
            log.info("delivered", channel=job.channel, target=job.target, papers=len(job.items), delivery_id=job.id)
        else:
            log.warning("not_delivered", status=status, channel=job.channel, target=job.target, error=result.error)
        await self.publish(Stream.DELIVERIES, result)
        if status == "dead":
            await self.publish(Stream.DELIVERIES_FAILED, result.model_copy(update={"event_id": job.id}))
        return status

    async def _endpoint_state(self, job: DeliveryJob, state: str, outcome: Outcome, failures: int) -> None:
        await self.delivery_log.set_state(
            job.target,
            state=state,
            last_status=str(outcome.status_code or ""),
            last_error=outcome.error or "",
            last_attempt_at=datetime.now(UTC).isoformat(),
            consecutive_failures=str(failures),
        )

    async def _disable_endpoint(self, job: DeliveryJob, reason: str) -> None:
        """410 Gone: switch the endpoint off in the stored subscription, where the api shows it.

        Read-change-write as one optimistic update: a subscription deleted meanwhile stays deleted and a
        concurrent edit is not overwritten."""
        now = datetime.now(UTC)

        def disable(current: Subscription) -> Subscription | None:
            if not any(e.id == job.target and e.enabled for e in current.channels.webhooks):
                return None
            updated = current.model_copy(deep=True)
            for endpoint in updated.channels.webhooks:
                if endpoint.id == job.target:
                    endpoint.enabled = False
                    endpoint.disabled_reason = reason
            updated.updated_at = now
            return updated

        await self.subscriptions.update(job.subscription_id, disable)
        await self.delivery_log.set_state(
            job.target, state="disabled", disabled_reason=reason, disabled_at=now.isoformat()
        )
        log.warning("endpoint_disabled", target=job.target, reason=reason)
