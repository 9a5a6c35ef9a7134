"""The parser service on a real Redis: papers.raw in, papers.parsed and papers.trending out; a bad document
dead-lettered at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from faststream import TestApp
from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.publisher.usecase import StreamPublisher

from services.parser.app import SERVICE, build_router
from services.parser.ingest import ingest, plan_key
from services.parser.parse import parse_document
from services.parser.settings import ParserSettings
from services.parser.tokens import PaperTokenizer
from shared import consumer
from shared.events import PaperParsed, RawPapers, Stream, UpvotesChanged
from shared.runtime import ServiceDef, build_app
from shared.storage import PaperStore
from tests.streams import decode, wait_for
from tests.unit.embedder.model_cache import exported_model_dir

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


def fail_publish_once(monkeypatch: pytest.MonkeyPatch, stream: str, nth: int = 1) -> list[int]:
    """Make the service's ``nth`` publish to ``stream`` raise, once; the returned list counts the failures."""
    original = StreamPublisher.publish
    seen, failed = [0], []

    async def flaky(self: StreamPublisher, *args: Any, **kwargs: Any) -> Any:
        if self.stream.name == stream and not failed:
            seen[0] += 1
            if seen[0] == nth:
                failed.append(1)
                raise ConnectionError("simulated: Redis went away mid-publish")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(StreamPublisher, "publish", flaky)
    # one event per round trip, so the publishes before the nth have gone out when it fails
    monkeypatch.setattr(consumer, "PIPELINE_CHUNK", 1)
    return failed


async def run_with_one_failure(
    redis: aioredis.Redis, clean_redis: str, event: RawPapers, expect_parsed: int, expect_trending: int
) -> tuple[list[PaperParsed], list[UpvotesChanged]]:
    """Run the service on one raw event (a failure is patched in by the caller) until both streams hold the
    expected counts; the claimer retries the failed delivery after 200 ms."""
    settings = ParserSettings(
        redis_url=clean_redis, read_block_ms=100, claim_poll_ms=100, claim_idle_ms=200, tokenize=False
    )
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    try:
        async with TestApp(app):
            await publisher.publish(event, stream=Stream.RAW)
            if expect_trending:
                await wait_for(redis, Stream.TRENDING, expect_trending, limit_s=10)
            await wait_for(redis, Stream.PARSED, expect_parsed, limit_s=10)
            for _ in range(50):  # the retried delivery is acked once its publishes returned
                if (await redis.xpending(Stream.RAW, SERVICE))["pending"] == 0:
                    break
                await asyncio.sleep(0.1)
    finally:
        await publisher.stop()
    assert (await redis.xpending(Stream.RAW, SERVICE))["pending"] == 0
    assert await redis.xlen("papers.raw.dead") == 0
    parsed = decode(await redis.xrange(Stream.PARSED), PaperParsed)
    return parsed, decode(await redis.xrange(Stream.TRENDING), UpvotesChanged)


def unique_by_paper(events: list[PaperParsed]) -> dict[str, str]:
    """Paper id -> event id; a paper published twice (a redelivery) must carry the same event id both times,
    which is what the embedder's ``once:embedder:{event_id}`` marker de-duplicates by."""
    ids: dict[str, set[str]] = {}
    for event in events:
        ids.setdefault(event.paper.id, set()).add(event.event_id)
    assert all(len(v) == 1 for v in ids.values()), ids
    return {paper_id: next(iter(v)) for paper_id, v in ids.items()}


async def test_failed_parsed_publish_is_published_on_redelivery(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second papers.parsed publish of the first delivery fails: the claimer's redelivery must publish
    all three papers (before the fix it found them stored and identical, and published nothing)."""
    failed = fail_publish_once(monkeypatch, Stream.PARSED, nth=2)
    body = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_text()
    parsed, trending = await run_with_one_failure(
        redis, clean_redis, RawPapers(source="arxiv-rss", url="x", body=body), 4, 0
    )
    assert failed == [1]
    by_paper = unique_by_paper(parsed)
    assert sorted(by_paper) == ["2604.22002", "2604.22027", "2604.22038"]
    assert len(parsed) == 4  # the first paper twice (before the failure and on redelivery), under one id
    assert await PaperStore(redis).get("2604.22002") is not None  # written once the events were out
    assert trending == []


async def test_failed_trending_publish_is_published_on_redelivery(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real 2026-06-12 Daily Papers list (30 papers): every papers.parsed publish succeeds, the first
    papers.trending publish fails. The redelivery must publish the 30 first counts, and the 30 parsed
    events again under the same ids."""
    failed = fail_publish_once(monkeypatch, Stream.TRENDING)
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text()
    url = "https://huggingface.co/api/daily_papers?date=2026-06-12"
    parsed, trending = await run_with_one_failure(
        redis, clean_redis, RawPapers(source="hf-daily", url=url, body=body), 60, 30
    )
    assert failed == [1]
    assert len(unique_by_paper(parsed)) == 30 and len(parsed) == 60
    assert len(trending) == 30 and len({t.event_id for t in trending}) == 30
    assert {t.paper_id: t.upvotes for t in trending}["2606.13681"] == 118
    assert all(t.upvotes_before is None for t in trending)


async def test_tokenizer_error_leaves_events_for_the_redelivery(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attaching token ids fails on the first delivery (before any publish): the redelivery publishes them."""

    class FlakyTokenizer:
        calls = 0

        def attach(self, events: list[PaperParsed]) -> int:
            FlakyTokenizer.calls += 1
            if FlakyTokenizer.calls == 1:
                raise RuntimeError("simulated tokenizer failure")
            return 0

    monkeypatch.setattr("services.parser.app.open_tokenizer", lambda *args, **kwargs: FlakyTokenizer())
    body = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_text()
    parsed, _ = await run_with_one_failure(redis, clean_redis, RawPapers(source="arxiv-rss", url="x", body=body), 3, 0)
    assert FlakyTokenizer.calls == 2
    assert [(e.paper.id, e.change) for e in parsed] == [
        ("2604.22002", "new"),
        ("2604.22027", "new"),
        ("2604.22038", "new"),
    ]


async def test_event_loop_keeps_running_while_a_large_document_is_parsed_and_tokenized(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The real 1.1 MB OAI-PMH page (387 papers): parsing and tokenizing it is ~100-200 ms of CPU each. A
    coroutine ticking every 10 ms stands for the consumer heartbeat; it must tick while each one runs. Before
    the fix both ran on the event loop, which could not run anything meanwhile: zero ticks, every time."""
    model_dir = exported_model_dir(tmp_path_factory)
    body = (FIXTURES / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_text()
    papers = len({p.id for p in parse_document("arxiv-oai", body).papers})
    ticks = [0]
    during: dict[str, tuple[int, int]] = {}
    attach, parse = PaperTokenizer.attach, parse_document

    def watched_attach(self: PaperTokenizer, events: list[PaperParsed]) -> int:
        before = ticks[0]
        count = attach(self, events)
        during["attach"] = (before, ticks[0])
        return count

    def watched_parse(*args: Any, **kwargs: Any) -> Any:
        before = ticks[0]
        result = parse(*args, **kwargs)
        during["parse"] = (before, ticks[0])
        return result

    monkeypatch.setattr(PaperTokenizer, "attach", watched_attach)
    monkeypatch.setattr("services.parser.app.parse_document", watched_parse)

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0.01)

    settings = ParserSettings(
        redis_url=clean_redis, read_block_ms=100, claim_poll_ms=100, tokenize=True, model_dir=model_dir
    )
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    ticking = asyncio.create_task(ticker())
    try:
        async with TestApp(app):
            await publisher.publish(RawPapers(source="arxiv-oai", url="oai", body=body), stream=Stream.RAW)
            entries = await wait_for(redis, Stream.PARSED, papers)
    finally:
        ticking.cancel()
        await publisher.stop()
    events = decode(entries, PaperParsed)
    assert papers == 387 and len(events) == papers and all(e.tokens is not None for e in events)
    assert set(during) == {"attach", "parse"}
    for step, (before, after) in during.items():
        assert after > before, f"the event loop did not run while {step} ran"


async def test_a_consumer_reading_the_store_on_an_event_finds_what_the_event_says(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classifier's trending path reads the stored paper when papers.trending says its upvotes moved.
    Each of the service's publishes is followed at once by such a read (the closest a consumer can come).
    The real 2026-06-12 Daily Papers list, then a copy with 2606.13106 moved from 18 to 150 upvotes. Before
    the fix the events went out before the write: the first read found no paper, the moved one 18 upvotes."""
    store = PaperStore(redis)
    reads: list[tuple[str, Any, Any]] = []
    original = StreamPublisher.publish

    async def publish_then_read(self: StreamPublisher, message: Any, *args: Any, **kwargs: Any) -> Any:
        out = await original(self, message, *args, **kwargs)
        if isinstance(message, UpvotesChanged):
            stored = await store.get(message.paper_id)
            reads.append(("trending", message.upvotes, stored.hf.upvotes if stored and stored.hf else None))
        elif isinstance(message, PaperParsed):
            reads.append(("parsed", message.paper, await store.get(message.paper.id)))
        return out

    monkeypatch.setattr(StreamPublisher, "publish", publish_then_read)
    settings = ParserSettings(redis_url=clean_redis, read_block_ms=100, claim_poll_ms=100, tokenize=False)
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text()
    items = json.loads(body)
    (climber,) = [i for i in items if i["paper"]["id"] == "2606.13106"]
    climber["paper"]["upvotes"] = 150
    url = "https://huggingface.co/api/daily_papers?date=2026-06-12"
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    try:
        async with TestApp(app):
            await publisher.publish(RawPapers(source="hf-daily", url=url, body=body), stream=Stream.RAW)
            await wait_for(redis, Stream.TRENDING, 30)
            await publisher.publish(RawPapers(source="hf-daily", url=url, body=json.dumps(items)), stream=Stream.RAW)
            await wait_for(redis, Stream.TRENDING, 31)
    finally:
        await publisher.stop()
    trending = [(sent, stored) for kind, sent, stored in reads if kind == "trending"]
    parsed = [(sent, stored) for kind, sent, stored in reads if kind == "parsed"]
    assert len(trending) == 31 and len(parsed) == 30
    assert trending[-1] == (150, 150)
    assert all(sent == stored for sent, stored in trending), trending
    assert all(sent == stored for sent, stored in parsed)
    assert await redis.keys("parser:plan:*") == []  # published plans are not kept


async def test_a_failed_write_is_redone_and_published_once(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the papers fails on the first delivery, after the plan was saved and before any publish: the
    redelivery writes and publishes the three papers once each, and forgets the plan."""
    from services.parser import app as parser_app

    original, failed = parser_app.commit, []

    async def flaky_commit(*args: Any) -> None:
        if not failed:
            failed.append(1)
            raise ConnectionError("simulated: Redis went away mid-write")
        await original(*args)

    monkeypatch.setattr(parser_app, "commit", flaky_commit)
    body = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_text()
    event = RawPapers(source="arxiv-rss", url="x", body=body)
    parsed, _ = await run_with_one_failure(redis, clean_redis, event, 3, 0)
    assert failed == [1]
    assert sorted(unique_by_paper(parsed)) == ["2604.22002", "2604.22027", "2604.22038"] and len(parsed) == 3
    assert all(await PaperStore(redis).get_many([e.paper.id for e in parsed]))
    assert not await redis.exists(plan_key(event.event_id))


async def test_an_upvote_move_whose_publish_failed_after_the_write_is_published_on_redelivery(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2606.13106 is stored at 18 upvotes; a Daily Papers copy says 150. The new count is written, then the
    papers.trending publish fails. Planning again would find 150 stored and publish nothing: the redelivery
    must publish the saved plan's event (18 -> 150), under its id."""
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text()
    await ingest(parse_document("hf-daily", body), PaperStore(redis))
    items = json.loads(body)
    (climber,) = [i for i in items if i["paper"]["id"] == "2606.13106"]
    climber["paper"]["upvotes"] = 150
    failed = fail_publish_once(monkeypatch, Stream.TRENDING)
    url = "https://huggingface.co/api/daily_papers?date=2026-06-12"
    event = RawPapers(source="hf-daily", url=url, body=json.dumps(items))
    parsed, trending = await run_with_one_failure(redis, clean_redis, event, 0, 1)
    assert failed == [1] and parsed == []
    ((moved),) = trending
    assert (moved.paper_id, moved.upvotes_before, moved.upvotes) == ("2606.13106", 18, 150)
    assert (await PaperStore(redis).get("2606.13106")).hf.upvotes == 150
    assert not await redis.exists(plan_key(event.event_id))
