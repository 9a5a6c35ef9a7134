"""Redis storage helpers: the few keys several services read or write.

Key layout (all values JSON unless said otherwise):
- ``paper:{id}``                 the merged Paper
- ``vectors:{space}``            hash: paper id -> float16 bytes (space = EmbeddingManifest.space)
- ``vectors:{space}:entry``      hash: paper id -> the papers.parsed entry id its vector came from
- ``subscription:{id}``          a Subscription; ``subscriptions:ids`` set of ids; ``owner:{owner}:subscriptions`` set
- ``subscription:{id}:deleted``  the owner of a deleted subscription (string, expiring): a retried delete still acts
- ``once:{...}``                 idempotency markers (SET NX)
- ``webhook:{endpoint}:attempts`` list of recent delivery attempts (newest first); ``webhook:{endpoint}:state`` hash
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from shared.paper import Paper, PaperChange, merge_change
from shared.subscription import STORED, Subscription

log = structlog.get_logger("paperwire.storage")

UPSERT_TRIES = 50
DELETED_TTL_S = 7 * 24 * 3600
T = TypeVar("T")

# Vectors with the stream entries they came from, each unless one from a later entry is stored (ids compared as
# ms, seq). ARGV holds (paper id, vector bytes, entry id) triples; the reply says which were written.
_SET_VECTORS_IF_NOT_OLDER = """
local written = {}
for i = 1, #ARGV, 3 do
  local ok = 1
  local stored = redis.call('HGET', KEYS[2], ARGV[i])
  if stored then
    local sm, ss = string.match(stored, '^(%d+)-(%d+)$')
    local nm, ns = string.match(ARGV[i + 2], '^(%d+)-(%d+)$')
    if sm and nm then
      sm, ss, nm, ns = tonumber(sm), tonumber(ss), tonumber(nm), tonumber(ns)
      if nm < sm or (nm == sm and ns < ss) then ok = 0 end
    end
  end
  if ok == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  end
  written[#written + 1] = ok
end
return written
"""


async def _watched(
    redis: aioredis.Redis, key: str, step: Callable[[Pipeline, bytes | None], Awaitable[T]], what: str
) -> T:
    """Optimistic read-modify-write of one key (WATCH/MULTI): ``step`` gets the pipeline and the key's value,
    queues its writes after ``pipe.multi()`` (or none) and returns the result; when another client wrote the key
    in between, nothing is written and ``step`` runs again on the fresh value."""
    for _ in range(UPSERT_TRIES):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                result = await step(pipe, await pipe.get(key))
                if pipe.explicit_transaction:
                    await pipe.execute()
                return result
            except WatchError:
                continue
    raise RuntimeError(f"{what}: kept changing during {UPSERT_TRIES} attempts")


def reply_text(value: object) -> str:
    """A Redis reply as text: the clients return bytes (vectors are binary), keys and ids are UTF-8 text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def paper_key(paper_id: str) -> str:
    """Where a paper's JSON lives (``PaperStore``); the embedder reads its text fields there too."""
    return f"paper:{paper_id}"


class PaperStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def get(self, paper_id: str) -> Paper | None:
        raw = await self.redis.get(paper_key(paper_id))
        return Paper.model_validate_json(raw) if raw else None

    async def get_many(self, paper_ids: list[str]) -> dict[str, Paper]:
        if not paper_ids:
            return {}
        raws = await self.redis.mget([paper_key(pid) for pid in paper_ids])
        return {pid: Paper.model_validate_json(raw) for pid, raw in zip(paper_ids, raws, strict=True) if raw}

    async def put(self, paper: Paper) -> None:
        await self.redis.set(paper_key(paper.id), paper.model_dump_json())

    async def upsert(self, paper: Paper) -> tuple[Paper, PaperChange | None]:
        """Merge with what is stored; the change is None when nothing new was learned.

        Optimistic: two parser replicas merging the same paper at once (its RSS and HF entries) would otherwise
        both read the old record and the second write would drop the first one's facts.
        """
        key = paper_key(paper.id)

        async def step(pipe: Pipeline, raw: bytes | None) -> tuple[Paper, PaperChange | None]:
            merged, change = merge_change(Paper.model_validate_json(raw) if raw else None, paper)
            if change is not None:
                pipe.multi()
                pipe.set(key, merged.model_dump_json())
            return merged, change

        return await _watched(self.redis, key, step, f"paper {paper.id}")

    async def set_vector(self, space: str, paper_id: str, vector: np.ndarray, entry_id: str | None = None) -> None:
        """One vector; with ``entry_id``, as :meth:`set_vectors` does (so not in a pipeline: it reads the reply)."""
        if entry_id is None:
            await self.redis.hset(f"vectors:{space}", paper_id, np.asarray(vector, dtype="<f2").tobytes())
            return
        await self.set_vectors(space, [(paper_id, vector, entry_id)])

    async def set_vectors(self, space: str, rows: list[tuple[str, np.ndarray, str]]) -> list[bool]:
        """Each (paper id, vector, papers.parsed entry id ``<ms>-<seq>`` it comes from) written only when no vector
        from a later entry is stored, so a retried older event never overwrites a newer one's vector. One script
        for the whole batch (atomic, one round trip); the entry ids live in the hash ``vectors:{space}:entry``.
        Returns which rows were written."""
        if not rows:
            return []
        args = [
            value
            for paper_id, vector, entry_id in rows
            for value in (paper_id, np.asarray(vector, dtype="<f2").tobytes(), entry_id)
        ]
        flags = await self.redis.eval(_SET_VECTORS_IF_NOT_OLDER, 2, f"vectors:{space}", f"vectors:{space}:entry", *args)
        return [bool(flag) for flag in flags]

    async def get_vectors(self, space: str, paper_ids: list[str]) -> dict[str, np.ndarray]:
        if not paper_ids:
            return {}
        raws = await self.redis.hmget(f"vectors:{space}", paper_ids)
        return {
            pid: np.frombuffer(raw, dtype="<f2").astype(np.float32)
            for pid, raw in zip(paper_ids, raws, strict=True)
            if raw
        }


class SubscriptionStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def get(self, subscription_id: str) -> Subscription | None:
        raw = await self.redis.get(f"subscription:{subscription_id}")
        return Subscription.model_validate_json(raw, context=STORED) if raw else None

    async def put(self, subscription: Subscription, *, only_new: bool = False) -> bool:
        """Write it whole (loading configuration, creating); ``only_new``: only if the id is free, else False.

        Edits of a stored subscription go through :meth:`update`, which never brings a deleted one back."""
        key = f"subscription:{subscription.id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if only_new and raw:
                    return False
                previous_owner = Subscription.model_validate_json(raw, context=STORED).owner if raw else None
                pipe.multi()
                if previous_owner is not None and previous_owner != subscription.owner:
                    pipe.srem(f"owner:{previous_owner}:subscriptions", subscription.id)  # it is not theirs any more
                pipe.set(key, subscription.model_dump_json())
                pipe.delete(f"{key}:deleted")
                pipe.sadd("subscriptions:ids", subscription.id)
                pipe.sadd(f"owner:{subscription.owner}:subscriptions", subscription.id)
                await pipe.execute()
            except WatchError:
                if only_new:
                    return False
                raise
        return True

    async def update(
        self, subscription_id: str, change: Callable[[Subscription], Subscription | None]
    ) -> tuple[Subscription, Subscription] | None:
        """Read, change and write back one subscription as a unit; (before, after), or None when it is not stored.

        Optimistic (WATCH/MULTI, retried): an edit that read the record before a concurrent write or delete
        committed is re-run on the fresh record instead of overwriting it, so concurrent edits are never lost
        and a deleted subscription is never written back. ``change`` may run several times: keep it pure; it
        may raise to refuse, and returns None to leave the record as it is."""
        key = f"subscription:{subscription_id}"

        async def step(pipe: Pipeline, raw: bytes | None) -> tuple[Subscription, Subscription] | None:
            if not raw:
                return None
            current = Subscription.model_validate_json(raw, context=STORED)
            updated = change(current)
            if updated is None:
                return current, current
            if updated.id != current.id or updated.owner != current.owner:
                raise ValueError("an update may not change a subscription's id or owner")
            pipe.multi()
            pipe.set(key, updated.model_dump_json())
            return current, updated

        return await _watched(self.redis, key, step, f"subscription {subscription_id}")

    async def delete(self, subscription_id: str) -> Subscription | None:
        """Remove it and remember its owner for a while (see :meth:`deleted_owner`); the removed record, or None."""
        key = f"subscription:{subscription_id}"

        async def step(pipe: Pipeline, raw: bytes | None) -> Subscription | None:
            if not raw:
                return None
            subscription = Subscription.model_validate_json(raw, context=STORED)
            pipe.multi()
            pipe.delete(key)
            pipe.srem("subscriptions:ids", subscription_id)
            pipe.srem(f"owner:{subscription.owner}:subscriptions", subscription_id)
            pipe.set(f"{key}:deleted", subscription.owner, ex=DELETED_TTL_S)
            return subscription

        return await _watched(self.redis, key, step, f"subscription {subscription_id}")

    async def deleted_owner(self, subscription_id: str) -> str | None:
        """Who owned a recently deleted subscription: lets a retried delete finish what the first one began."""
        raw = await self.redis.get(f"subscription:{subscription_id}:deleted")
        return raw.decode() if isinstance(raw, bytes) else raw

    async def list(self, owner: str | None = None) -> list[Subscription]:
        key = f"owner:{owner}:subscriptions" if owner else "subscriptions:ids"
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(key))
        if not ids:
            return []
        raws = await self.redis.mget([f"subscription:{i}" for i in ids])
        subscriptions = []
        for subscription_id, raw in zip(ids, raws, strict=True):
            if not raw:
                continue
            try:
                subscriptions.append(Subscription.model_validate_json(raw, context=STORED))
            except ValidationError as exc:
                # Unreadable (a time zone tzdata dropped, a hand-edited record): skipped with its reason, so one
                # record does not stop scoring and digests for every other subscription.
                log.error("subscription_unreadable", subscription_id=subscription_id, error=str(exc))
        return subscriptions

    async def active(self) -> list[Subscription]:
        return [s for s in await self.list() if s.active]


async def claim_once(redis: aioredis.Redis, key: str, ttl_s: int = 90 * 24 * 3600) -> bool:
    """True the first time ``key`` is claimed: the idempotency guard for side effects (emails, webhooks)."""
    return (await claim_many(redis, [key], ttl_s))[0]


PIPELINE_CHUNK = 512  # commands per round trip when a batch writes many keys or events


async def set_many(redis: aioredis.Redis, keys: list[str], ttl_s: int) -> None:
    """``SET key 1 EX ttl_s`` for many keys, pipelined: a batch of events marks one key each, and a round trip per
    key cost more than the work."""
    for start in range(0, len(keys), PIPELINE_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys[start : start + PIPELINE_CHUNK]:
                pipe.set(key, "1", ex=ttl_s)
            await pipe.execute()


async def claim_many(
    redis: aioredis.Redis,
    keys: list[str],
    ttl_s: int = 90 * 24 * 3600,
    owners: list[tuple[str, ...]] | None = None,
) -> list[bool]:
    """True where a key is claimed for the first time, or was claimed before by one of its owners (the one claiming
    mechanism; :func:`claim_once` is one key); a key twice in one call is claimed by its first occurrence.

    Each claim holds a token, read back in the same round trip. ``owners`` (per key: the ids that may hold it, the
    first written) names what claims it: a claim held by an event counts as that event's own when the event comes
    again, so a redelivery after a crash between claiming and publishing publishes again instead of finding its
    work "done" by itself. Without owners, the token is this call's: when redis-py re-sends a pipeline whose reply
    was lost (its retry on a connection error), a key the first send claimed still counts as ours."""
    call = (uuid.uuid4().hex,)
    mine = owners if owners is not None else [call] * len(keys)
    if len(mine) != len(keys):
        raise ValueError(f"{len(keys)} keys but {len(mine)} owners")
    seen: set[str] = set()
    claimed: list[bool] = []
    for start in range(0, len(keys), PIPELINE_CHUNK):
        chunk, tokens = keys[start : start + PIPELINE_CHUNK], mine[start : start + PIPELINE_CHUNK]
        async with redis.pipeline(transaction=False) as pipe:
            for key, ids in zip(chunk, tokens, strict=True):
                pipe.set(f"once:{key}", ids[0], nx=True, ex=ttl_s)
                pipe.get(f"once:{key}")
            replies = await pipe.execute()
        for key, ids, value in zip(chunk, tokens, replies[1::2], strict=True):
            claimed.append(key not in seen and value is not None and reply_text(value) in ids)
            seen.add(key)
    return claimed


async def release_many(redis: aioredis.Redis, keys: list[str]) -> None:
    """Undo claims whose side effects failed, so a retry may try again."""
    for start in range(0, len(keys), PIPELINE_CHUNK):
        await redis.delete(*(f"once:{key}" for key in keys[start : start + PIPELINE_CHUNK]))


_RELEASE_HELD = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


async def release_held(redis: aioredis.Redis, key: str, token: str) -> None:
    """Delete a lock ``key`` only while it still holds our ``token``: one that expired and was taken by someone
    else stays theirs."""
    await redis.eval(_RELEASE_HELD, 1, key, token)


async def keep_claims(redis: aioredis.Redis, keys: list[str], ttl_s: int) -> bool:
    """Set the time claims taken for a while (a send in progress) still hold; True while every one is still held
    (EXPIRE finds a lapsed claim gone and answers 0)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.expire(f"once:{key}", ttl_s)
        return all(await pipe.execute())


async def mark_done(redis: aioredis.Redis, keys: list[str], ttl_s: int) -> None:
    """Record side effects that happened, for ``ttl_s``, whether or not their claims are still held."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(f"once:{key}", "done", ex=ttl_s)
        await pipe.execute()


async def claims_left_ms(redis: aioredis.Redis, keys: list[str]) -> list[int]:
    """Each claim's time to live in ms (PTTL: -2 for none)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(f"once:{key}")
        return [int(v) for v in await pipe.execute()]


async def release_once(redis: aioredis.Redis, key: str) -> None:
    """Undo a claim whose side effect failed, so a retry may try again."""
    await release_many(redis, [key])


class DeliveryLog:
    """Attempts and state of webhook endpoints: written by the notifier, shown by the api."""

    keep = 100

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def record_attempt(self, endpoint_id: str, attempt: dict[str, Any]) -> None:
        key = f"webhook:{endpoint_id}:attempts"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, json.dumps(attempt, default=str))
            pipe.ltrim(key, 0, self.keep - 1)
            await pipe.execute()

    async def recent_attempts(self, endpoint_id: str, limit: int = 20) -> list[dict[str, Any]]:
        raws = await self.redis.lrange(f"webhook:{endpoint_id}:attempts", 0, limit - 1)
        return [json.loads(raw) for raw in raws]

    async def set_state(self, endpoint_id: str, **fields: str) -> None:
        await self.redis.hset(f"webhook:{endpoint_id}:state", mapping=fields)

    async def state(self, endpoint_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(f"webhook:{endpoint_id}:state")
        return {k.decode(): v.decode() for k, v in raw.items()}
