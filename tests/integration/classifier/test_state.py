"""The classifier's state on a real Redis: profiles from stored vectors, matches claimed once, feedback stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.classifier.dataset import load_dataset
from services.classifier.embedding import DIMS, MODEL_ID, embed_cached
from services.classifier.state import ClassifierState
from shared.events import EmbeddingManifest, FeedbackGiven, PaperEmbedded
from shared.paper import Paper
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
    for v in vectors[:background]:
        await state.add_background(v)
    return papers, vectors, state


async def test_seed_subscription_matches_once_and_learns(redis, tmp_path) -> None:
    papers, vectors, state = await stored_papers(redis, tmp_path / "c.sqlite", 50)
    seeds = [p.id for p in papers[:40] if p.primary == "cs.CL"][:5]
    sub = Subscription(id="cl", name="cl", seed_papers=[*seeds, "2401.99999"])
    await SubscriptionStore(redis).put(sub)
    await state.load_all()
    assert await state.missing_seeds(sub) == ["2401.99999"]
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
        found += await state.score_events([event])
        assert await state.score_events([event]) == []  # redelivery: no second match
    assert found and all(m.subscription_id == "cl" and m.reasons for m in found)
    await state.unclaim(found[:1])  # its publish failed: the retry of the entry must find it again
    assert [m.paper.id for m in await state.score_events([events[found[0].paper.id]])] == [found[0].paper.id]
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
    matched = [events[m.paper.id] for m in found]
    again = await state.score_events(matched)
    assert again and {m.subscription_id for m in again} == {"cl2"}
    await state.refresh(twin.model_copy(update={"active": False}))
    assert state.scorer().ids == ["cl"]
    await state.unclaim(again)  # were "cl2" still scored, these would match again
    assert await state.score_events(matched) == []


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

    for v in vectors[40:]:  # the background moves while the replica is down: a fit now gives another model
        await first.add_background(v)
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
