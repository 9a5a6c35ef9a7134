"""Embedder service wiring: papers.parsed (batches) -> embed -> vector stored with the paper -> papers.embedded."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from faststream import Context
from faststream.redis import RedisRouter

from services.embedder.batch import carried_ids, done_key, drop_broken, embedded_events, is_current, plan_batch
from services.embedder.model import LazyEmbedder, check_model
from services.embedder.settings import EmbedderSettings
from shared.consumer import bury_rejected, make_router, order_id, publish_all, subscriber
from shared.events import Stream
from shared.runtime import create_service_app, service_redis
from shared.storage import PaperStore, paper_key, set_many

SERVICE = "embedder"
DONE_TTL_S = 7 * 24 * 3600
log = structlog.get_logger("paperwire.embedder")


def build_router(settings: EmbedderSettings) -> RedisRouter:
    """Checks the model first: a model/manifest mismatch refuses to start, saying what to do."""
    _, on_cuda = check_model(settings)
    max_records = settings.batch_max_records or (1024 if on_cuda else 64)
    router = make_router(SERVICE, settings)
    embedded = router.publisher(stream=Stream.EMBEDDED)
    redis = service_redis(settings)
    model = LazyEmbedder(settings)

    @subscriber(router, Stream.PARSED, service=SERVICE, settings=settings, batch=True, max_records=max_records)
    async def on_parsed(bodies: list[Any], message: Any = Context("message")) -> None:
        plan = plan_batch(bodies)
        await bury_rejected(redis, Stream.PARSED, SERVICE, message, [(r.index, r.reason) for r in plan.rejected])
        items = plan.items
        stale = []
        if items:  # one round trip: which events were handled, and the papers as stored
            keys = [done_key(item.event.event_id) for item in items] + [paper_key(i.event.paper.id) for i in items]
            replies = await redis.mget(keys)
            done, stored = replies[: len(items)], replies[len(items) :]
            fresh = [
                (item, is_current(item, raw)) for item, flag, raw in zip(items, done, stored, strict=True) if not flag
            ]
            stale = [item for item, current in fresh if not current]
            items = [item for item, current in fresh if current]
        if stale:
            await set_many(redis, [done_key(item.event.event_id) for item in stale], DONE_TTL_S)
            log.info("stale_text_skipped", papers=[item.event.paper.id for item in stale])
        if not items:
            return
        embedder = await model.get()
        carried = [carried_ids(item.event, embedder) for item in items]
        texts = [item.text for item in items]
        vectors = await asyncio.to_thread(embedder.embed_many, texts, None, carried)
        items, vectors, broken = drop_broken(items, vectors, embedder.manifest.precision)
        await bury_rejected(redis, Stream.PARSED, SERVICE, message, broken)
        manifest = embedder.manifest
        entry_ids, entries = message.raw_message["message_ids"], message.raw_message["data"]
        # a replayed dead letter is ordered by its original entry, so it never overwrites a newer version
        rows = [
            (item.event.paper.id, vector, order_id(entry_ids[item.index], entries[item.index]))
            for item, vector in zip(items, vectors, strict=True)
        ]
        written = await PaperStore(redis).set_vectors(manifest.space, rows)
        # An event older than the stored vector's (a replayed old version) is not news: the newer one was scored.
        current = [i for i, flag in enumerate(written) if flag]
        kept = [items[i] for i in current]
        await publish_all(
            redis, embedded, list(embedded_events(kept, vectors[current], manifest, settings.vector_dtype))
        )
        await set_many(redis, [done_key(item.event.event_id) for item in items], DONE_TTL_S)
        log.info(
            "batch_embedded",
            embedded=len(items),
            superseded=len(items) - len(kept),
            rejected=len(plan.rejected),
            repeats=len(plan.repeats) + len(plan.items) - len(items),
            carried_ids=sum(ids is not None for ids in carried),
            precision=manifest.precision,
            provider=embedder.provider,
        )

    return router


app = create_service_app(SERVICE, build_router, EmbedderSettings())
