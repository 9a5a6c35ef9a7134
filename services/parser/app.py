"""Parser service wiring: papers.raw -> parse -> merge with the store -> papers.parsed (and papers.trending)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from faststream import Context
from faststream.redis import RedisRouter

from services.parser.errors import ParseError
from services.parser.ingest import (
    commit,
    describe,
    forget_plan,
    listing_day,
    load_plan,
    prepare,
    restamp,
    save_plan,
)
from services.parser.parse import parse_document
from services.parser.settings import ParserSettings
from services.parser.tokens import open_tokenizer
from shared.consumer import bury_rejected, make_router, publish_all, subscriber
from shared.events import RawPapers, Stream
from shared.runtime import create_service_app, service_redis
from shared.storage import PaperStore

SERVICE = "parser"
log = structlog.get_logger("paperwire.parser")


def build_router(settings: ParserSettings) -> RedisRouter:
    router = make_router(SERVICE, settings)
    parsed = router.publisher(stream=Stream.PARSED)
    trending = router.publisher(stream=Stream.TRENDING)
    redis = service_redis(settings)
    store = PaperStore(redis)
    tokenizer = open_tokenizer(
        settings.tokenize, settings.resolved_model_dir(), settings.max_tokens, model_id=settings.model_id
    )
    plan_ttl_s = max(int(settings.retention_hours * 3600), 1)  # as long as the raw event can be redelivered

    @subscriber(router, Stream.RAW, service=SERVICE, settings=settings)
    async def on_raw(event: RawPapers, message: Any = Context("message")) -> None:
        # Parsing and tokenizing are CPU work (~100-200 ms each for a 400-paper OAI page): worker threads, so
        # the loop keeps beating the consumer heartbeats and running other handlers meanwhile.
        try:
            result = await asyncio.to_thread(
                parse_document, event.source, event.body, max_bytes=settings.max_document_bytes
            )
        except ParseError as exc:
            # A bad document fails the same way every time: dead-letter it now instead of retrying.
            await bury_rejected(redis, Stream.RAW, SERVICE, message, [(0, str(exc))])
            log.warning("document_rejected", reason=str(exc), **describe(event))
            return
        for error in result.errors:
            log.warning("item_skipped", index=error.index, ident=error.ident, reason=error.reason, **describe(event))
        if result.deleted_ids:  # arXiv removed these records: nothing to publish, but an operator may ask why
            log.info(
                "records_deleted", papers=result.deleted_ids[:50], count=len(result.deleted_ids), **describe(event)
            )
        if result.no_announcement:
            log.info("no_announcement", reason=result.no_announcement, **describe(event))
        # Write before publishing, so a consumer reading the store on an event finds the paper it describes.
        # The plan is saved first: a redelivery after the write publishes it (same event ids) instead of
        # planning again against a store that already holds the papers and finding nothing to publish.
        report = await load_plan(redis, event.event_id)
        if report is None:
            report = await prepare(result, store, listing_day(event), event.event_id)
            if tokenizer is not None and report.events:
                await asyncio.to_thread(tokenizer.attach, report.events)  # the embedder's tokenizing, done here
            if report.events or report.trending:
                await save_plan(redis, event.event_id, report, plan_ttl_s)
        await commit(report, store)
        restamped = await restamp(report, store)
        await publish_all(redis, parsed, report.events)
        await publish_all(redis, trending, report.trending)
        if report.events or report.trending:
            await forget_plan(redis, event.event_id)
        log.info(
            "document_parsed",
            papers=len(result.papers),
            published=len(report.events),
            upvote_changes=len(report.trending),
            unchanged=report.unchanged,
            restamped=restamped,
            item_errors=report.item_errors,
            **describe(event),
        )

    return router


app = create_service_app(SERVICE, build_router, ParserSettings())
