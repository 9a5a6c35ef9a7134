"""Reading the contract's streams directly: recent matches of a subscription and its dead deliveries.

Entries are read with ``shared.events.entry_body`` (FastStream's envelope under ``__data__``).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from pydantic import ValidationError

from shared.events import MatchFound, Stream, entry_body


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


async def dead_delivery_ids(redis: aioredis.Redis, subscription_id: str, limit: int = 1000) -> list[str]:
    """Ids of the subscription's deliveries whose retries ran out (DeliveryResult events on deliveries.failed)."""
    ids = []
    for _entry_id, fields in await redis.xrange(Stream.DELIVERIES_FAILED, min="-", max="+", count=limit):
        body = entry_body(fields) or {}
        if body.get("subscription_id") == subscription_id and body.get("event_id"):
            ids.append(body["event_id"])
    return ids
