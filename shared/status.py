"""Where every stream stands: length, per-group backlog and pending entries, dead letters."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.events import CONSUMER_GROUPS, dead_letter_stream


@dataclass
class GroupStatus:
    stream: str
    group: str
    length: int
    pending: int
    caught_up: bool
    dead: int

    @property
    def idle(self) -> bool:
        return self.caught_up and self.pending == 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def pipeline_status(redis: aioredis.Redis) -> list[GroupStatus]:
    rows = []
    for stream, groups in CONSUMER_GROUPS.items():
        if not await redis.exists(stream):
            continue
        info = await redis.xinfo_stream(stream)
        last = _text(info["last-generated-id"])
        dead = await redis.xlen(dead_letter_stream(stream))
        known = {_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
        for group in groups:
            g = known.get(group)
            if g is None:
                continue
            rows.append(
                GroupStatus(
                    stream=str(stream),
                    group=group,
                    length=int(info["length"]),
                    pending=int(g["pending"]),
                    caught_up=_text(g["last-delivered-id"]) == last or int(info["length"]) == 0,
                    dead=dead,
                )
            )
    return rows


async def pipeline_idle(redis: aioredis.Redis, groups: Collection[str] | None = None) -> bool:
    """True when every group (or every one of ``groups``, the services running) is caught up, nothing pending."""
    rows = await pipeline_status(redis)
    return all(r.idle for r in rows if groups is None or r.group in groups)
