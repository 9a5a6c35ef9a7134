"""Where every stream stands: length, per-group backlog and pending entries, dead letters; the fetcher's counters."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from shared.events import CONSUMER_GROUPS, dead_letter_stream
from shared.storage import reply_text

FETCHER_METRICS_KEY = "fetcher:metrics"
"""Hash of the fetcher's counters (HINCRBY per attempt outcome: ``ok``, ``status_429``, ``retries``, ...)."""


@dataclass
class GroupStatus:
    stream: str
    group: str
    length: int
    pending: int
    caught_up: bool
    dead: int
    lag: int | None = None  # entries not yet delivered to the group; None where Redis cannot tell (before 7.0)
    consumers: int = 0

    @property
    def idle(self) -> bool:
        return self.caught_up and self.pending == 0


@dataclass
class StreamStatus:
    """One consumed stream; ``groups`` holds only the groups that exist (a service that never started has none)."""

    stream: str
    exists: bool
    length: int
    dead: int
    groups: list[GroupStatus] = field(default_factory=list)


async def streams_status(redis: aioredis.Redis) -> list[StreamStatus]:
    """Every stream of the contract that has consumer groups, present or not, with its groups and dead letters."""
    out = []
    for stream, groups in CONSUMER_GROUPS.items():
        dead = await redis.xlen(dead_letter_stream(stream))
        if not await redis.exists(stream):
            out.append(StreamStatus(stream=str(stream), exists=False, length=0, dead=dead))
            continue
        # XLEN + XINFO GROUPS (whose "lag" says whether a group is caught up, Redis >= 7) avoid XINFO STREAM,
        # which returns the first and last entries: on papers.raw those are whole feed responses.
        length = int(await redis.xlen(stream))
        known = {reply_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
        last: str | None = None
        if any(known.get(group, {}).get("lag") is None for group in groups if group in known):
            last = reply_text((await redis.xinfo_stream(stream))["last-generated-id"])
        rows = []
        for group in groups:
            g = known.get(group)
            if g is None:
                continue
            lag = g.get("lag")
            rows.append(
                GroupStatus(
                    stream=str(stream),
                    group=group,
                    length=length,
                    pending=int(g["pending"]),
                    caught_up=length == 0
                    or (int(lag) == 0 if lag is not None else reply_text(g["last-delivered-id"]) == last),
                    dead=dead,
                    lag=None if lag is None else int(lag),
                    consumers=int(g.get("consumers") or 0),
                )
            )
        out.append(StreamStatus(stream=str(stream), exists=True, length=length, dead=dead, groups=rows))
    return out


async def pipeline_status(redis: aioredis.Redis) -> list[GroupStatus]:
    """One row per existing stream and group (what `paperwire status` prints)."""
    return [row for s in await streams_status(redis) if s.exists for row in s.groups]


async def pipeline_idle(redis: aioredis.Redis, groups: Collection[str] | None = None) -> bool:
    """True when every group (or every one of ``groups``, the services running) is caught up, nothing pending."""
    rows = await pipeline_status(redis)
    return all(r.idle for r in rows if groups is None or r.group in groups)


async def fetcher_counters(redis: aioredis.Redis) -> dict[str, int]:
    """The fetcher's counters by name; a field that is not an integer is left out."""
    counters = {}
    for name, value in (await redis.hgetall(FETCHER_METRICS_KEY)).items():
        try:
            counters[reply_text(name)] = int(value)
        except (TypeError, ValueError):
            continue
    return counters
