"""Stream retention: trim old entries, never one that a consumer group has not finished with."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
import structlog

from shared.storage import reply_text

log = structlog.get_logger("paperwire.retention")


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_id(redis: aioredis.Redis, stream: str) -> str | None:
    """The oldest id some group still needs (its oldest pending entry or the first after its last delivered)."""
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None
    needed: list[tuple[int, int]] = []
    for group in groups:
        name = reply_text(group["name"])
        ms, seq = _id_tuple(reply_text(group["last-delivered-id"]))
        needed.append((ms, seq + 1))
        if group["pending"]:
            summary = await redis.xpending(stream, name)
            needed.append(_id_tuple(reply_text(summary["min"])))
    ms, seq = min(needed)
    return f"{ms}-{seq}"


async def trim_consumed(redis: aioredis.Redis, stream: str, max_age_s: float, now: float | None = None) -> int:
    """XTRIM MINID to the older of (now - max_age) and what every group still needs; returns entries removed."""
    if not await redis.exists(stream):
        return 0
    safe = await safe_trim_id(redis, stream)
    if safe is None:
        return 0
    cutoff = (int(((now or time.time()) - max_age_s) * 1000), 0)
    min_id = min(cutoff, _id_tuple(safe))
    removed = await redis.xtrim(stream, minid=f"{min_id[0]}-{min_id[1]}", approximate=False)
    if removed:
        log.info("stream_trimmed", stream=stream, removed=removed, min_id=f"{min_id[0]}-{min_id[1]}")
    return removed


# DELCONSUMER drops the consumer's pending entries with it: it runs only if the consumer still owns none, in
# one step with the check.
_DELETE_IF_IDLE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) + 1
"""


async def forget_gone_consumers(redis: aioredis.Redis, stream: str, idle_s: float) -> list[str]:
    """XGROUP DELCONSUMER every consumer of ``stream``'s groups that owns no pending entry and has not read for
    ``idle_s``: each process registers a new name (``<service>-<host>-<pid>``), so restarts and replicas that
    scaled down would otherwise stay listed in XINFO CONSUMERS for ever. A live consumer of a stream quiet for
    that long may be forgotten too (Redis before 7.2 counts only reads that return entries): its next read
    creates it again, and it owned nothing."""
    if not await redis.exists(stream):
        return []
    gone = []
    for group in await redis.xinfo_groups(stream):
        group_name = reply_text(group["name"])
        for consumer in await redis.xinfo_consumers(stream, group_name):
            name = reply_text(consumer["name"])
            if consumer["pending"] == 0 and consumer["idle"] >= idle_s * 1000:
                if await redis.eval(_DELETE_IF_IDLE, 1, stream, group_name, name):
                    gone.append(f"{group_name}/{name}")
    if gone:
        log.info("gone_consumers_forgotten", stream=stream, consumers=gone)
    return gone


async def trim_forever(redis_url: str, streams: list[str], retention_hours: float, every_s: float = 600) -> None:
    """Every ``every_s``: trim what every group has finished with, and forget consumers gone for the retention."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        while True:
            for stream in streams:
                with contextlib.suppress(Exception):
                    await trim_consumed(client, stream, retention_hours * 3600)
                with contextlib.suppress(Exception):
                    await forget_gone_consumers(client, stream, retention_hours * 3600)
            await asyncio.sleep(every_s)
    finally:
        await client.aclose()
