"""Classifier replicas on a real Redis: each keeps every profile current from the subscriptions and feedback
streams, although the consumer group hands each change to one replica only; papers a subscription waits for
(seeds, rated papers) are remembered in Redis and fetched once."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
from faststream import TestApp
from faststream.redis import RedisBroker

from services.classifier.dataset import load_dataset
from services.classifier.embedding import DIMS, MODEL_ID, embed_cached
from services.classifier.scoring import Scorer
from services.classifier.state import ClassifierState
from shared.events import EmbeddingManifest, FeedbackGiven, FetchRequested, PaperEmbedded, Stream, SubscriptionChanged
from shared.paper import Paper
from shared.storage import PaperStore, SubscriptionStore
from shared.subscription import Subscription
from tests.integration.classifier.test_trending import service_app
from tests.streams import decode, wait_for
from tests.unit.classifier.conftest import DATASET

SPACE = f"{MODEL_ID}:{DIMS}"
MANIFEST = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")


async def stored_papers(redis, tmp_path, n: int = 40):  # noqa: ANN001, ANN201
    """Real labeled papers (cs.CL and cs.CV) with their vectors in the store and in the background."""
    papers = [p for p in load_dataset(DATASET) if p.primary in ("cs.CL", "cs.CV")][:n]
    vectors = embed_cached([p.text for p in papers], tmp_path / "c.sqlite")
    store = PaperStore(redis)
    for p, v in zip(papers, vectors, strict=True):
        await store.put(Paper(id=p.id, title=p.title, abstract=p.abstract, categories=list(p.categories)))
        await store.set_vector(SPACE, p.id, v)
    await ClassifierState(redis, SPACE).add_background([p.id for p in papers], vectors)
    return papers, vectors


async def test_every_replica_follows_changes_that_another_replica_consumed(redis, clean_redis, tmp_path) -> None:
    papers, vectors = await stored_papers(redis, tmp_path)
    cl = [i for i, p in enumerate(papers) if p.primary == "cs.CL"][:5]
    cv = [i for i, p in enumerate(papers) if p.primary == "cs.CV"][:3]
    subscriptions = SubscriptionStore(redis)
    await subscriptions.put(Subscription(id="s", name="s", seed_papers=[papers[i].id for i in cl]))
    a, b = (ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite") for _ in range(2))
    await a.sync(), await b.sync()
    assert len(a.profiles["s"].vectors) == len(b.profiles["s"].vectors) == 5

    broker = RedisBroker(clean_redis)
    await broker.connect()
    try:
        # What the api does: store, then publish. The group gives each entry to one replica; both must follow.
        changed = Subscription(id="s", name="s", seed_papers=[papers[i].id for i in cv])
        await subscriptions.put(changed)
        await broker.publish(SubscriptionChanged(subscription_id="s", action="updated"), stream=Stream.SUBSCRIPTIONS)
        await subscriptions.put(Subscription(id="new", name="new", interests=["image segmentation"]))
        await broker.publish(SubscriptionChanged(subscription_id="new", action="created"), stream=Stream.SUBSCRIPTIONS)
        assert await b.sync() == ["new", "s"]
        assert np.allclose(np.sort(b.profiles["s"].vectors, axis=0), np.sort(vectors[cv], axis=0), atol=1e-3)
        assert sorted(b.scorer().ids) == ["new", "s"]
        assert await b.sync() == []  # nothing new since

        rated = papers[cl[0]].id
        await broker.publish(
            FeedbackGiven(subscription_id="s", paper_id=rated, label="dislike"), stream=Stream.FEEDBACK
        )
        assert await a.sync() == ["new", "s"]  # a had not seen the two changes either
        assert await redis.hget("classifier:feedback:s", rated) == b"dislike"
        model = a.profiles["s"].model
        assert model is not None and model.n_neg == 1

        await subscriptions.delete("s")
        await broker.publish(SubscriptionChanged(subscription_id="s", action="deleted"), stream=Stream.SUBSCRIPTIONS)
        await a.sync(), await b.sync()
        assert a.scorer().ids == b.scorer().ids == ["new"]
    finally:
        await broker.stop()

    restarted = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    assert await restarted.sync() == ["new"]
    b.resync_after_s = 0.0  # a replica that has not looked for longer than the retention allows loads everything
    await subscriptions.put(Subscription(id="quiet", name="quiet", interests=["speech recognition"]))
    assert await b.sync() == ["new", "quiet"]


async def test_a_rating_of_an_unseen_paper_is_fetched_once_and_applied_when_it_arrives(
    redis, clean_redis, tmp_path
) -> None:
    papers, vectors = await stored_papers(redis, tmp_path, n=41)
    unseen, unseen_vector = papers[-1], vectors[-1]
    store = PaperStore(redis)
    await redis.delete(f"paper:{unseen.id}")
    await redis.hdel(f"vectors:{SPACE}", unseen.id)
    assert await store.get_vectors(SPACE, [unseen.id]) == {}, "the test's paper must be unknown to start with"
    seeds = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    subscription = Subscription(id="s", name="s", seed_papers=seeds)
    await SubscriptionStore(redis).put(subscription)

    broker = RedisBroker(clean_redis)
    await broker.connect()
    try:
        async with TestApp(service_app(clean_redis, tmp_path, max_attempts=3)):
            await broker.publish(
                SubscriptionChanged(subscription_id="s", action="created"), stream=Stream.SUBSCRIPTIONS
            )
            stray = FeedbackGiven(subscription_id="nosuch", paper_id=unseen.id, label="like")
            await broker.publish(stray, stream=Stream.FEEDBACK)  # no such subscription: nothing to fetch or keep
            like = FeedbackGiven(subscription_id="s", paper_id=unseen.id, label="like")
            await broker.publish(like, stream=Stream.FEEDBACK)
            await broker.publish(like, stream=Stream.FEEDBACK)  # clicked twice: asked for once
            (request,) = decode(await wait_for(redis, Stream.FETCH_REQUESTS, 1), FetchRequested)
            assert request.arxiv_ids == [unseen.id] and request.reason == "a rated paper of s"
            assert await redis.smembers(f"classifier:awaiting:{unseen.id}") == {b"s"}
            assert not await redis.exists("classifier:feedback:nosuch")
            await asyncio.sleep(0.5)
            assert len(await redis.xrange(Stream.FETCH_REQUESTS)) == 1
            stored = json.loads(await redis.get("classifier:model:s"))
            assert stored["kind"] != "blend", "no rating can count before its paper's vector exists"

            # The fetcher, parser and embedder bring the paper: its vector is stored, then papers.embedded.
            paper = Paper(
                id=unseen.id, title=unseen.title, abstract=unseen.abstract, categories=list(unseen.categories)
            )
            await store.put(paper)
            await store.set_vector(SPACE, unseen.id, unseen_vector)
            embedded = PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(unseen_vector), manifest=MANIFEST)
            await broker.publish(embedded, stream=Stream.EMBEDDED)
            entries = await wait_for(redis, Stream.SUBSCRIPTIONS, 2)
            told = decode(entries[1:], SubscriptionChanged)
            assert [(c.subscription_id, c.action) for c in told] == [("s", "updated")]
            for _ in range(100):
                stored = json.loads(await redis.get("classifier:model:s"))
                if stored["kind"] == "blend":
                    break
                await asyncio.sleep(0.1)
            assert stored["kind"] == "blend", "the like counts once the paper's vector is there"
            assert not await redis.exists(f"classifier:awaiting:{unseen.id}")
    finally:
        await broker.stop()


async def test_scoring_runs_off_the_event_loop_while_profiles_change(redis, tmp_path, monkeypatch) -> None:
    """A batch against many subscriptions takes seconds: it runs in a worker thread, so the loop keeps reading
    streams and beating the consumer's heartbeat, and a subscription change waits for the batch, not the reverse."""
    papers, vectors = await stored_papers(redis, tmp_path)
    seeds = [p.id for p in papers if p.primary == "cs.CL"][:5]
    await SubscriptionStore(redis).put(Subscription(id="s", name="s", seed_papers=seeds))
    state = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    await state.sync()
    loop_thread = threading.get_ident()
    seen: dict[str, object] = {}
    real_score = Scorer.score
    started, release = threading.Event(), threading.Event()

    def score(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen["thread"] = threading.get_ident()
        started.set()
        release.wait(10)
        return real_score(self, *args, **kwargs)

    monkeypatch.setattr(Scorer, "score", score)
    batch = [Paper(id=p.id, title=p.title, abstract=p.abstract, categories=list(p.categories)) for p in papers]
    scoring = asyncio.create_task(state.score_papers(batch, vectors))
    await asyncio.to_thread(started.wait, 10)
    change = asyncio.create_task(state.remove("s"))  # must wait: the scorer is in use
    await asyncio.sleep(0.1)
    assert not change.done() and "s" in state.profiles
    release.set()
    found = await scoring
    await change
    assert seen["thread"] != loop_thread
    assert found and "s" not in state.profiles
