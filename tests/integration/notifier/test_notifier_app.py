"""The notifier as it runs: its router on a real broker plus its loops, fed MatchFound events on ``matches``."""

from __future__ import annotations

import asyncio
import contextlib
import email
from datetime import UTC, datetime, time, timedelta
from email import policy
from pathlib import Path

import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from standardwebhooks import Webhook

from services.notifier.app import build_router
from services.notifier.intake import Intake
from services.notifier.runtime import delivery_loop
from shared.consumer import ensure_groups
from shared.events import MatchFound, Stream, SubscriptionChanged
from shared.storage import SubscriptionStore
from shared.subscription import Channels, Schedule
from tests.integration.notifier.conftest import stream_results, wait_for
from tests.unit.notifier.notifier_papers import SECRET, endpoint, hf_papers, listing_papers, subscription


@contextlib.asynccontextmanager
async def notifier(settings):
    broker = RedisBroker(settings.redis_url)
    broker.include_router(build_router(settings))
    loop = None
    async with broker:
        await broker.start()
        loop = asyncio.create_task(delivery_loop(settings))
        try:
            yield broker
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop


def match(sub, paper, score: float = 0.8, event_id: str | None = None) -> MatchFound:
    extra = {"event_id": event_id} if event_id else {}
    return MatchFound(
        subscription_id=sub.id, owner=sub.owner, paper=paper, score=score, reasons=["similar to a seed paper"], **extra
    )


async def test_instant_match_gives_one_mail_and_one_signed_post_even_when_replayed(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    from tests.receiver import Receiver, serve

    await ensure_groups(redis)
    async with serve(Receiver()) as receiver:
        sub = subscription(channels=Channels(email="ada@example.org", webhooks=[endpoint(receiver.url + "/paperwire")]))
        await SubscriptionStore(redis).put(sub)
        settings = settings_for()
        papers = hf_papers(fixtures_dir)
        async with notifier(settings) as broker:
            for paper in papers:
                await broker.publish(match(sub, paper, event_id=f"m-{paper.id}"), stream=Stream.MATCHES)
            await wait_for(lambda: len(receiver.requests) == 3 and len(list(settings.outbox_dir.glob("*.eml"))) == 3)

            async def six_results() -> bool:
                return len(await stream_results(redis)) == 6

            await wait_for(six_results)
            # the classifier replays the first match (a redelivery after a crash): nothing is sent again
            await broker.publish(match(sub, papers[0], event_id=f"m-{papers[0].id}"), stream=Stream.MATCHES)

            async def all_results() -> bool:
                return len(await stream_results(redis)) == 8

            await wait_for(all_results)
        assert len(receiver.requests) == 3
        sent = sorted(Webhook(SECRET).verify(r.body, r.headers)["data"]["papers"][0]["id"] for r in receiver.requests)
        assert sent == sorted(p.id for p in papers)
        assert len(list(settings.outbox_dir.glob("*.eml"))) == 3
        statuses = sorted((r["channel"], r["status"]) for r in await stream_results(redis))
        assert statuses.count(("email", "delivered")) == 3 and statuses.count(("webhook", "delivered")) == 3
        assert statuses.count(("email", "duplicate")) == 1 and statuses.count(("webhook", "duplicate")) == 1
        assert (await redis.xpending(Stream.MATCHES, "notifier"))["pending"] == 0


async def test_daily_digest_collects_ranks_caps_and_is_sent_once(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    await ensure_groups(redis)
    created = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    sub = subscription(
        top_k=5,
        created_at=created,
        schedule=Schedule(mode="daily", at=time(8, 0), timezone="Europe/Paris"),
        channels=Channels(email="lab@example.org"),
    )
    other = subscription(name="gone", schedule=Schedule(mode="daily"), channels=Channels(email="x@example.org"))
    store = SubscriptionStore(redis)
    await store.put(sub)
    await store.put(other)
    papers = listing_papers(fixtures_dir, 12)
    settings = settings_for()
    async with notifier(settings) as broker:
        for i, paper in enumerate(papers):
            await broker.publish(match(sub, paper, score=0.5 + i / 100), stream=Stream.MATCHES)
        await broker.publish(match(other, papers[0]), stream=Stream.MATCHES)
        await store.delete(other.id)
        await broker.publish(
            SubscriptionChanged(subscription_id=other.id, action="deleted"), stream=Stream.SUBSCRIPTIONS
        )
        intake = Intake(redis)

        async def buffered() -> bool:
            return len(await intake.buffered(sub.id)) == 12 and not await intake.buffered(other.id)

        await wait_for(buffered)
        assert list(settings.outbox_dir.glob("*.eml")) == []  # nothing before the slot
        before_slot = datetime(2026, 11, 25, 6, 59, tzinfo=UTC)  # 07:59 in Paris
        assert await intake.digest_tick(before_slot) == 0
        at_slot = before_slot + timedelta(minutes=1)
        assert await intake.digest_tick(at_slot) == 1
        assert await intake.digest_tick(at_slot + timedelta(hours=3)) == 0  # once per slot
        await wait_for(lambda: len(list(settings.outbox_dir.glob("*.eml"))) == 1)
    (eml,) = settings.outbox_dir.glob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "[paperwire] LLM agents: 12 new papers"
    text = parsed.get_body(("plain",)).get_content()
    # ranked by score: the last published (highest score) first; capped at 5 with a note for the other 7
    firsts = [line.split(". ", 1)[1] for line in text.splitlines() if line[:2] in {f"{i}." for i in range(1, 6)}]
    assert firsts == [p.title for p in reversed(papers[-5:])]
    assert "...and 7 more matching papers not shown (top 5 of 12)." in text
    assert await intake.buffered(sub.id) == []
