"""Reading what a service under test published: wait for stream entries, decode FastStream's framing."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from faststream.redis.parser.binary import BinaryMessageFormatV1


async def wait_for(redis: aioredis.Redis, stream: str, count: int, limit_s: float = 30.0) -> list:
    """The stream's entries once it holds at least ``count``; fails the test after ``limit_s``."""
    for _ in range(int(limit_s / 0.1)):
        entries = await redis.xrange(stream)
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"{stream}: fewer than {count} entries after {limit_s}s")


def decode(entries: list, model: type) -> list:
    """Event models from XRANGE entries published through FastStream."""
    out = []
    for _, fields in entries:
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
        out.append(model.model_validate(json.loads(body)))
    return out
