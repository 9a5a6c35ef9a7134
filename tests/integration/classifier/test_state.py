"""The classifier's state on a real Redis: profiles from stored vectors, matches claimed once, feedback stored."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import services.classifier.state as state_module
from services.classifier.dataset import load_dataset
from services.classifier.embedding import DIMS, MODEL_ID, embed_cached
from services.classifier.state import ClassifierState
from shared.events import EmbeddingManifest, FeedbackGiven, PaperEmbedded, Stream, SubscriptionChanged
from shared.paper import HuggingFaceInfo, Paper
from shared.storage import PaperStore, SubscriptionStore
from shared.subscription import Subscription
from tests.unit.classifier.conftest import DATASET

SPACE = f"{MODEL_ID}:{DIMS}"


async def stored_papers(redis, cache: Path, n: int, background: int = 40):
    """``n`` real cs.CL / cs.CV papers stored with their vectors, the first ``background`` of them in a fresh
    state's background; returns the papers, their vectors and the state."""
    papers = [p for p in load_dataset(DATASET) if p.primary in ("cs.CL", "cs.CV")][:n]
    vectors = embed_cached([p.text for p in papers], cache)
    store = PaperStore(redis)
    for p, v in zip(papers, vectors, strict=True):
        await store.put(Paper(id=p.id, title=p.title, abstract=p.abstract, categories=list(p.categories)))
        await store.set_vector(SPACE, p.id, v)
    state = ClassifierState(redis, SPACE, cache=cache)
    for p, v in zip(papers[:background], vectors[:background], strict=True):
        await state.add_background([p.id], [v])
    return papers, vectors, state


async def test_seed_subscription_matches_once_and_learns(redis, tmp_path) -> None:
    papers, vectors, state = await stored_papers(redis, tmp_path / "c.sqlite", 50)
    seeds = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    sub = Subscription(id="cl", name="cl", seed_papers=[*seeds, "2401.99999"])
    await SubscriptionStore(redis).put(sub)
    await state.load_all()
    assert await state.missing_papers(sub.seed_papers) == ["2401.99999"]
    profile = state.profiles["cl"]
    assert len(profile.vectors) == 5 and profile.model is not None
    manifest = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    found, events = [], {}
    for p, v in zip(papers[40:], vectors[40:], strict=True):
        event = PaperEmbedded(
            paper=Paper(id=p.id, title=p.title, abstract=p.abstract, categories=list(p.categories)),
            vector=PaperEmbedded.pack(v),
            manifest=manifest,
        )
        events[p.id] = event
        first = await state.score_events([event])
        # The same event again (a redelivery after a crash or a failed publish) publishes its matches again
        # (the notifier sends each once); another event about the paper does not announce it again.
        assert [(m.subscription_id, m.paper.id) for m in await state.score_events([event])] == [
            (m.subscription_id, m.paper.id) for m in first
        ]
        assert await state.score_events([event.model_copy(update={"event_id": "another"})]) == []
        found += first
    assert found and all(m.subscription_id == "cl" and m.reasons for m in found)
    assert {m.paper.categories[0] for m in found} <= {"cs.CL", "cs.CV"}
    await state.record_feedback(FeedbackGiven(subscription_id="cl", paper_id=papers[41].id, label="dislike"))
    await state.refresh(sub)
    assert await redis.hget("classifier:feedback:cl", papers[41].id) == b"dislike"
    assert await redis.get("classifier:model:cl") is not None
    model = state.profiles["cl"].model
    assert model is not None and model.kind == "blend" and model.n_neg == 1  # seeds blended with one rating
    assert state.scorer().profiles[0] is state.profiles["cl"]  # the compiled scorer scores with the new profile
    assert np.isfinite(model.logits(vectors)).all()
    stored = json.loads(await redis.get("classifier:model:cl"))
    assert stored["kind"] == "blend" and len(stored["parts"]) == 2
    # A new subscription joins the compiled scorer; a paused one leaves it.
    twin = Subscription(id="cl2", name="cl2", seed_papers=seeds)
    await state.refresh(twin)
    later = [events[m.paper.id].model_copy(update={"event_id": f"later-{m.paper.id}"}) for m in found]
    again = await state.score_events(later)
    assert again and {m.subscription_id for m in again} == {"cl2"}
    await state.refresh(twin.model_copy(update={"active": False}))
    assert state.scorer().ids == ["cl"]
    assert await state.score_events(later) == []  # were "cl2" still scored, its own events would match again


async def test_restart_uses_stored_models_and_refits_what_changed(redis, tmp_path) -> None:
    """A replica that starts (or reloads after a long idle) takes each stored model trained on the same inputs as
    it is, even though the background moved meanwhile; a subscription rated while it was down is fitted again."""
    papers, vectors, first = await stored_papers(redis, tmp_path / "c.sqlite", 60)
    cl = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    cv = [p.id for p in papers[:40] if p.primary == "cs.CV"][:5]
    subs = SubscriptionStore(redis)
    await subs.put(Subscription(id="cl", name="cl", seed_papers=cl))
    await subs.put(Subscription(id="cv", name="cv", seed_papers=cv))
    await subs.put(Subscription(id="gone", name="gone", seed_papers=cv[:3]))
    await first.load_all()
    await first.record_feedback(FeedbackGiven(subscription_id="gone", paper_id=papers[46].id, label="like"))
    stored = {s: await redis.get(f"classifier:model:{s}") for s in ("cl", "cv", "gone")}
    assert all(stored.values())
    await subs.delete("gone")  # while no replica runs: no sync sees it
    await redis.hset("classifier:feedback:never-fitted", papers[47].id, "like")  # ratings of a deleted one, no model

    for p, v in zip(papers[40:], vectors[40:], strict=True):  # the background moves while the replica is down
        await first.add_background([p.id], [v])  # a fit now gives another model
    await first.record_feedback(FeedbackGiven(subscription_id="cv", paper_id=papers[45].id, label="dislike"))
    restarted = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    await restarted.load_all()

    kept = restarted.profiles["cl"].model
    assert kept is not None and json.dumps(kept.to_dict()) == stored["cl"].decode()  # used as stored, no fit
    assert await redis.get("classifier:model:cl") == stored["cl"]
    refit = restarted.profiles["cv"].model
    assert refit is not None and refit.n_neg == 1  # its rating changed the inputs: fitted again, and stored
    assert await redis.get("classifier:model:cv") != stored["cv"]
    assert "gone" not in restarted.profiles
    assert not await redis.exists("classifier:model:gone", "classifier:model:gone:inputs", "classifier:feedback:gone")
    assert not await redis.exists("classifier:feedback:never-fitted")
    assert await redis.exists("classifier:model:cv:inputs", "classifier:feedback:cv") == 2  # live ones keep theirs
    # The reused model is calibrated on today's background, and a fit on it would differ: the reuse is real.
    fresh = ClassifierState(redis, SPACE, cache=tmp_path / "c.sqlite")
    await redis.delete("classifier:model:cl:inputs")
    await fresh.load_all()
    assert json.dumps(fresh.profiles["cl"].model.to_dict()) != stored["cl"].decode()


async def test_a_withdrawn_paper_matches_no_one_and_a_replacement_says_it_is_one(redis, tmp_path) -> None:
    """The same real paper, first as its authors' withdrawal notice, then as a live v3: only the second matches,
    and its reasons say it is a new version of an earlier paper (arXiv lists replacements with new papers)."""
    papers, vectors, state = await stored_papers(redis, tmp_path / "c.sqlite", 50)
    seeds = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    await SubscriptionStore(redis).put(Subscription(id="cl", name="cl", seed_papers=seeds, threshold=0.0))
    await state.load_all()
    manifest = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    p, v = papers[45], vectors[45]
    paper = Paper(
        id=p.id,
        version=3,
        title=p.title,
        abstract=p.abstract,
        categories=list(p.categories),
        submitted=datetime(2025, 3, 20, tzinfo=UTC),
        comment="This paper has been withdrawn by the authors",
        withdrawn=True,
    )
    background = len(await state.background())
    withdrawn = PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(v), manifest=manifest)
    assert await state.score_events([withdrawn]) == []
    assert len(await state.background()) == background + 1  # still a paper of the field
    live = withdrawn.model_copy(update={"paper": paper.model_copy(update={"withdrawn": False, "comment": None})})
    [match] = await state.score_events([live])
    assert "a new version (v3) of an earlier paper, first submitted 2025-03-20" in match.reasons


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _embedded(paper_id: str, model_id: str = MODEL_ID) -> PaperEmbedded:
    manifest = EmbeddingManifest(model_id=model_id, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    paper = Paper(id=paper_id, title="A transformer for parsing", abstract="We study transformers.")
    return PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(_vector(1)), manifest=manifest)


async def _changed(redis, subscription_id: str, action: str = "updated") -> None:  # noqa: ANN001
    event = SubscriptionChanged(subscription_id=subscription_id, action=action)  # type: ignore[arg-type]
    await redis.xadd(Stream.SUBSCRIPTIONS, {"__data__": event.model_dump_json()})


def _slow_builds(monkeypatch, seconds: float) -> None:  # noqa: ANN001
    """Profile builds take as long as a model fit (about a second), so handlers' syncs overlap."""
    real = state_module.build_profile

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(state_module, "build_profile", slow)


async def test_a_slow_rebuild_of_an_older_change_does_not_undo_a_pause(redis, monkeypatch) -> None:
    """Every handler syncs first, concurrently: the older change's rebuild must not land after the newer pause."""
    store = SubscriptionStore(redis)
    await store.put(Subscription(id="s", name="s", keywords=["transformer"]))
    state = ClassifierState(redis, SPACE)
    await state.sync()
    _slow_builds(monkeypatch, 0.5)
    await store.update("s", lambda s: s.model_copy(update={"keywords": ["diffusion"]}))
    await _changed(redis, "s")
    older = asyncio.create_task(state.sync())  # on_subscription, say
    await asyncio.sleep(0.1)
    await store.update("s", lambda s: s.model_copy(update={"active": False}))
    await _changed(redis, "s", "paused")
    await state.sync()  # on_embedded's, say
    await older
    assert state.profiles == {} and state.scorer().ids == []


@pytest.mark.parametrize("started_by_the_batch", [False, True], ids=["another handler's reload", "its own reload"])
async def test_papers_scored_during_a_full_reload_meet_every_subscription_even_one_created_meanwhile(
    redis, monkeypatch, started_by_the_batch: bool
) -> None:
    """A batch that arrives while the periodic reload runs waits for it, then for the changes made meanwhile: it
    meets the reloaded subscriptions and one created during the reload (scored with the old set, that one would
    miss the paper for good: the entry is acked)."""
    store = SubscriptionStore(redis)
    for subscription_id in ("a", "b"):
        await store.put(Subscription(id=subscription_id, name=subscription_id, keywords=["transformer"]))
    state = ClassifierState(redis, SPACE, resync_after_s=0.2)
    await state.sync()
    await asyncio.sleep(0.3)  # the reload is due
    _slow_builds(monkeypatch, 0.3)

    async def create_meanwhile() -> None:
        await asyncio.sleep(0.1)
        await store.put(Subscription(id="new", name="new", keywords=["transformer"]))
        await _changed(redis, "new", "created")

    if started_by_the_batch:  # the batch's own sync runs the reload
        creator = asyncio.create_task(create_meanwhile())
        found = await state.score_events([_embedded("2401.00002")])
        await creator
    else:  # another handler's sync runs it, and the batch waits
        reload = asyncio.create_task(state.sync())
        await create_meanwhile()
        found = await state.score_events([_embedded("2401.00002")])
        await reload
    assert sorted(m.subscription_id for m in found) == ["a", "b", "new"]


async def test_one_unreadable_subscription_does_not_stop_the_changes_read_with_it(redis) -> None:
    """A record no release can read (a time zone tzdata dropped, a hand edit) is logged and left out; the pause
    read in the same pass still applies, and a restarted replica loads the others."""
    store = SubscriptionStore(redis)
    await store.put(Subscription(id="b", name="b", keywords=["transformer"]))
    state = ClassifierState(redis, SPACE)
    await state.sync()
    old = json.loads(Subscription(id="a", name="a", keywords=["x"]).model_dump_json())
    old["schedule"]["timezone"] = "Mars/Olympus"
    await redis.set("subscription:a", json.dumps(old))
    await redis.sadd("subscriptions:ids", "a")
    await store.update("b", lambda s: s.model_copy(update={"active": False}))
    await _changed(redis, "a")
    await _changed(redis, "b", "paused")
    assert await state.sync() == ["a", "b"]
    assert state.profiles == {}
    await store.update("b", lambda s: s.model_copy(update={"active": True}))
    restarted = ClassifierState(redis, SPACE)
    await restarted.sync()
    assert sorted(restarted.profiles) == ["b"]


async def test_the_records_ratings_win_over_a_late_retried_feedback_event(redis, tmp_path) -> None:
    """Like, then dislike: the api keeps the record in order; the like's event retried after the dislike's must
    not turn the rating back."""
    papers, _vectors, state = await stored_papers(redis, tmp_path / "c.sqlite", 50)
    seeds = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    rated = papers[45].id
    store = SubscriptionStore(redis)
    await store.put(Subscription(id="s", name="s", seed_papers=seeds, disliked=[rated]))
    await state.record_feedback(FeedbackGiven(subscription_id="s", paper_id=rated, label="dislike"))
    await state.record_feedback(FeedbackGiven(subscription_id="s", paper_id=rated, label="like"))  # the late retry
    await state.sync()
    model = state.profiles["s"].model
    assert model is not None and model.n_neg == 1
    assert "liked paper" not in state.profiles["s"].labels


async def test_a_paper_asked_for_in_vain_is_asked_for_again(redis) -> None:
    """When asking the fetcher fails, the marker is taken back so the retry asks again; and a paper the fetcher
    never found is asked for again once its marker expires, however often the subscription is edited."""
    state = ClassifierState(redis, SPACE)
    assert await state.await_papers("s", ["2401.00001"]) == ["2401.00001"]
    await state.stop_awaiting("s", ["2401.00001"])
    assert await state.await_papers("s", ["2401.00001"]) == ["2401.00001"]
    await redis.expire("classifier:awaiting:2401.00001", 60)
    assert await state.await_papers("s", ["2401.00001"]) == []  # an edit: still asked for, expiry not renewed
    assert await redis.ttl("classifier:awaiting:2401.00001") <= 60


async def test_events_of_another_vector_space_are_skipped_not_followed(redis) -> None:
    """A leftover event of an old model (replayed, or from before a model change) must not decide the space."""
    await SubscriptionStore(redis).put(Subscription(id="s", name="s", keywords=["transformer"]))
    state = ClassifierState(redis, SPACE)
    assert await state.score_events([_embedded("2301.00001", model_id="old-model")]) == []
    assert [m.paper.id for m in await state.score_events([_embedded("2401.00002")])] == ["2401.00002"]


async def test_a_batch_holding_a_redelivered_event_and_a_newer_one_for_the_paper_publishes_it(redis) -> None:
    """Event A claimed the match and its publish failed; A's redelivery arrives in one batch with B, a later event
    for the same paper: the claim is A's, so the batch publishes the match (else A is acked with it and it is
    lost)."""
    await SubscriptionStore(redis).put(Subscription(id="s", name="s", keywords=["transformer"]))
    state = ClassifierState(redis, SPACE)
    first = _embedded("2401.00002")
    assert [m.subscription_id for m in await state.score_events([first])] == ["s"]  # claimed, publish then fails
    later = first.model_copy(update={"event_id": "later"})
    assert [m.subscription_id for m in await state.score_events([first, later])] == ["s"]
    assert await state.score_events([later]) == []  # alone, the later event is another event about the paper


async def test_a_redis_error_while_applying_a_change_keeps_the_profile_and_reads_the_change_again(
    redis, monkeypatch
) -> None:
    store = SubscriptionStore(redis)
    await store.put(Subscription(id="s", name="s", keywords=["transformer"]))
    state = ClassifierState(redis, SPACE)
    await state.sync()
    await store.update("s", lambda s: s.model_copy(update={"keywords": ["diffusion"]}))
    await _changed(redis, "s")
    real_get = SubscriptionStore.get

    async def blip(self, subscription_id: str):  # noqa: ANN001, ANN202
        monkeypatch.setattr(SubscriptionStore, "get", real_get)
        raise RedisConnectionError("connection reset")

    monkeypatch.setattr(SubscriptionStore, "get", blip)
    with pytest.raises(RedisConnectionError):
        await state.sync()
    assert state.profiles["s"].subscription.keywords == ["transformer"]  # still scored as it was
    assert await state.sync() == ["s"]  # the change is read again, and applied
    assert state.profiles["s"].subscription.keywords == ["diffusion"]


def _announced(paper: Paper, vector: np.ndarray, event_id: str) -> PaperEmbedded:
    manifest = EmbeddingManifest(model_id=MODEL_ID, dims=DIMS, max_tokens=256, precision="fp32", sha256="x")
    return PaperEmbedded(event_id=event_id, paper=paper, vector=PaperEmbedded.pack(vector), manifest=manifest)


def _rows_of(background: np.ndarray, vector: np.ndarray) -> int:
    """How many rows of the background are this vector (as stored: float16)."""
    stored = np.asarray(vector, dtype="<f2").astype(np.float32)
    return int((background == stored).all(axis=1).sum())


async def test_a_paper_from_several_sources_and_versions_joins_the_background_once(redis, tmp_path) -> None:
    """One real paper seen by the arXiv API (new), Hugging Face Daily Papers and arXiv RSS (merged, merged), then
    its v2 (updated), scored by two replicas and one restarted: the background holds it once, with its first
    vector, beside every other paper of the day (the duplicates over-weighted papers listed by several sources)."""
    cache = tmp_path / "c.sqlite"
    papers, vectors, state = await stored_papers(redis, cache, 4, background=0)
    p, v = papers[0], vectors[0]
    v1 = Paper(id=p.id, version=1, title=p.title, abstract=p.abstract, categories=list(p.categories))
    hf = v1.model_copy(update={"hf": HuggingFaceInfo(upvotes=12), "sources": ["arxiv-api", "hf-daily"]})
    rss = hf.model_copy(update={"sources": ["arxiv-api", "hf-daily", "arxiv-rss"]})
    v2 = rss.model_copy(update={"version": 2, "abstract": f"{p.abstract} We add experiments on two more languages."})
    [v2_vector] = embed_cached([f"{v2.title}\n{v2.abstract}"], cache)
    others = [Paper(id=q.id, title=q.title, abstract=q.abstract, categories=list(q.categories)) for q in papers[1:]]
    replica = ClassifierState(redis, SPACE, cache=cache)
    await state.score_events([_announced(v1, v, "new")])
    await state.score_events([_announced(hf, v, "merged-hf"), _announced(others[0], vectors[1], "b")])
    await replica.score_events([_announced(rss, v, "merged-rss"), _announced(others[1], vectors[2], "c")])
    restarted = ClassifierState(redis, SPACE, cache=cache)
    await restarted.score_events([_announced(v2, v2_vector, "updated"), _announced(others[2], vectors[3], "d")])
    await restarted.score_events([_announced(rss, v, "merged-rss")])  # a redelivery, too

    background = await restarted.background()
    assert len(background) == 4  # the paper and the three others, each once
    assert _rows_of(background, v) == 1 and _rows_of(background, v2_vector) == 0  # its first vector is kept
    assert all(_rows_of(background, u) == 1 for u in vectors[1:])
    assert np.array_equal(background, np.asarray(vectors[::-1], dtype="<f2").astype(np.float32))  # newest first


async def test_the_background_stays_trimmed_and_a_paper_that_aged_out_can_join_again(redis, tmp_path) -> None:
    """Trimmed to ``background_size``; the ids of the vectors trimmed off leave with them, so a paper that aged
    out is a new member when it comes back (a new version months later) and the id set stays the size of the
    list. A list written before the background had ids is still read, and its unnamed vectors age out."""
    papers, vectors, _state = await stored_papers(redis, tmp_path / "c.sqlite", 6, background=0)
    key = f"classifier:background:{SPACE}"
    await redis.lpush(key, *(np.asarray(u, dtype="<f2").tobytes() for u in (vectors[5], vectors[5])))  # old format
    state = ClassifierState(redis, SPACE, background_size=4)
    assert await state.add_background([papers[0].id, papers[1].id], vectors[:2]) == 2
    assert len(await state.background()) == 4  # the two old vectors still count
    assert await state.add_background([papers[1].id, papers[2].id, papers[2].id], vectors[1:4]) == 1
    assert await state.add_background([papers[3].id, papers[4].id], vectors[3:5]) == 2
    background = await state.background()
    assert np.array_equal(background, np.asarray(vectors[4::-1][:4], dtype="<f2").astype(np.float32))
    assert await redis.llen(key) == 4 and await redis.scard(f"{key}:members") == 4
    assert await state.add_background([papers[0].id], vectors[:1]) == 1  # it had aged out
    assert await state.add_background([papers[4].id], vectors[4:5]) == 0
    assert _rows_of(await state.background(), vectors[0]) == 1
    assert await redis.llen(key) == await redis.llen(f"{key}:ids") == await redis.scard(f"{key}:members") == 4
