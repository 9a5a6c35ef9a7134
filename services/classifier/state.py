"""The classifier's live state: profiles of active subscriptions, the background sample, feedback.

Redis keys it owns (prefix ``classifier:``): ``classifier:background:{space}`` (list of recent
vectors, float16, newest first, each paper at most once) with ``classifier:background:{space}:ids`` (their paper
ids, in step with it) and ``classifier:background:{space}:members`` (the same ids as a set),
``classifier:feedback:{sub}`` (hash paper id -> like/dislike),
``classifier:model:{sub}`` (the trained model, JSON) with ``classifier:model:{sub}:inputs`` (the digest of what
it was trained on, so a restart uses it again instead of fitting), ``classifier:trending:{YYYY-MM-DD}`` (sorted set
paper id -> Hugging Face upvotes of that Daily Papers day) and ``classifier:trending:day:{paper}`` (the day a
paper is listed on): the trending board, written only from papers.trending and read for every trending rank.
``classifier:awaiting:{paper}`` (set of subscriptions waiting for that seed or rated paper's vector).
Matches are claimed once per subscription + paper by the event that brought the paper, so another event about it
does not announce it again, while the same event redelivered (after a crash or a failed publish) publishes its
matches again; the notifier delivers each once.

Every replica keeps every profile, because each scores its share of papers.embedded against all subscriptions.
So each replica reads the ``subscriptions`` and ``feedback`` streams itself (``sync``: plain XREAD from where it
last looked, no consumer group) and rebuilds the changed profiles from the store; the classifier's consumer group
on those streams only does what must happen once per change (asking the fetcher for missing papers).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from services.classifier.embedding import TextModel, embed_cached
from services.classifier.learner import model_from_dict
from services.classifier.profiles import build_profile, inputs_digest
from services.classifier.scoring import Match, Profile, Scorer, TrendingRanks
from shared.events import FeedbackGiven, MatchFound, PaperEmbedded, Stream, UpvotesChanged, entry_body
from shared.paper import Paper
from shared.storage import PIPELINE_CHUNK, PaperStore, SubscriptionStore, claim_many, reply_text
from shared.subscription import Subscription

log = structlog.get_logger("paperwire.classifier")

TRENDING_TTL_S = int(timedelta(days=9).total_seconds())  # a week window back from any day still listed
TRENDING_WINDOW_DAYS = {"day": 1, "week": 7}
AWAITING_TTL_S = int(timedelta(days=14).total_seconds())  # a paper the fetcher never finds stops being waited for
SYNCED = (str(Stream.SUBSCRIPTIONS), str(Stream.FEEDBACK))
# KEYS[1] a paper's awaiting set, ARGV[1] the subscription, ARGV[2] the TTL: set only when the set is new, so a
# paper the fetcher never found is asked for again after the TTL however often the subscription is edited.
_AWAIT = """
local new = redis.call('EXISTS', KEYS[1]) == 0
local added = redis.call('SADD', KEYS[1], ARGV[1])
if new then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return added
"""
# KEYS[1] the background's vectors, KEYS[2] their paper ids (pushed and trimmed with them, so ids[i] is the paper of
# vectors[i]; a list older than the ids has vectors without one at its tail, which age out), KEYS[3] the ids as a set.
# ARGV[1] the size kept, then paper id, vector pairs. A paper already in the background keeps its first vector (and
# place); the ids trimmed off the end leave the set, so a paper that aged out can come back. Returns how many joined.
_ADD_BACKGROUND = """
local size = tonumber(ARGV[1])
if redis.call('LLEN', KEYS[2]) > redis.call('LLEN', KEYS[1])
    or redis.call('SCARD', KEYS[3]) ~= redis.call('LLEN', KEYS[2]) then
  redis.call('DEL', KEYS[2], KEYS[3])  -- the background was cleared or edited by hand: its ids start again
end
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('SADD', KEYS[3], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[1], ARGV[i + 1])
    redis.call('LPUSH', KEYS[2], ARGV[i])
    added = added + 1
  end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[2], size, -1)) do redis.call('SREM', KEYS[3], id) end
redis.call('LTRIM', KEYS[1], 0, size - 1)
redis.call('LTRIM', KEYS[2], 0, size - 1)
return added
"""
# KEYS[1] the subscription, the rest what the classifier keeps for it: deleted only while the subscription is.
_DELETE_IF_GONE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = 0
for i = 2, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
return n
"""


class ClassifierState:
    def __init__(
        self,
        redis: aioredis.Redis,
        space: str,
        background_size: int = 2000,
        cache=None,  # noqa: ANN001
        resync_after_s: float = 36 * 3600.0,
        text_model: TextModel | None = None,
    ) -> None:
        self.redis = redis
        self.space = space
        self.text_model = text_model  # interest texts; None: the configured one
        self.dims = int(space.rsplit(":", 1)[1])
        self.background_size = background_size
        self.cache = cache
        # A replica that has not looked for this long may have missed changes the streams' retention trimmed
        # meanwhile (half of it by default): it loads every subscription again instead.
        self.resync_after_s = resync_after_s
        self.profiles: dict[str, Profile] = {}
        self._scorer: Scorer | None = None  # compiled from self.profiles: patched or dropped when they change
        # The scorer scores in a worker thread (a batch at 100,000 subscriptions takes seconds, which must not
        # stall the event loop: stream reads, the consumer's heartbeat) and is patched on the loop: one at a time.
        self._scoring = asyncio.Lock()
        # Every handler syncs first. Two syncs at once could apply changes out of order (an older rebuild, a fit
        # of a second, landing after a newer pause): one at a time, in stream order.
        self._syncing = asyncio.Lock()
        self.loaded = False
        self._seen: dict[str, str] = {}  # stream -> the last entry this replica applied
        self._synced_at = 0.0

    async def await_papers(self, subscription_id: str, paper_ids: list[str]) -> list[str]:
        """Remember (in Redis, so a restart or another replica knows) that a subscription lacks these papers'
        vectors: seeds or rated papers to ask the fetcher for. Returns those it was not waiting for already."""
        pipe = self.redis.pipeline(transaction=False)
        for paper_id in paper_ids:
            pipe.eval(_AWAIT, 1, _awaiting_key(paper_id), subscription_id, AWAITING_TTL_S)
        added = await pipe.execute()
        return [paper_id for paper_id, new in zip(paper_ids, added, strict=True) if new]

    async def stop_awaiting(self, subscription_id: str, paper_ids: list[str]) -> None:
        """Undo :meth:`await_papers` when asking the fetcher failed, so the retry asks again."""
        pipe = self.redis.pipeline(transaction=False)
        for paper_id in paper_ids:
            pipe.srem(_awaiting_key(paper_id), subscription_id)
        await pipe.execute()

    async def waiting_for(self, paper_ids: list[str]) -> list[str]:
        """The subscriptions waiting for one of these papers (``done_waiting`` once they were told)."""
        pipe = self.redis.pipeline(transaction=False)
        for paper_id in paper_ids:
            pipe.smembers(_awaiting_key(paper_id))
        return sorted({reply_text(member) for members in await pipe.execute() for member in members})

    async def done_waiting(self, paper_ids: list[str]) -> None:
        if paper_ids:
            await self.redis.delete(*(_awaiting_key(p) for p in paper_ids))

    async def missing_papers(self, paper_ids: list[str]) -> list[str]:
        """The papers of ``paper_ids`` with no stored vector in this space (never fetched, or not embedded yet)."""
        known = await PaperStore(self.redis).get_vectors(self.space, paper_ids)
        return [p for p in paper_ids if p not in known]

    async def background(self) -> np.ndarray:
        raws = await self.redis.lrange(f"classifier:background:{self.space}", 0, self.background_size - 1)
        if not raws:
            return np.zeros((0, self.dims), np.float32)
        return np.stack([np.frombuffer(r, dtype="<f2").astype(np.float32) for r in raws])

    async def add_background(self, paper_ids: Sequence[str], vectors: Sequence[np.ndarray] | np.ndarray) -> int:
        """Newest first, capped at ``background_size``, each paper at most once: one script for a whole batch.

        A paper arrives several times (new from one source, merged from the next ones, updated for a new
        version): only its first vector joins, so the sample the models are calibrated on does not over-weight
        papers listed by several sources. The first is kept rather than the latest because its place in the list
        is its age (replacing would mean finding it in the list, a scan per event) and a new version's vector is
        nearly the same point. The check is in Redis, atomic with the push, so replicas and restarts share it.
        Returns how many papers joined."""
        if len(paper_ids) != len(vectors):
            raise ValueError(f"{len(paper_ids)} paper ids for {len(vectors)} vectors")
        if not len(paper_ids):
            return 0
        key = f"classifier:background:{self.space}"
        args: list[str | bytes | int] = [self.background_size]
        for paper_id, vector in zip(paper_ids, vectors, strict=True):
            args += [paper_id, np.asarray(vector, dtype="<f2").tobytes()]
        return int(await self.redis.eval(_ADD_BACKGROUND, 3, key, f"{key}:ids", f"{key}:members", *args))

    async def refresh(self, subscription: Subscription, reuse: bool = False) -> Profile | None:
        """Rebuild one subscription's profile (interests embedded, seeds and ratings from stored vectors).

        ``reuse`` (loading at start): a stored model trained on the same interests, seeds and ratings is used as
        it is, not fitted again on today's background, so a restart at 100,000 subscriptions costs reads and a
        matrix product each, not 100,000 fits. A change (``sync``) always fits, warm-started from it.
        """
        if not subscription.active:
            await self.remove(subscription.id)
            return None
        profile = await self._build(subscription, reuse)
        async with self._scoring:
            self.profiles[subscription.id] = profile
            if self._scorer is not None:
                self._scorer.put(profile)
        return profile

    async def _build(self, subscription: Subscription, reuse: bool) -> Profile:
        """The profile of an active subscription, its model fitted (or reused) and stored; not put in place."""
        store = PaperStore(self.redis)
        # The record holds the api's ratings in the order they were given; the hash adds those known only from
        # feedback events, and a late retry of an older event cannot overturn the record.
        stored_ratings = await self.redis.hgetall(f"classifier:feedback:{subscription.id}")
        labels = {reply_text(k): reply_text(v) for k, v in stored_ratings.items()}
        labels.update(dict.fromkeys(subscription.liked, "like"))
        labels.update(dict.fromkeys(subscription.disliked, "dislike"))
        liked_ids = [p for p, label in labels.items() if label == "like"]
        disliked_ids = [p for p, label in labels.items() if label == "dislike"]
        ids = [*subscription.seed_papers, *liked_ids, *disliked_ids]
        vectors = await store.get_vectors(self.space, ids)
        papers = await store.get_many([s for s in subscription.seed_papers if s in vectors])
        seeds = {
            s: (papers[s].title if s in papers else "", vectors[s]) for s in subscription.seed_papers if s in vectors
        }
        liked = np.array([vectors[p] for p in liked_ids if p in vectors]).reshape(-1, self.dims)
        disliked = np.array([vectors[p] for p in disliked_ids if p in vectors]).reshape(-1, self.dims)
        interests = (
            await asyncio.to_thread(embed_cached, subscription.interests, self.cache, self.text_model)
            if subscription.interests
            else np.zeros((0, self.dims), np.float32)
        )
        model_key = _model_key(subscription.id)
        raw_model, stored_inputs = await self.redis.mget(model_key, f"{model_key}:inputs")
        warm = model_from_dict(json.loads(raw_model)) if raw_model else None
        inputs = inputs_digest(
            self.space,
            subscription.interests,
            seeds,
            {p: vectors[p] for p in liked_ids if p in vectors},
            {p: vectors[p] for p in disliked_ids if p in vectors},
        )
        fitted = warm if reuse and stored_inputs is not None and reply_text(stored_inputs) == inputs else None
        background = await self.background()
        profile = await asyncio.to_thread(
            build_profile, subscription, interests, seeds, liked, disliked, background, warm, fitted
        )
        if profile.model is not None and fitted is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(model_key, json.dumps(profile.model.to_dict()))
                pipe.set(f"{model_key}:inputs", inputs)
                await pipe.execute()
        return profile

    async def load_all(self) -> None:
        async with self._syncing:
            await self._load_all()

    async def _load_all(self) -> None:
        """Every active subscription from the store; the streams are read from here on (their position is taken
        first, so a change made while loading is applied again by ``sync`` rather than missed).

        The new profiles are built on the side and put in place at once, so nothing ever sees a partial set.
        Handlers wait for a periodic reload (minutes at 100,000 subscriptions, every ``resync_after_s``) in their
        ``sync``, then apply the changes made meanwhile: scoring with the old set instead would miss subscriptions
        created or edited during it, for good (the batch is acked). A subscription that fails to build is logged
        and left out; a Redis error stops the reload (it runs again at the next sync)."""
        seen = {}
        for stream in SYNCED:
            last = await self.redis.xrevrange(stream, "+", "-", count=1)
            seen[stream] = reply_text(last[0][0]) if last else "0-0"
        profiles: dict[str, Profile] = {}
        for subscription in await SubscriptionStore(self.redis).active():
            try:
                profiles[subscription.id] = await self._build(subscription, reuse=True)
            except RedisError:
                raise
            except Exception:
                log.exception("subscription_not_loaded", subscription_id=subscription.id)
        async with self._scoring:
            self.profiles, self._scorer = profiles, None
        self._seen, self._synced_at = seen, time.monotonic()
        await self._forget_deleted()
        self.loaded = True

    async def _forget_deleted(self) -> None:
        """Drop stored models and ratings of subscriptions deleted while no replica was running (``sync`` drops
        those deleted later): nothing else would ever remove them. One script per id re-checks that the
        subscription is still absent, so one re-created meanwhile under the same id keeps its keys."""
        names: set[str] = set()
        for prefix in ("classifier:model:", "classifier:feedback:"):
            async for key in self.redis.scan_iter(match=f"{prefix}*", count=1000):
                names.add(reply_text(key).removeprefix(prefix).removesuffix(":inputs"))
        ordered = sorted(names)
        for start in range(0, len(ordered), PIPELINE_CHUNK):  # pipelined
            pipe = self.redis.pipeline(transaction=False)
            for subscription_id in ordered[start : start + PIPELINE_CHUNK]:
                keys = [f"subscription:{subscription_id}", *_owned_keys(subscription_id)]
                pipe.eval(_DELETE_IF_GONE, len(keys), *keys)
            await pipe.execute()

    async def sync(self) -> list[str]:
        """Apply the subscription changes and ratings published since this replica last looked (by any api,
        CLI or replica); returns the ids of the subscriptions rebuilt."""
        async with self._syncing:
            return await self._sync()

    async def _sync(self) -> list[str]:
        reloaded: list[str] = []
        if not self.loaded or time.monotonic() - self._synced_at > self.resync_after_s:
            await self._load_all()  # then the changes made while it ran, from the positions it took first
            reloaded = sorted(self.profiles)
        before = dict(self._seen)
        try:
            changed = await self._read_changes()
            self._synced_at = time.monotonic()
            for subscription_id in sorted(changed):
                await self._apply(subscription_id)
        except RedisError:
            self._seen = before  # read these changes again at the next sync: applying them twice is harmless
            raise
        return sorted(set(reloaded) | changed)

    async def _read_changes(self) -> set[str]:
        """The subscriptions changed or rated since ``_seen`` (moved past them); ratings recorded on the way."""
        changed: set[str] = set()
        while reply := await self.redis.xread(dict(self._seen), count=500):
            for stream, entries in reply:
                name = reply_text(stream)
                for entry_id, fields in entries:
                    self._seen[name] = reply_text(entry_id)
                    body = entry_body(fields) or {}
                    if not isinstance(body.get("subscription_id"), str):
                        continue  # not an event: its consumer group dead-letters it
                    changed.add(body["subscription_id"])
                    if name == str(Stream.FEEDBACK):
                        try:
                            await self.record_feedback(FeedbackGiven.model_validate(body))
                        except ValueError:
                            continue
        return changed

    async def _apply(self, subscription_id: str) -> None:
        """One subscription as stored now: rebuilt, removed, or (unreadable, unfittable) logged and left out, so
        it is not scored with a profile its record may not match and the other changes still apply."""
        try:
            subscription = await SubscriptionStore(self.redis).get(subscription_id)
            if subscription is None:
                await self.remove(subscription_id)
                await self.redis.delete(*_owned_keys(subscription_id))
            else:
                await self.refresh(subscription)
        except RedisError:
            raise
        except Exception:
            log.exception("subscription_not_applied", subscription_id=subscription_id)
            await self.remove(subscription_id)

    async def remove(self, subscription_id: str) -> None:
        async with self._scoring:
            if self.profiles.pop(subscription_id, None) is not None and self._scorer is not None:
                self._scorer.remove(subscription_id)

    def scorer(self) -> Scorer:
        """Every active profile, compiled once; a changed, new or removed subscription recompiles only its chunk."""
        if self._scorer is None:
            self._scorer = Scorer(list(self.profiles.values()))
        return self._scorer

    async def record_feedback(self, event: FeedbackGiven) -> None:
        await self.redis.hset(f"classifier:feedback:{event.subscription_id}", event.paper_id, event.label)

    async def score_events(self, events: list[PaperEmbedded]) -> list[MatchFound]:
        """Score embedded papers against every profile in one pass; the matches new to each subscription come back
        (and those these same events claimed before: their redelivery publishes them again).

        Papers from another vector space are skipped; a paper in the batch twice (a redelivery) is scored once. A
        paper its authors withdrew joins the background (it is still a paper of the field) but matches no one.
        """
        other = [e for e in events if e.manifest.space != self.space]
        if other:  # an old model's events, replayed or left over: never compared with this space's vectors
            log.warning("other_vector_space", papers=len(other), space=other[0].manifest.space, ours=self.space)
        ours = [e for e in events if e.manifest.space == self.space]
        ids: dict[str, list[str]] = {}  # every event of a paper in the batch: a redelivered one's claims are its own
        for event in reversed(ours):
            ids.setdefault(event.paper.id, []).append(event.event_id)
        events = list({e.paper.id: e for e in ours}.values())
        if not events:
            return []
        await self.sync()
        vectors = np.stack([event.array() for event in events])
        await self.add_background([event.paper.id for event in events], vectors)
        return await self.score_papers(
            [event.paper for event in events], vectors, owners=[tuple(ids[event.paper.id]) for event in events]
        )

    async def record_upvotes(self, event: UpvotesChanged) -> None:
        """Put a paper's count on its day's board; GT keeps a late-redelivered older count from lowering it."""
        day_key = f"classifier:trending:day:{event.paper_id}"
        listed = await self.redis.get(day_key)
        pipe = self.redis.pipeline(transaction=True)
        if listed is not None and listed.decode() != event.daily_date.isoformat():
            pipe.zrem(f"classifier:trending:{listed.decode()}", event.paper_id)  # listed on another day now
        key = f"classifier:trending:{event.daily_date.isoformat()}"
        pipe.zadd(key, {event.paper_id: event.upvotes}, gt=True)
        pipe.expire(key, TRENDING_TTL_S)
        pipe.set(day_key, event.daily_date.isoformat(), ex=TRENDING_TTL_S)
        await pipe.execute()

    async def trending_ranks(self, paper_ids: list[str]) -> TrendingRanks:
        """Each paper's rank on the board now: 1 + papers with more upvotes on its day (or its day and the six
        before, for "week"); 0 when the board does not list it (no papers.trending event for it yet).

        Ranks are read when a paper is scored or its count moves, so a paper that climbs later is ranked
        then; a paper that another one overtakes keeps the notification it already had.
        """
        ranks = {window: np.zeros(len(paper_ids), np.int64) for window in TRENDING_WINDOW_DAYS}
        for i, paper_id in enumerate(paper_ids):
            listed = await self.redis.get(f"classifier:trending:day:{paper_id}")
            if listed is None:
                continue
            day = date.fromisoformat(listed.decode())
            upvotes = await self.redis.zscore(f"classifier:trending:{day.isoformat()}", paper_id)
            if upvotes is None:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for d in range(max(TRENDING_WINDOW_DAYS.values())):
                pipe.zcount(f"classifier:trending:{(day - timedelta(days=d)).isoformat()}", f"({upvotes}", "+inf")
            above = await pipe.execute()
            for window, days in TRENDING_WINDOW_DAYS.items():
                ranks[window][i] = sum(above[:days]) + 1
        return ranks

    async def upvotes_changed(self, event: UpvotesChanged) -> list[MatchFound]:
        """Record the count, then rank the paper for trending subscriptions if it is already embedded.

        A paper not embedded yet is ranked when its papers.embedded event is scored, from the board this wrote.
        """
        await self.record_upvotes(event)
        await self.sync()
        trending = [p for p in self.profiles.values() if p.subscription.trending is not None]
        if not trending:
            return []
        store = PaperStore(self.redis)
        paper = await store.get(event.paper_id)
        vectors = await store.get_vectors(self.space, [event.paper_id])
        if paper is None or event.paper_id not in vectors:
            return []
        return await self.score_papers([paper], vectors[event.paper_id][None, :], trending, owners=[(event.event_id,)])

    async def score_papers(
        self,
        papers: list[Paper],
        vectors: np.ndarray,
        profiles: list[Profile] | None = None,
        owners: list[tuple[str, ...]] | None = None,
    ) -> list[MatchFound]:
        """Matches of ``papers`` against ``profiles`` (default: all), each claimed once per subscription + paper.

        ``owners``: the ids of the events that brought each paper (the last first). A match claimed by one of them
        counts as new again, so an event's redelivery (after a crash or a failed publish) publishes it, and the
        notifier sends it once; another event about the paper (a new version, an upvote) finds it claimed. A
        subscription's own seed paper is never news to it, so it is not matched, and a withdrawn paper matches no one
        (whichever path brings it: its embedding, its upvotes, a refreshed profile).
        """
        alive = [i for i, paper in enumerate(papers) if not paper.withdrawn]
        if len(alive) < len(papers):
            papers, vectors = [papers[i] for i in alive], vectors[alive]
            owners = [owners[i] for i in alive] if owners is not None else None
        if not papers:
            return []
        async with self._scoring:
            scorer = self.scorer() if profiles is None else Scorer(profiles)
            if not scorer.profiles:
                return []
            wants_trending = await asyncio.to_thread(scorer.wants_trending)  # may compile chunks
            trending = await self.trending_ranks([p.id for p in papers]) if wants_trending else None
            matches: list[Match] = await asyncio.to_thread(scorer.score, papers, vectors, trending=trending)
            subscriptions = {m.subscription_id: scorer.subscription(m.subscription_id) for m in matches}
        by_id = {p.id: p for p in papers}
        owner_of = dict(zip((p.id for p in papers), owners, strict=True)) if owners is not None else None
        news = [m for m in matches if m.paper_id not in subscriptions[m.subscription_id].seed_papers]
        keys = [_match_key(m.subscription_id, m.paper_id) for m in news]
        claimed = await claim_many(
            self.redis, keys, owners=[owner_of[m.paper_id] for m in news] if owner_of is not None else None
        )
        return [
            MatchFound(
                subscription_id=match.subscription_id,
                owner=subscriptions[match.subscription_id].owner,
                paper=by_id[match.paper_id],
                score=match.score,
                reasons=match.reasons,
                trending_rank=match.trending_rank,
            )
            for match, first in zip(news, claimed, strict=True)
            if first
        ]


def _awaiting_key(paper_id: str) -> str:
    return f"classifier:awaiting:{paper_id}"


def _model_key(subscription_id: str) -> str:
    return f"classifier:model:{subscription_id}"


def _owned_keys(subscription_id: str) -> list[str]:
    """What the classifier keeps per subscription, removed with it."""
    model = _model_key(subscription_id)
    return [model, f"{model}:inputs", f"classifier:feedback:{subscription_id}"]


def _match_key(subscription_id: str, paper_id: str) -> str:
    return f"classifier:match:{subscription_id}:{paper_id}"
