"""The arXiv politeness limit, shared through Redis by every fetcher process on every machine.

arXiv asks for at most one request every 3 seconds and one connection at a time, for all of a user's
machines together. A Redis lock (SET NX PX, released only by its holder) gives "one at a time"; a
``next allowed`` timestamp, read with Redis' own clock so hosts need not agree on time, gives the
spacing. ``defer`` pushes that timestamp forward for everyone when arXiv answers 429/503 Retry-After.

The lock is a short lease (``lock_ttl_s``), renewed every third of it while its holder's request runs, like the
fetcher's poll claims (``plan.py``): a request slower than the lease keeps the slot, and a holder that died (a
SIGKILL skips the release) stops renewing, so its slot frees within one lease rather than after the longest a
request could take, which stalled every replica's arXiv polls (and the sources polled after them) for minutes.
A dead holder never pushes ``next allowed``; the spacing after it comes from the lease instead: while renewals
keep their beat, its connection died at most a third of a lease after the last one, and the lock outlives that
renewal by a full lease, so the next request starts at least two thirds of a lease after the dead one ended. The
lease is therefore never shorter than 1.5 times the interval (the 10 s default leaves 6.7 s against arXiv's 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import structlog

from shared.storage import release_held
from shared.tasks import lease_kept

log = structlog.get_logger("paperwire.fetcher.ratelimit")

# Set next-allowed to max(current, now + interval) atomically.
_PUSH = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local target = now + tonumber(ARGV[1])
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if target > current then redis.call('set', KEYS[1], target, 'PX', math.max(tonumber(ARGV[1]), 1) + 60000) end
return target
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


class SharedRateLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        name: str = "arxiv",
        *,
        min_interval_s: float = 3.0,
        lock_ttl_s: float = 10.0,
        poll_s: float = 0.05,
    ) -> None:
        self.redis = redis
        self.lock_key = f"ratelimit:{name}:lock"
        self.next_key = f"ratelimit:{name}:next"
        self.min_interval_ms = int(min_interval_s * 1000)
        self.lock_ttl_ms = max(1, int(lock_ttl_s * 1000), self.min_interval_ms * 3 // 2)
        self.poll_s = poll_s

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the single arXiv connection; returns once this process may send its request.

        The wait for ``next allowed`` (a Retry-After included) happens before the lock is taken and is checked again
        under it, so the lock covers the request alone. Its lease is renewed while the block runs, and released
        after ``next allowed`` was pushed.
        """
        token = uuid.uuid4().hex
        waited = 0.0
        while True:
            delay_s = await self._delay_s()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
                waited += delay_s
                continue
            if not await self.redis.set(self.lock_key, token, nx=True, px=self.lock_ttl_ms):
                await asyncio.sleep(self.poll_s)
                waited += self.poll_s
                continue
            if await self._delay_s() <= 0:
                break
            # Pushed forward (the last holder's spacing, or a Retry-After) between the check and the lock.
            await release_held(self.redis, self.lock_key, token)
        if waited > 1:
            log.debug("rate_limited", waited_s=round(waited, 2))
        async with lease_kept(
            lambda: self._renew(token), lambda: self._release(token), self.lock_ttl_ms / 3000, "arxiv slot"
        ):
            yield

    async def _renew(self, token: str) -> bool:
        """Push the lease forward; False when it was lost (expired, perhaps taken by another)."""
        return bool(await self.redis.eval(_RENEW, 1, self.lock_key, token, self.lock_ttl_ms))

    async def _release(self, token: str) -> None:
        """Spacing counts from the end of this request, so starts are never closer than the interval."""
        await self.redis.eval(_PUSH, 1, self.next_key, self.min_interval_ms)
        await release_held(self.redis, self.lock_key, token)

    async def _delay_s(self) -> float:
        """Seconds until ``next allowed`` (0 or less: now)."""
        next_allowed = int(await self.redis.get(self.next_key) or 0)
        return (next_allowed - await self._now_ms()) / 1000

    async def defer(self, seconds: float) -> None:
        """No process may send before ``seconds`` from now (a 429/503 Retry-After applies to all of us)."""
        await self.redis.eval(_PUSH, 1, self.next_key, int(seconds * 1000))
