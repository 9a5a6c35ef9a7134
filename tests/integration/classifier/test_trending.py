"""Trending subscriptions on a real Redis with a real Hugging Face Daily Papers response (30 papers, 2026-06-12).

Upvotes read from the fixture by hand: 2606.13681 has 118, 2606.13392 103, 2606.08063 74, 2606.13106 18; 4 papers
have more than 18, so 2606.13106 is 5th of the day. The board is fed the way papers.trending feeds it: one
UpvotesChanged per paper (its first count), then a climb, as the parser publishes them. Counts that move are
variants made here at run time.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from faststream import TestApp
from faststream.redis import RedisBroker
from redis.asyncio.client import Pipeline

from services.classifier.app import SERVICE, build_router
from services.classifier.embedding import DIMS, MODEL_ID, embed_cached
from services.classifier.settings import ClassifierSettings
from services.classifier.state import ClassifierState
from shared.events import EmbeddingManifest, MatchFound, PaperEmbedded, Stream, UpvotesChanged
from shared.paper import HuggingFaceInfo, Paper
from shared.runtime import ServiceDef, build_app
from shared.storage import PaperStore, SubscriptionStore
from shared.subscription import Subscription
from shared.text_tokens import compose_text
from tests.streams import decode, wait_for

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hf_daily_papers" / "sotawhat_hf_daily_papers_2026-06.json"
SPACE = f"{MODEL_ID}:{DIMS}"
DAY = date(2026, 6, 12)


def hf_papers() -> list[Paper]:
    rows = json.loads(FIXTURE.read_text())
    return [
        Paper(
            id=r["paper"]["id"],
            title=r["paper"]["title"],
            abstract=r["paper"]["summary"],
            hf=HuggingFaceInfo(
                upvotes=r["paper"]["upvotes"], daily_date=date.fromisoformat(r["paper"]["submittedOnDailyAt"][:10])
            ),
        )
        for r in rows
    ]


def first_count(paper: Paper) -> UpvotesChanged:
    assert paper.hf is not None and paper.hf.daily_date is not None
    return UpvotesChanged(paper_id=paper.id, daily_date=paper.hf.daily_date, upvotes=paper.hf.upvotes)


async def climb(store: PaperStore, paper_id: str, upvotes: int) -> UpvotesChanged:
    """What the parser does for a re-polled list: store the new count, then publish the change."""
    paper = await store.get(paper_id)
    assert paper is not None and paper.hf is not None
    await store.put(paper.model_copy(update={"hf": paper.hf.model_copy(update={"upvotes": upvotes})}))
    return UpvotesChanged(paper_id=paper_id, daily_date=DAY, upvotes=upvotes, upvotes_before=paper.hf.upvotes)


async def _run(redis, tmp_path: Path, sub: Subscription, order: list[Paper]) -> list:  # noqa: ANN001
    vectors = embed_cached([compose_text(p.title, p.abstract) for p in order], tmp_path / "c.sqlite")
    state = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    for paper, v in zip(order, vectors, strict=True):
        await state.add_background([paper.id], [v])
    for paper in order:
        await state.record_upvotes(first_count(paper))
    await SubscriptionStore(redis).put(sub)
    await state.load_all()
    found = []
    for paper, vector in zip(order, vectors, strict=True):
        found += await state.score_papers([paper], vector[None, :])
    return found


async def embedded_day(redis, tmp_path: Path, sub: Subscription) -> tuple[ClassifierState, PaperStore, np.ndarray]:  # noqa: ANN001
    """All 30 papers stored with their vectors (as the embedder leaves them), on the board, the subscription live."""
    papers = hf_papers()
    vectors = embed_cached([compose_text(p.title, p.abstract) for p in papers], tmp_path / "c.sqlite")
    store = PaperStore(redis)
    state = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    for paper, vector in zip(papers, vectors, strict=True):
        await store.put(paper)
        await store.set_vector(SPACE, paper.id, vector)
        await state.add_background([paper.id], [vector])
        await state.record_upvotes(first_count(paper))
    await SubscriptionStore(redis).put(sub)
    await state.load_all()
    return state, store, vectors


async def test_top_three_of_the_day_with_rank_and_upvotes(redis, tmp_path) -> None:
    papers = sorted(hf_papers(), key=lambda p: -p.hf.upvotes)  # type: ignore[union-attr]
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    found = await _run(redis, tmp_path, sub, papers)
    assert [(m.paper.id, m.trending_rank) for m in found] == [("2606.13681", 1), ("2606.13392", 2), ("2606.08063", 3)]
    assert found[0].reasons[0] == "#1 trending on Hugging Face Daily Papers today (118 upvotes)"


async def test_narrow_keeps_only_trending_papers_that_match_the_interests(redis, tmp_path) -> None:
    papers = sorted(hf_papers(), key=lambda p: -p.hf.upvotes)  # type: ignore[union-attr]
    wide = await _run(redis, tmp_path, Subscription(id="w", name="w", trending={"top": 10}), papers)
    await redis.flushdb()
    narrow_sub = Subscription(
        id="n", name="n", interests=["large language models"], threshold=0.3, trending={"top": 10, "narrow": True}
    )
    narrow = await _run(redis, tmp_path, narrow_sub, papers)
    wide_ids = {m.paper.id for m in wide}
    assert len(wide_ids) == 10
    assert narrow and {m.paper.id for m in narrow} < wide_ids
    assert all(1 <= (m.trending_rank or 0) <= 10 for m in narrow)
    assert all(any(r.startswith("closest to your interest") for r in m.reasons) for m in narrow)


async def test_a_paper_that_climbs_after_it_was_scored_is_delivered_once(redis, tmp_path) -> None:
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    state, store, vectors = await embedded_day(redis, tmp_path, sub)
    papers = hf_papers()
    first = []
    for paper, vector in zip(papers, vectors, strict=True):  # papers.embedded, in the file's order
        first += await state.score_papers([paper], vector[None, :])
    assert sorted((m.paper.id, m.trending_rank) for m in first) == [
        ("2606.08063", 3),
        ("2606.13392", 2),
        ("2606.13681", 1),
    ]
    assert (await state.trending_ranks(["2606.13106"]))["day"].tolist() == [5]
    # 2606.13106 climbs from 18 to 200 upvotes: one match, ranked first, with the count it has now.
    (match,) = await state.upvotes_changed(await climb(store, "2606.13106", 200))
    assert (match.subscription_id, match.paper.id, match.trending_rank) == ("hot", "2606.13106", 1)
    assert match.reasons[0] == "#1 trending on Hugging Face Daily Papers today (200 upvotes)"
    assert match.paper.hf is not None and match.paper.hf.upvotes == 200
    # It climbs again, or the same event is redelivered: delivered already, so nothing.
    assert await state.upvotes_changed(await climb(store, "2606.13106", 210)) == []
    redelivered = UpvotesChanged(paper_id="2606.13106", daily_date=DAY, upvotes=200, upvotes_before=18)
    assert await state.upvotes_changed(redelivered) == []
    assert await redis.zscore(f"classifier:trending:{DAY.isoformat()}", "2606.13106") == 210  # GT: never lowered
    # A paper whose count moves but stays below the top 3 (0 -> 5 upvotes) is no match.
    zero = next(p.id for p in papers if p.hf is not None and p.hf.upvotes == 0)
    assert await state.upvotes_changed(await climb(store, zero, 5)) == []


async def test_a_withdrawn_paper_that_climbs_is_no_trending_match(redis, tmp_path) -> None:
    """Its upvotes keep coming after the authors withdrew it (the stored paper says so): nobody gets it."""
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    state, store, _vectors = await embedded_day(redis, tmp_path, sub)
    paper = await store.get("2606.13106")
    assert paper is not None
    await store.put(paper.model_copy(update={"withdrawn": True, "comment": "This paper has been withdrawn"}))
    assert await state.upvotes_changed(await climb(store, "2606.13106", 200)) == []
    assert (await state.trending_ranks(["2606.13106"]))["day"].tolist() == [1]  # still counted on the board


async def test_a_count_that_arrives_before_the_vector_ranks_the_paper_when_it_is_embedded(redis, tmp_path) -> None:
    papers = hf_papers()
    store = PaperStore(redis)
    state = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    await SubscriptionStore(redis).put(Subscription(id="hot", name="hot", trending={"window": "day", "top": 1}))
    for paper in papers:
        await store.put(paper)
        assert await state.upvotes_changed(first_count(paper)) == []  # not embedded yet: nothing to rank
    (top,) = [p for p in papers if p.id == "2606.13681"]
    vector = embed_cached([compose_text(top.title, top.abstract)], tmp_path / "c.sqlite")
    await store.set_vector(SPACE, top.id, vector[0])
    (match,) = await state.score_papers([top], vector)  # its papers.embedded event
    assert (match.paper.id, match.trending_rank) == ("2606.13681", 1)
    assert await state.upvotes_changed(first_count(top)) == []  # matched once only


def service_app(redis_url: str, tmp_path: Path, max_attempts: int, claim_idle_ms: int = 300):  # noqa: ANN201
    """The classifier service with fast polling and a short claim (0.3 s), so a failed entry is retried within the
    test. A handler slower than the claim is redelivered too, and publishes its matches again: a test that counts
    them claims later."""
    settings = ClassifierSettings(
        redis_url=redis_url,
        cache_path=tmp_path / "c.sqlite",
        read_block_ms=100,
        claim_poll_ms=100,
        claim_idle_ms=claim_idle_ms,
        max_attempts=max_attempts,
    )
    return build_app([ServiceDef(SERVICE, build_router, settings)], redis_url)


async def settled(redis, stream: str, matches: int) -> tuple[list, list, dict]:  # noqa: ANN001
    """Wait for ``matches`` matches and one dead-lettered entry of ``stream``, then a second for any extra match;
    return the matches, the dead entries and the group's pending summary."""
    await wait_for(redis, Stream.MATCHES, matches)
    dead = await wait_for(redis, f"{stream}.dead", 1)
    await asyncio.sleep(1.0)
    return await redis.xrange(Stream.MATCHES), dead, await redis.xpending(stream, SERVICE)


async def test_classifier_service_consumes_papers_trending(redis, clean_redis: str, tmp_path) -> None:
    """The service on papers.trending through the consumer helper: a climb becomes a MatchFound on matches, the
    same event published again publishes it again (the notifier delivers it once), a further climb of the paper
    (another event) does not announce it again, and an event of an unknown schema version ends in
    papers.trending.dead."""
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    await embedded_day(redis, tmp_path, sub)
    app = service_app(clean_redis, tmp_path, max_attempts=2, claim_idle_ms=2000)  # counts: no early redelivery
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    store = PaperStore(redis)
    try:
        async with TestApp(app):
            moved = await climb(store, "2606.13106", 200)
            await publisher.publish(moved, stream=Stream.TRENDING)
            await publisher.publish(moved, stream=Stream.TRENDING)  # a duplicate publish of the same event
            await publisher.publish(await climb(store, "2606.13106", 250), stream=Stream.TRENDING)
            bad = moved.model_dump(mode="json") | {"schema_version": 2, "event_id": "from-the-future"}
            await publisher.publish(bad, stream=Stream.TRENDING)
            found, dead, pending = await settled(redis, Stream.TRENDING, 2)
    finally:
        await publisher.stop()
    matches = [(m.subscription_id, m.paper.id, m.trending_rank) for m in decode(found, MatchFound)]
    assert matches == [("hot", "2606.13106", 1)] * 2
    ((_, fields),) = dead
    assert b"from-the-future" in fields[b"__data__"] and fields[b"dead.attempts"] == b"2"
    assert pending["pending"] == 0


async def test_classifier_service_scores_papers_embedded_in_batches(redis, clean_redis: str, tmp_path) -> None:
    """papers.embedded is read in batches and scored in one pass: the day's top two are matched with their
    ranks, the fifth is not, and an entry that is no PaperEmbedded goes to papers.embedded.dead on its first
    delivery while the rest of its batch is scored. The batch opens with an old model's event (a leftover or a
    replay): it is skipped, not followed as the service's vector space."""
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    _, _, vectors = await embedded_day(redis, tmp_path, sub)
    papers = {p.id: (p, v) for p, v in zip(hf_papers(), vectors, strict=True)}
    manifest = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    # The entries wait in the stream before the service starts, so they arrive as one batch.
    app = service_app(clean_redis, tmp_path, max_attempts=3, claim_idle_ms=2000)  # counts: no early redelivery
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    try:
        events = []
        for paper_id in ("2606.13681", "2606.13106", "2606.13392"):
            paper, vector = papers[paper_id]
            events.append(PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(vector), manifest=manifest))
        old_model = manifest.model_copy(update={"model_id": "an-older-model"})
        await publisher.publish(events[1].model_copy(update={"manifest": old_model}), stream=Stream.EMBEDDED)
        for event in events[:2]:
            await publisher.publish(event, stream=Stream.EMBEDDED)
        await publisher.publish(events[0].model_dump(mode="json") | {"vector": 42}, stream=Stream.EMBEDDED)
        await publisher.publish(events[2], stream=Stream.EMBEDDED)
        async with TestApp(app):
            found, dead, pending = await settled(redis, Stream.EMBEDDED, 2)
    finally:
        await publisher.stop()
    ranked = sorted((m.paper.id, m.trending_rank) for m in decode(found, MatchFound))
    assert ranked == [("2606.13392", 2), ("2606.13681", 1)]
    ((_, fields),) = dead
    assert fields[b"dead.error"].startswith(b"not a PaperEmbedded event") and fields[b"dead.attempts"] == b"1"
    assert pending["pending"] == 0


@pytest.mark.parametrize(
    ("command", "target", "ran"),
    [("XADD", str(Stream.MATCHES), False), ("SET", "once:classifier:match:", True)],
    ids=["publish fails", "claim reply lost"],
)
async def test_matches_whose_publish_or_claim_failed_are_published_on_redelivery(
    redis, clean_redis: str, tmp_path, monkeypatch, command: str, target: str, ran: bool
) -> None:
    """The round trip that publishes a batch's matches fails once, or the one that claims them runs but its reply
    is lost (``ran``): the claims belong to the events that made them, so the redelivered batch publishes them
    (claims of nobody in particular would make the retry find them taken and announce nothing)."""
    sub = Subscription(id="hot", name="hot", trending={"window": "day", "top": 3})
    _, _, vectors = await embedded_day(redis, tmp_path, sub)
    papers = {p.id: (p, v) for p, v in zip(hf_papers(), vectors, strict=True)}
    manifest = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    original, failed = Pipeline.execute, []

    async def execute(self: Pipeline, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not failed and any(cmd[0] == command and str(cmd[1]).startswith(target) for cmd, _ in self.command_stack):
            failed.append(1)
            if ran:
                await original(self, *args, **kwargs)
            raise ConnectionError("simulated: connection lost during the round trip")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", execute)
    app = service_app(clean_redis, tmp_path, max_attempts=3, claim_idle_ms=1000)  # retried, and counted
    publisher = RedisBroker(clean_redis)
    await publisher.connect()
    try:
        for paper_id in ("2606.13681", "2606.13392"):
            paper, vector = papers[paper_id]
            event = PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(vector), manifest=manifest)
            await publisher.publish(event, stream=Stream.EMBEDDED)
        async with TestApp(app):
            await wait_for(redis, Stream.MATCHES, 2)
            await asyncio.sleep(1.0)  # a duplicate would show up now
    finally:
        await publisher.stop()
    assert failed == [1]
    ranked = sorted((m.paper.id, m.trending_rank) for m in decode(await redis.xrange(Stream.MATCHES), MatchFound))
    assert ranked == [("2606.13392", 2), ("2606.13681", 1)]
    assert (await redis.xpending(Stream.EMBEDDED, SERVICE))["pending"] == 0
