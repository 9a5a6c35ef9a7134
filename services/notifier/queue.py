"""The delivery queue in Redis: jobs scheduled per target, leased while in flight, retried on a schedule.

Two levels keep one bad endpoint from holding up the others: ``notifier:targets`` orders *targets* by
their next due time, and each target has its own ``notifier:q:<target>`` of jobs. A worker takes at most
its free slots from each due target, so a hanging endpoint fills only its own slots. A leased job is
re-scheduled ``lease_s`` ahead, so a worker that dies mid-send leaves it to be tried again.

Keys: ``notifier:jobs`` (hash id -> job), ``notifier:targets`` (zset), ``notifier:q:<target>`` (zset
id -> due), ``notifier:throttle`` (hash target -> until), ``notifier:dead`` (hash id -> job).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from services.notifier.jobs import DeliveryJob
from shared.events import Stream, entry_body
from shared.storage import claim_once, reply_text

JOBS = "notifier:jobs"
TARGETS = "notifier:targets"
THROTTLE = "notifier:throttle"
DEAD = "notifier:dead"
DEAD_RESULTS = str(Stream.DELIVERIES_FAILED)
OLD_DEAD_RESULTS = "deliveries.dead"  # where a notifier before deliveries.failed wrote them (see move_old_results)

_LEASE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

_REFRESH = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
local due = tonumber(first[2])
local until_ = redis.call('HGET', KEYS[3], ARGV[1])
if until_ and tonumber(until_) > due then due = tonumber(until_) end
redis.call('ZADD', KEYS[2], due, ARGV[1])
return tostring(due)
"""


_ENQUEUE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""


def _queue(target_key: str) -> str:
    return f"notifier:q:{target_key}"


class DeliveryQueue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._lease = redis.register_script(_LEASE)
        self._refresh = redis.register_script(_REFRESH)
        self._enqueue = redis.register_script(_ENQUEUE)

    async def refresh(self, target_key: str) -> None:
        await self._refresh(keys=[_queue(target_key), TARGETS, THROTTLE], args=[target_key])

    async def enqueue(self, job: DeliveryJob, due: float) -> bool:
        """Add a job unless one with its id is already queued; False for such a duplicate. The job and its queue
        entry are written in one step, as ``complete`` removes them: interleaved halves of the two (a match handled
        twice while its first delivery completes) left a job in ``notifier:jobs`` that no queue held, forever."""
        if not await self._enqueue(keys=[JOBS, _queue(job.target_key)], args=[job.id, job.model_dump_json(), due]):
            return False
        await self.refresh(job.target_key)
        return True

    async def reschedule(self, job: DeliveryJob, due: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(JOBS, job.id, job.model_dump_json())
            pipe.zadd(_queue(job.target_key), {job.id: due})
            await pipe.execute()
        await self.refresh(job.target_key)

    async def complete(self, job: DeliveryJob) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(JOBS, job.id)
            pipe.zrem(_queue(job.target_key), job.id)
            await pipe.execute()
        await self.refresh(job.target_key)

    async def bury(self, job: DeliveryJob) -> None:
        """Keep a job whose retries are spent where ``deliveries replay`` finds it."""
        await self.redis.hset(DEAD, job.id, job.model_dump_json())
        await self.complete(job)

    async def throttle(self, target_key: str, until: float) -> None:
        await self.redis.hset(THROTTLE, target_key, str(until))
        await self.refresh(target_key)

    async def unthrottle(self, target_key: str) -> None:
        if await self.redis.hdel(THROTTLE, target_key):
            await self.refresh(target_key)

    async def due_targets(self, now: float, limit: int = 200) -> list[str]:
        return [reply_text(t) for t in await self.redis.zrangebyscore(TARGETS, "-inf", now, start=0, num=limit)]

    async def postpone_target(self, target_key: str, until: float) -> None:
        """A target with no free slot (here; a webhook: in any replica): look at it again later, not every tick."""
        await self.redis.zadd(TARGETS, {target_key: until}, xx=True)

    async def extend_lease(self, job: DeliveryJob, until: float) -> None:
        """Push a leased job's lease forward while its send runs (only if it is still queued)."""
        await self.redis.zadd(_queue(job.target_key), {job.id: until}, xx=True)

    async def lease(self, target_key: str, now: float, lease_until: float, count: int) -> list[DeliveryJob]:
        ids = [reply_text(i) for i in await self._lease(keys=[_queue(target_key)], args=[now, lease_until, count])]
        await self.refresh(target_key)
        if not ids:
            return []
        raws = await self.redis.hmget(JOBS, ids)
        jobs = [DeliveryJob.model_validate_json(raw) for raw in raws if raw]
        orphans = [i for i, raw in zip(ids, raws, strict=True) if not raw]
        if orphans:
            await self.redis.zrem(_queue(target_key), *orphans)
            await self.refresh(target_key)
        return jobs

    async def pending(self) -> int:
        return int(await self.redis.hlen(JOBS))

    async def dead_jobs(self) -> list[DeliveryJob]:
        return [DeliveryJob.model_validate_json(raw) for raw in (await self.redis.hgetall(DEAD)).values()]

    async def replay(
        self, job_ids: list[str] | None, now: float, subscription_id: str | None = None
    ) -> list[DeliveryJob]:
        """Put dead jobs (all, the given ids, or one subscription's) back in the queue with a fresh retry budget."""
        dead = {job.id: job for job in await self.dead_jobs()}
        chosen = [dead[i] for i in job_ids if i in dead] if job_ids else list(dead.values())
        if subscription_id is not None:
            chosen = [job for job in chosen if job.subscription_id == subscription_id]
        replayed = []
        for job in chosen:
            fresh = job.model_copy(update={"attempts": 0, "last_error": None, "last_status": None})
            await self.redis.hdel(JOBS, job.id)
            await self.enqueue(fresh, now)
            await self.redis.hdel(DEAD, job.id)
            replayed.append(fresh)
        await self._forget_dead_results({job.id for job in replayed})
        return replayed

    async def _forget_dead_results(self, job_ids: set[str]) -> None:
        """Drop the replayed deliveries' entries from ``deliveries.failed`` (their event id is the job id)."""
        if not job_ids:
            return
        stale = []
        for entry_id, fields in await self.redis.xrange(DEAD_RESULTS, count=10_000):
            if (entry_body(fields) or {}).get("event_id") in job_ids:
                stale.append(entry_id)
        if stale:
            await self.redis.xdel(DEAD_RESULTS, *stale)


async def move_old_results(redis: aioredis.Redis) -> int:
    """Spent-delivery results an older notifier wrote to ``deliveries.dead``, which is also where the dead letters
    of ``deliveries`` go, move to ``deliveries.failed``: the api replays from there, and status would count them
    as dead letters. Dead letters carry ``dead.*`` fields and stay. Each entry is claimed first, so replicas
    starting together move it once; returns how many this call moved."""
    moved = 0
    for entry_id, fields in await redis.xrange(OLD_DEAD_RESULTS):
        if any(reply_text(key).startswith("dead.") for key in fields):
            continue
        if not await claim_once(redis, f"notifier:moved:{reply_text(entry_id)}", 24 * 3600):
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(DEAD_RESULTS, fields)
            pipe.xdel(OLD_DEAD_RESULTS, entry_id)
            await pipe.execute()
        moved += 1
    return moved
