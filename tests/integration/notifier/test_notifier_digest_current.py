"""A digest lists its papers as they are at its slot, not as they were when they matched (real Redis, real
recorded papers): the classifier claims a match once per (subscription, paper), so the notifier reads the paper
store again when it queues the digest."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import redis.asyncio as aioredis

from services.notifier.email_render import Links, render_text
from services.notifier.intake import LAST_DIGEST, Intake
from services.notifier.jobs import CATEGORIES_UNKNOWN, DeliveryJob, job_id
from services.notifier.queue import JOBS
from shared.events import MatchFound, SubscriptionChanged
from shared.paper import HuggingFaceInfo, Paper
from shared.storage import PaperStore, SubscriptionStore
from shared.subscription import Schedule, Subscription
from tests.unit.notifier.notifier_papers import hf_papers, listing_papers, subscription

LINKS = Links("https://paperwire.example", "test-link-secret")
SLOT_TIME = datetime(2024, 5, 2, 8, 0, 30, tzinfo=UTC)
SLOT = datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


async def queued_jobs(redis: aioredis.Redis) -> list[DeliveryJob]:
    return [DeliveryJob.model_validate_json(raw) for raw in (await redis.hgetall(JOBS)).values()]


async def daily(redis: aioredis.Redis, **overrides: object) -> Subscription:
    values: dict[str, object] = {
        "categories": ["cs.CL"],
        "schedule": Schedule(mode="daily", at=time(8, 0)),
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    sub = subscription(**(values | overrides))
    await SubscriptionStore(redis).put(sub)
    return sub


async def matched(intake: Intake, sub: Subscription, paper: Paper, score: float, reasons: list[str]) -> None:
    event = MatchFound(subscription_id=sub.id, owner=sub.owner, paper=paper, score=score, reasons=reasons)
    assert await intake.on_match(event) == 0  # buffered for the digest


def with_upvotes(paper: Paper, upvotes: int) -> Paper:
    hf = paper.hf or HuggingFaceInfo()
    return paper.model_copy(update={"hf": hf.model_copy(update={"upvotes": upvotes})})


def withdrawn_v2(paper: Paper) -> Paper:
    """What arXiv lists after the authors withdraw v1: an empty v2 whose comment says so."""
    return paper.model_copy(
        update={
            "version": 2,
            "abstract": "",
            "comment": "This paper has been withdrawn by the authors due to an error in the main result",
            "withdrawn": True,
        }
    )


async def test_a_digest_lists_the_papers_as_stored_at_its_slot(redis: aioredis.Redis, fixtures_dir: Path) -> None:
    sub = await daily(redis)
    intake = Intake(redis)
    store = PaperStore(redis)
    revised, withdrawn, expired = (p.model_copy(update={"version": 1}) for p in listing_papers(fixtures_dir, 3))
    categorised, upvoted, steady = hf_papers(fixtures_dir)  # Hugging Face listings: no arXiv categories yet

    # What each paper was when it matched (the snapshot the match event carried).
    await matched(intake, sub, revised, 0.85, ["closest to your interest (similarity 0.61)", "primary category cs.CL"])
    await matched(
        intake, sub, withdrawn, 0.88, ["closest to your interest (similarity 0.64)", "primary category cs.CL"]
    )
    await matched(intake, sub, expired, 0.7, ["closest to your interest (similarity 0.52)", "primary category cs.CL"])
    await matched(
        intake,
        sub,
        categorised,
        0.9,
        [
            "closest to your interest (similarity 0.66)",
            CATEGORIES_UNKNOWN,
            f"{categorised.hf.upvotes} upvotes on Hugging Face Daily Papers",  # type: ignore[union-attr]
        ],
    )
    await matched(intake, sub, with_upvotes(upvoted, 0), 0.8, ["closest to your interest (similarity 0.58)"])
    await matched(
        intake,
        sub,
        steady,
        0.8,
        ["closest to your interest (similarity 0.57)", f"{steady.hf.upvotes} upvotes on Hugging Face Daily Papers"],  # type: ignore[union-attr]
    )

    # What the paper store learned before the slot.
    revised_v2 = revised.model_copy(
        update={
            "version": 2,
            "abstract": revised.abstract + " In v2 we add experiments on three further model families.",
            "comment": "v2: added experiments",
            "links": {"abs": f"https://arxiv.org/abs/{revised.id}v2", "pdf": f"https://arxiv.org/pdf/{revised.id}v2"},
        }
    )
    categorised_now = with_upvotes(categorised, 131).model_copy(
        update={
            "version": 1,
            "categories": ["cs.CL", "cs.IR"],
            "links": categorised.links | {"abs": f"https://arxiv.org/abs/{categorised.id}v1"},
            "sources": ["arxiv-rss", "hf-daily"],
        }
    )
    for paper in (revised_v2, withdrawn_v2(withdrawn), categorised_now, upvoted, steady):
        await store.put(paper)
    assert upvoted.hf is not None and steady.hf is not None and upvoted.hf.upvotes > steady.hf.upvotes > 0

    assert await intake.digest_tick(SLOT_TIME) == 1
    (job,) = await queued_jobs(redis)
    assert job.id == job_id(sub.id, "email", "ada@example.org", f"digest:{SLOT.isoformat()}")  # ids unchanged
    # Withdrawn: left out. Same score: the current upvotes rank the once unvoted paper first.
    assert job.paper_ids == [categorised.id, revised.id, upvoted.id, steady.id, expired.id]
    assert job.more == 0
    by_id = {item.paper.id: item for item in job.items}

    now_v2 = by_id[revised.id]
    assert now_v2.paper == revised_v2 and now_v2.score == 0.85
    assert now_v2.reasons == ["closest to your interest (similarity 0.61)", "primary category cs.CL"]

    known = by_id[categorised.id]
    assert known.paper.categories == ["cs.CL", "cs.IR"] and known.paper.hf.upvotes == 131  # type: ignore[union-attr]
    assert known.reasons == [
        "closest to your interest (similarity 0.66)",
        "primary category cs.CL",
        "131 upvotes on Hugging Face Daily Papers",
    ]

    voted = by_id[upvoted.id]
    assert voted.paper.hf.upvotes == upvoted.hf.upvotes  # type: ignore[union-attr]
    assert voted.reasons == ["closest to your interest (similarity 0.58)"]  # it matched on similarity: kept as is
    assert by_id[expired.id].paper == expired  # no longer stored: its snapshot

    text = render_text(job, sub, LINKS)
    assert f"https://arxiv.org/abs/{revised.id}v2" in text and f"https://arxiv.org/pdf/{revised.id}v2" in text
    assert f"https://arxiv.org/abs/{categorised.id}v1" in text
    assert "cs.CL, cs.IR | 131 upvotes" in text
    assert f"{upvoted.hf.upvotes} upvotes" in text and "   0 upvotes" not in text
    assert "categories not known yet" not in text
    assert withdrawn.title not in text and withdrawn.id not in text

    assert await intake.buffered(sub.id) == []  # the withdrawn paper's match is gone too
    assert (await redis.hget(LAST_DIGEST, sub.id)) == SLOT.isoformat().encode()


async def test_a_digest_whose_papers_were_all_withdrawn_sends_nothing_and_keeps_nothing(
    redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    sub = await daily(redis)
    intake = Intake(redis)
    papers = listing_papers(fixtures_dir, 2)
    for paper in papers:
        await matched(intake, sub, paper.model_copy(update={"version": 1}), 0.8, ["primary category cs.CL"])
        await PaperStore(redis).put(withdrawn_v2(paper))
    assert await intake.digest_tick(SLOT_TIME) == 0
    assert await queued_jobs(redis) == []
    assert await intake.buffered(sub.id) == []
    assert await intake.digest_tick(datetime(2024, 5, 2, 9, 0, tzinfo=UTC)) == 0  # the slot is done


async def test_a_flush_on_switching_to_instant_lists_the_current_papers_too(
    redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    sub = await daily(redis)
    intake = Intake(redis)
    categorised, upvoted, _ = hf_papers(fixtures_dir)
    await matched(intake, sub, categorised, 0.9, ["closest to your interest (similarity 0.66)", CATEGORIES_UNKNOWN])
    await matched(intake, sub, upvoted, 0.8, ["closest to your interest (similarity 0.58)"])
    await PaperStore(redis).put(categorised.model_copy(update={"categories": ["cs.IR"]}))
    await PaperStore(redis).put(withdrawn_v2(upvoted))

    instant = sub.model_copy(update={"schedule": Schedule(mode="instant")})
    await SubscriptionStore(redis).put(instant)
    await intake.on_subscription(SubscriptionChanged(subscription_id=sub.id, action="updated", subscription=instant))
    (job,) = await queued_jobs(redis)
    assert job.kind == "digest" and job.paper_ids == [categorised.id]
    # Known now, and outside the subscription's categories: the stale reason goes (no category reason in its place,
    # nothing re-scored).
    assert job.items[0].reasons == ["closest to your interest (similarity 0.66)"]
    assert await intake.buffered(sub.id) == []
