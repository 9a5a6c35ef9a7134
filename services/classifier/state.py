"""The classifier's live state: profiles of active subscriptions, the background sample, feedback.

Redis keys it owns (prefix ``classifier:``): ``classifier:background:{space}`` (list of recent
vectors, float16), ``classifier:feedback:{sub}`` (hash paper id -> like/dislike),
``classifier:model:{sub}`` (the trained model, JSON), ``classifier:trending:{YYYY-MM-DD}`` (sorted set
paper id -> Hugging Face upvotes of that Daily Papers day, for trending ranks). Matches are claimed once per
subscription + paper, so a redelivered event never publishes a second MatchFound.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import redis.asyncio as aioredis

from services.classifier.embedding import embed_cached
from services.classifier.learner import model_from_dict
from services.classifier.profiles import build_profile
from services.classifier.scoring import Match, Profile, Scorer, TrendingRanks
from shared.events import FeedbackGiven, MatchFound, PaperEmbedded
from shared.paper import Paper
from shared.storage import PaperStore, SubscriptionStore, claim_once
from shared.subscription import Subscription


class ClassifierState:
    def __init__(self, redis: aioredis.Redis, space: str, background_size: int = 2000, cache=None) -> None:  # noqa: ANN001
        self.redis = redis
        self.space = space
        self.background_size = background_size
        self.cache = cache
        self.profiles: dict[str, Profile] = {}
        self.loaded = False
        # seed paper id -> subscriptions whose profile lacks it until its vector arrives (fetched on request)
        self.awaiting: dict[str, set[str]] = {}

    def await_seeds(self, subscription_id: str, paper_ids: list[str]) -> None:
        for paper_id in paper_ids:
            self.awaiting.setdefault(paper_id, set()).add(subscription_id)

    async def seed_arrived(self, paper_id: str) -> list[str]:
        """Rebuild the profiles that were waiting for this seed paper; returns their subscription ids."""
        waiting = sorted(self.awaiting.pop(paper_id, set()))
        store = SubscriptionStore(self.redis)
        for subscription_id in waiting:
            subscription = await store.get(subscription_id)
            if subscription is not None:
                await self.refresh(subscription)
        return waiting

    async def background(self) -> np.ndarray:
        raws = await self.redis.lrange(f"classifier:background:{self.space}", 0, self.background_size - 1)
        if not raws:
            return np.zeros((0, 384), np.float32)
        return np.stack([np.frombuffer(r, dtype="<f2").astype(np.float32) for r in raws])

    async def add_background(self, vector: np.ndarray) -> None:
        key = f"classifier:background:{self.space}"
        await self.redis.lpush(key, np.asarray(vector, dtype="<f2").tobytes())
        await self.redis.ltrim(key, 0, self.background_size - 1)

    async def missing_seeds(self, subscription: Subscription) -> list[str]:
        known = await PaperStore(self.redis).get_vectors(self.space, subscription.seed_papers)
        return [s for s in subscription.seed_papers if s not in known]

    async def refresh(self, subscription: Subscription) -> Profile | None:
        """Rebuild one subscription's profile (interests embedded, seeds and ratings from stored vectors)."""
        if not subscription.active:
            self.profiles.pop(subscription.id, None)
            return None
        store = PaperStore(self.redis)
        ratings = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (await self.redis.hgetall(f"classifier:feedback:{subscription.id}")).items()
        }
        liked_ids = list(dict.fromkeys([*subscription.liked, *(p for p, lab in ratings.items() if lab == "like")]))
        disliked_ids = [
            p
            for p in dict.fromkeys([*subscription.disliked, *(p for p, lab in ratings.items() if lab == "dislike")])
            if p not in liked_ids
        ]
        ids = [*subscription.seed_papers, *liked_ids, *disliked_ids]
        vectors = await store.get_vectors(self.space, ids)
        papers = await store.get_many([s for s in subscription.seed_papers if s in vectors])
        seeds = {
            s: (papers[s].title if s in papers else "", vectors[s]) for s in subscription.seed_papers if s in vectors
        }
        liked = np.array([vectors[p] for p in liked_ids if p in vectors]).reshape(-1, 384)
        disliked = np.array([vectors[p] for p in disliked_ids if p in vectors]).reshape(-1, 384)
        interests = (
            await asyncio.to_thread(embed_cached, subscription.interests, self.cache)
            if subscription.interests
            else np.zeros((0, 384), np.float32)
        )
        raw_model = await self.redis.get(f"classifier:model:{subscription.id}")
        warm = model_from_dict(json.loads(raw_model)) if raw_model else None
        background = await self.background()
        profile = await asyncio.to_thread(
            build_profile, subscription, interests, seeds, liked, disliked, background, warm
        )
        if profile.model is not None:
            await self.redis.set(f"classifier:model:{subscription.id}", json.dumps(profile.model.to_dict()))
        self.profiles[subscription.id] = profile
        return profile

    async def load_all(self) -> None:
        for subscription in await SubscriptionStore(self.redis).active():
            await self.refresh(subscription)
        self.loaded = True

    def remove(self, subscription_id: str) -> None:
        self.profiles.pop(subscription_id, None)

    async def record_feedback(self, event: FeedbackGiven) -> None:
        await self.redis.hset(f"classifier:feedback:{event.subscription_id}", event.paper_id, event.label)

    async def score_event(self, event: PaperEmbedded) -> list[MatchFound]:
        """Score one embedded paper against every profile; only first-time matches come back."""
        if event.manifest.space != self.space:
            return []
        if not self.loaded:
            await self.load_all()
        vector = event.array()
        await self.add_background(vector)
        return await self.score_papers([event.paper], vector[None, :])

    async def trending_ranks(self, papers: list[Paper]) -> TrendingRanks:
        """Record each paper's upvotes under its Daily Papers day; rank = 1 + papers with more upvotes.

        The day's (or the seven days') board as known when the paper arrives: a later paper with more
        upvotes does not take back a notification already sent.
        """
        day_ranks = np.zeros(len(papers), np.int64)
        week_ranks = np.zeros(len(papers), np.int64)
        for i, paper in enumerate(papers):
            if paper.hf is None:
                continue
            day: date = paper.hf.daily_date or paper.announced or datetime.now(UTC).date()
            upvotes = paper.hf.upvotes
            key = f"classifier:trending:{day.isoformat()}"
            await self.redis.zadd(key, {paper.id: upvotes}, gt=True)
            await self.redis.expire(key, int(timedelta(days=9).total_seconds()))
            above = [
                await self.redis.zcount(
                    f"classifier:trending:{(day - timedelta(days=d)).isoformat()}", f"({upvotes}", "+inf"
                )
                for d in range(7)
            ]
            day_ranks[i] = above[0] + 1
            week_ranks[i] = sum(above) + 1
        return {"day": day_ranks, "week": week_ranks}

    async def score_papers(self, papers: list[Paper], vectors: np.ndarray) -> list[MatchFound]:
        profiles = list(self.profiles.values())
        if not profiles:
            return []
        trending = await self.trending_ranks(papers) if any(p.subscription.trending for p in profiles) else None
        matches: list[Match] = Scorer(profiles).score(papers, vectors, trending=trending)
        by_id = {p.id: p for p in papers}
        out = []
        for match in matches:
            if await claim_once(self.redis, f"classifier:match:{match.subscription_id}:{match.paper_id}"):
                sub = self.profiles[match.subscription_id].subscription
                out.append(
                    MatchFound(
                        subscription_id=sub.id,
                        owner=sub.owner,
                        paper=by_id[match.paper_id],
                        score=match.score,
                        reasons=match.reasons,
                        trending_rank=match.trending_rank,
                    )
                )
        return out
