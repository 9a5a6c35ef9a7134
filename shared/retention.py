"""Stream retention: trim old entries, never one that a consumer group has not finished with."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
import structlog

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
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        last = group["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else last
        ms, seq = _id_tuple(last)
        needed.append((ms, seq + 1))
        if group["pending"]:
            summary = await redis.xpending(stream, name)
            oldest = summary["min"]
            needed.append(_id_tuple(oldest.decode() if isinstance(oldest, bytes) else oldest))
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


async def trim_forever(redis_url: str, streams: list[str], retention_hours: float, every_s: float = 600) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        while True:
            for stream in streams:
                with contextlib.suppress(Exception):
                    await trim_consumed(client, stream, retention_hours * 3600)
            await asyncio.sleep(every_s)
    finally:
        await client.aclose()
