"""Slots per webhook endpoint, counted in Redis so that they bound the whole deployment, not one process.

``NOTIFIER_WEBHOOK_CONCURRENCY_PER_ENDPOINT`` promises a receiver at most that many requests at once. Counted in
each process, N notifier replicas would open N times as many; here every process takes its slots from one
counting semaphore per endpoint in Redis, in the style of Slack's shared pace key (``senders.SlackSender``).

Key: ``notifier:slots:<target key>`` (e.g. ``notifier:slots:webhook:<endpoint id>``), a sorted set of holder
tokens (``<host>-<pid>:<random>``) scored by the end of their lease, in milliseconds of the Redis server's clock
(``TIME``), so replicas whose clocks disagree still agree on when a lease ends. Taking slots is one Lua script:
drop the expired holders, then add tokens while fewer than the limit hold one. Giving one back is ``ZREM``. The
key itself expires with the latest lease it holds (PEXPIREAT to the highest score, not PEXPIRE by the caller's own
lease: a replica configured with a shorter lease must not expire the others' holders), so endpoints that are gone
leave nothing behind.

Lease: short (``NOTIFIER_WEBHOOK_SLOT_LEASE_S``, default 30 s) and renewed every third of it while the delivery
runs, rather than one fixed lease longer than the HTTP timeout. The timeout bounds the request, but not all the
time a slot is held: the DNS lookup of the SSRF check comes before it, and at shutdown a send may run for the
(configurable) grace. A renewed lease fits any of these, and a process that crashed stops renewing, so its
slots come free within one lease instead of after the longest a send could possibly take.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from shared.storage import reply_text
from shared.tasks import lease_kept

log = structlog.get_logger("paperwire.notifier")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] the endpoint's slots; ARGV: limit, lease ms, then the candidate tokens. Returns the tokens granted.
_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local lease = tonumber(ARGV[2])
local granted = {}
for i = 3, #ARGV do
  if #granted >= free then break end
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
  granted[#granted + 1] = ARGV[i]
end
if #granted > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], last[2])
end
return granted
"""
)

# A token still in the set was counted by every acquire since it was added (they purge before they count), so
# extending it never lets more than the limit hold a slot; one already purged stays lost (returns 0).
_RENEW = (
    _NOW_MS
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""
)


def slots_key(target_key: str) -> str:
    return f"notifier:slots:{target_key}"


class EndpointSlots:
    """A distributed counting semaphore per endpoint; every process (and every worker) makes its own."""

    def __init__(self, redis: aioredis.Redis, lease_s: float, holder: str | None = None) -> None:
        self.redis = redis
        self.lease_s = lease_s
        self.lease_ms = max(1, int(lease_s * 1000))
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}"  # who holds a slot, for an operator
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)

    async def acquire(self, target_key: str, limit: int, want: int) -> list[str]:
        """Take up to ``want`` of the endpoint's ``limit`` slots; the tokens of those taken (maybe none)."""
        if want <= 0:
            return []
        tokens = [f"{self.holder}:{uuid.uuid4().hex[:16]}" for _ in range(want)]
        granted = await self._acquire(keys=[slots_key(target_key)], args=[limit, self.lease_ms, *tokens])
        return [reply_text(token) for token in granted]

    async def release(self, target_key: str, *tokens: str) -> None:
        if tokens:
            await self.redis.zrem(slots_key(target_key), *tokens)

    async def renew(self, target_key: str, token: str) -> bool:
        """Extend a held lease by a full lease from now; False when it had expired and was taken back."""
        return bool(await self._renew(keys=[slots_key(target_key)], args=[self.lease_ms, token]))

    async def holders(self, target_key: str) -> int:
        """Slots held now (leases not yet ended)."""
        seconds, micros = await self.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(await self.redis.zcount(slots_key(target_key), f"({now_ms}", "+inf"))

    async def give_back(self, target_key: str, *tokens: str) -> None:
        """Release that neither a second cancellation nor Redis being away can break: then the lease expires."""
        try:
            await asyncio.shield(self.release(target_key, *tokens))
        except (RedisError, OSError) as exc:
            log.warning("slot_release_failed", target=target_key, error=str(exc)[:500])

    def hold(self, target_key: str, token: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep the slot ``token`` for as long as the block runs (renewing its lease), then give it back."""
        return lease_kept(
            lambda: self.renew(target_key, token),
            lambda: self.give_back(target_key, token),
            self.lease_s / 3,
            "webhook slot",
            target=target_key,
            token=token,
        )
