"""The parser service on a real Redis: papers.raw in, papers.parsed and papers.trending out; a bad document
dead-lettered at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import redis.asyncio as aioredis
from faststream import TestApp
from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1

from services.parser.app import SERVICE, build_router
from services.parser.settings import ParserSettings
from shared.events import PaperParsed, RawPapers, Stream, UpvotesChanged
from shared.runtime import ServiceDef, build_app
from tests.streams import decode, wait_for

FIXTURES = Path(__file__).parents[2] / "fixtures"


async def test_parser_service_end_to_end(redis: aioredis.Redis, clean_redis: str) -> None:
    settings = ParserSettings(redis_url=clean_redis, read_block_ms=100, claim_poll_ms=100)
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    try:
        async with TestApp(app):
            body = (FIXTURES / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml").read_text()
            await publisher.publish(RawPapers(source="arxiv-rss", url="x", body=body), stream=Stream.RAW)
            bomb = (FIXTURES / "malformed/defusedxml_hostile/xmlbomb.xml").read_text()
            await publisher.publish(RawPapers(source="arxiv-rss", url="bomb", body=bomb), stream=Stream.RAW)
            await publisher.publish(RawPapers(source="arxiv-rss", url="x", body=body), stream=Stream.RAW)  # repeat
            dead = await wait_for(redis, "papers.raw.dead", 1)
            parsed = await wait_for(redis, Stream.PARSED, 3)
            await asyncio.sleep(1.0)  # the repeat must not add events
            parsed = await redis.xrange(Stream.PARSED)
    finally:
        await publisher.stop()
    events = []
    for _, fields in parsed:
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])  # FastStream's stream entry format
        events.append(PaperParsed.model_validate(json.loads(body)))
    assert [(e.paper.id, e.change) for e in events] == [
        ("2604.21935", "new"),
        ("2604.21936", "new"),
        ("2604.21937", "new"),
    ]
    assert events[0].paper.title == "Math Takes Two: A test for emergent mathematical reasoning in communication"
    ((_, fields),) = dead
    assert b"entity declarations are refused" in fields[b"dead.error"]
    pending = await redis.xpending(Stream.RAW, SERVICE)
    assert pending["pending"] == 0
    assert await redis.xlen(Stream.TRENDING) == 0  # arXiv feeds carry no upvotes


async def test_upvote_changes_go_to_papers_trending(redis: aioredis.Redis, clean_redis: str) -> None:
    """The real 2026-06-12 Daily Papers list (30 papers; 2606.13106 has 18 upvotes), polled three times:
    as recorded, again identical, then a copy changed here with that paper at 150 upvotes."""
    settings = ParserSettings(redis_url=clean_redis, read_block_ms=100, claim_poll_ms=100, tokenize=False)
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text()
    items = json.loads(body)
    (climber,) = [i for i in items if i["paper"]["id"] == "2606.13106"]
    climber["paper"]["upvotes"] = 150
    url = "https://huggingface.co/api/daily_papers?date=2026-06-12"
    try:
        async with TestApp(app):
            await publisher.publish(RawPapers(source="hf-daily", url=url, body=body), stream=Stream.RAW)
            first_counts = await wait_for(redis, Stream.TRENDING, 30)
            await publisher.publish(RawPapers(source="hf-daily", url=url, body=body), stream=Stream.RAW)
            await publisher.publish(RawPapers(source="hf-daily", url=url, body=json.dumps(items)), stream=Stream.RAW)
            await wait_for(redis, Stream.TRENDING, 31)
            await asyncio.sleep(1.0)  # nothing more may come
            trending = decode(await redis.xrange(Stream.TRENDING), UpvotesChanged)
            parsed = await redis.xrange(Stream.PARSED)
            pending = await redis.xpending(Stream.RAW, SERVICE)
    finally:
        await publisher.stop()
    assert len(first_counts) == 30 and len(parsed) == 30  # first poll: 30 new papers, 30 first counts
    assert all(t.upvotes_before is None for t in trending[:30])
    assert {t.paper_id: t.upvotes for t in trending[:30]}["2606.13681"] == 118
    # the identical re-poll added nothing; the changed one added exactly one trending event and no parsed one
    assert len(trending) == 31
    moved = trending[30]
    assert (moved.paper_id, moved.upvotes_before, moved.upvotes) == ("2606.13106", 18, 150)
    assert moved.daily_date.isoformat() == "2026-06-12"
    assert pending["pending"] == 0
