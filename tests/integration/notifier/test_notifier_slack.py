"""Slack incoming webhooks against a local HTTP server: valid Block Kit, split digests, pacing, 429."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis
from slack_sdk.models.blocks import Block

from services.notifier.email_render import Links
from services.notifier.jobs import alert_jobs, digest_jobs
from services.notifier.queue import DeliveryQueue
from services.notifier.senders import PinnedPoster, SlackSender
from shared.paper import Paper
from shared.storage import SubscriptionStore
from shared.subscription import Channels, Schedule
from tests.integration.notifier.conftest import running, stream_results, wait_for
from tests.receiver import Received, Receiver, serve
from tests.unit.notifier.notifier_papers import HF_JUNE, hf_papers, items, subscription


async def test_split_digest_is_paced_and_429_is_honoured(
    redis: aioredis.Redis, settings_for, fixtures_dir: Path
) -> None:
    def slack(request: Received, index: int):
        if index == 1:  # the second message is rate limited once
            return 429, {"retry-after": "1"}, b"rate_limited"
        return 200, {}, b"ok"

    async with serve(Receiver(slack)) as receiver:
        sub = subscription(
            top_k=30,
            schedule=Schedule(mode="daily"),
            channels=Channels(slack_webhook_url=receiver.url + "/services/T000/B000/XXXX"),
        )
        await SubscriptionStore(redis).put(sub)
        (job,) = digest_jobs(
            sub, items(hf_papers(fixtures_dir, HF_JUNE)), datetime(2026, 6, 9, 8, tzinfo=UTC), heartbeat=False
        )
        await DeliveryQueue(redis).enqueue(job, 0)
        settings = settings_for(slack_min_interval_s=0.3)
        async with running(settings):
            await wait_for(lambda: len(receiver.bodies(status=200)) == 3)

            async def recorded() -> bool:
                return len(await stream_results(redis)) == 1

            await wait_for(recorded)
    statuses = [r.status for r in receiver.requests]
    assert statuses == [200, 429, 200, 200]
    # the retried message waited the Retry-After (1 s); the others kept the per-webhook pace
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[0] >= 0.3 * 0.9 and gaps[1] >= 1.0 * 0.9 and gaps[2] >= 0.3 * 0.9
    accepted = [json.loads(r.body) for r in receiver.bodies(status=200)]
    assert [m["text"] for m in accepted] == [f"LLM agents: 30 new papers ({i}/3)" for i in (1, 2, 3)]
    ids = []
    for message in accepted:
        assert len(message["blocks"]) <= 50
        for raw in message["blocks"]:
            assert Block.parse(raw).to_dict() == raw
            if raw["type"] == "section" and "arxiv.org/abs/" in raw["text"]["text"]:
                ids.append(raw["text"]["text"].split("arxiv.org/abs/")[1].split("|")[0])
    assert len(ids) == 30 and len(set(ids)) == 30
    (result,) = await stream_results(redis)
    assert result["status"] == "delivered" and result["channel"] == "slack" and len(result["paper_ids"]) == 30
    assert "hooks" not in result["target"] and result["target"].startswith("slack-")


@pytest.mark.parametrize(
    ("caps", "posts"),
    [({"slack_max_inline_retries": 3}, 4), ({"slack_inline_wait_budget_s": 0.12}, 3)],
    ids=["retry-cap", "wait-budget"],
)
async def test_rate_limited_send_gives_up_inline_and_leaves_it_to_the_backoff(
    redis: aioredis.Redis, settings_for, caps: dict[str, float], posts: int
) -> None:
    def slack(request: Received, index: int):
        return (429, {"retry-after": "0.05"}, b"rate_limited") if index < 50 else (200, {}, b"ok")

    async with serve(Receiver(slack)) as receiver:
        sub = subscription(channels=Channels(slack_webhook_url=receiver.url + "/services/T000/B000/XXXX"))
        (job,) = alert_jobs(sub, items([Paper(id="2401.00001", title="T", abstract="A")])[0])
        settings = settings_for(slack_min_interval_s=0.01, **({"slack_max_inline_retries": 100} | caps))
        async with httpx.AsyncClient(trust_env=False) as client:
            poster = PinnedPoster(settings, client)
            outcome = await SlackSender(settings, Links("http://x", "k"), poster, redis).send(job, sub)
    assert (outcome.kind, outcome.status_code, outcome.throttle) == ("retry", 429, True)
    assert outcome.retry_after == 0.05
    assert len(receiver.requests) == posts


async def test_the_pace_holds_across_replicas(redis: aioredis.Redis, settings_for) -> None:
    """Two notifier replicas posting to one Slack webhook at once still keep one post per interval between them."""
    arrived: list[float] = []

    def slack(request: Received, index: int):
        arrived.append(time.monotonic())
        return 200, {}, b"ok"

    async with serve(Receiver(slack)) as receiver:
        sub = subscription(channels=Channels(slack_webhook_url=receiver.url + "/services/T000/B000/XXXX"))
        papers = [Paper(id=f"2401.0000{i}", title="T", abstract="A") for i in range(1, 7)]
        jobs = [job for item in items(papers) for job in alert_jobs(sub, item)]
        settings = settings_for(slack_min_interval_s=0.2)
        async with httpx.AsyncClient(trust_env=False) as one, httpx.AsyncClient(trust_env=False) as two:
            replicas = [
                SlackSender(settings, Links("http://x", "k"), PinnedPoster(settings, client), redis)
                for client in (one, two)
            ]
            outcomes = await asyncio.gather(*(replicas[i % 2].send(job, sub) for i, job in enumerate(jobs)))
    assert [o.kind for o in outcomes] == ["delivered"] * 6 and len(arrived) == 6
    gaps = np.diff(sorted(arrived))
    assert gaps.min() >= 0.19, f"two posts {gaps.min():.3f} s apart"  # a lower bound: a slow machine only adds


async def test_a_slack_url_to_an_internal_address_is_refused(redis: aioredis.Redis, settings_for) -> None:
    """A Slack webhook URL is user input (the settings page, PATCH): the same SSRF check as any webhook's."""
    sub = subscription(channels=Channels(slack_webhook_url="http://169.254.169.254/latest/meta-data/"))
    (job,) = alert_jobs(sub, items([Paper(id="2401.00001", title="T", abstract="A")])[0])
    settings = settings_for()
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await SlackSender(settings, Links("http://x", "k"), PinnedPoster(settings, client), redis).send(
            job, sub
        )
    assert outcome.kind == "refused" and "not a public address" in (outcome.error or "")
