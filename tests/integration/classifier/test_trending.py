"""Trending subscriptions on a real Redis with a real Hugging Face Daily Papers response (30 papers, 2026-06-12).

Upvotes read from the fixture by hand: 2606.13681 has 118, 2606.13392 103, 2606.08063 74, 2606.13106 18.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from services.classifier.embedding import DIMS, MODEL_ID, embed_cached
from services.classifier.state import ClassifierState
from shared.paper import HuggingFaceInfo, Paper
from shared.storage import SubscriptionStore
from shared.subscription import Subscription

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hf_daily_papers" / "sotawhat_hf_daily_papers_2026-06.json"


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


async def _run(redis, tmp_path: Path, sub: Subscription, order: list[Paper]) -> list:  # noqa: ANN001
    vectors = embed_cached([p.embedding_text() for p in order], tmp_path / "c.sqlite")
    state = ClassifierState(redis, f"{MODEL_ID}:{DIMS}", cache=tmp_path / "c.sqlite")
    for v in vectors:
        await state.add_background(v)
    await SubscriptionStore(redis).put(sub)
    await state.load_all()
    found = []
    for paper, vector in zip(order, vectors, strict=True):
        found += await state.score_papers([paper], vector[None, :])
    return found


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
