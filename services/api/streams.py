"""Reading the contract's streams directly: recent matches of a subscription, and replaying dead deliveries.

Entries are read with ``shared.events.entry_body`` (FastStream's envelope under ``__data__``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from shared.consumer import replay_copy
from shared.events import MatchFound, Stream, entry_body

_REPLAYABLE = {str(s) for s in Stream}
# Where failed deliveries end: the notifier's dead deliveries, and `matches` entries its handler gave up on.


def _key(k: Any) -> bytes:
    return k if isinstance(k, bytes) else str(k).encode()


async def recent_matches(
    redis: aioredis.Redis, subscription_id: str, *, limit: int = 50, scan: int = 5000
) -> list[MatchFound]:
    """Newest first, one per paper (the newest), reading at most ``scan`` entries of ``matches``."""
    found: list[MatchFound] = []
    seen: set[str] = set()
    last = "+"
    remaining = scan
    while remaining > 0 and len(found) < limit:
        page = await redis.xrevrange(Stream.MATCHES, max=last, min="-", count=min(500, remaining))
        if not page:
            break
        for _entry_id, fields in page:
            body = entry_body(fields)
            if not body or body.get("subscription_id") != subscription_id:
                continue
            try:
                match = MatchFound.model_validate(body)
            except ValidationError:
                continue
            if match.paper.id in seen:
                continue
            seen.add(match.paper.id)
            found.append(match)
            if len(found) >= limit:
                break
        remaining -= len(page)
        last_id = page[-1][0].decode() if isinstance(page[-1][0], bytes) else page[-1][0]
        last = f"({last_id}"
    return found


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def replay_dead(
    redis: aioredis.Redis,
    dead_stream: str = Stream.DELIVERIES_DEAD,
    *,
    subscription_ids: set[str] | None = None,
    limit: int = 1000,
) -> ReplayReport:
    """Put dead entries back on their source stream (``dead.stream``) and remove them from the dead stream.

    ``subscription_ids`` limits it to entries whose event names one of them (an owner replays only their own).
    An entry whose source is not a contract stream is left where it is.
    """
    report = ReplayReport()
    for entry_id, fields in await redis.xrange(dead_stream, min="-", max="+", count=limit):
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        fields = {_key(k): v for k, v in fields.items()}
        source = fields.get(b"dead.stream", b"")
        source = source.decode() if isinstance(source, bytes) else str(source)
        if subscription_ids is not None:
            body = entry_body(fields) or {}
            if body.get("subscription_id") not in subscription_ids:
                continue
        if source not in _REPLAYABLE:
            report.skipped.append(eid)
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(source, replay_copy(fields))  # marked like the CLI's replay (replay.for / replay.of)
            pipe.xdel(dead_stream, eid)
            await pipe.execute()
        report.replayed.append(eid)
    return report


async def dead_delivery_ids(redis: aioredis.Redis, subscription_id: str, limit: int = 1000) -> list[str]:
    """Ids of the subscription's deliveries whose retries ran out (DeliveryResult events on deliveries.dead)."""
    ids = []
    for _entry_id, fields in await redis.xrange(Stream.DELIVERIES_DEAD, min="-", max="+", count=limit):
        body = entry_body(fields) or {}
        if body.get("subscription_id") == subscription_id and body.get("event_id"):
            ids.append(body["event_id"])
    return ids
