"""Seed papers the system has never seen are looked up through the fetcher's id_list lookup, embedded, and
become part of the subscription's profile, across all five services."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import HttpUrl

from paperwire.demo import FIXTURES, demo_environment, demo_routes, wait_until_idle
from paperwire.replay import ReplayServer, Route, WebhookReceiver
from paperwire.runner import pipeline_app
from paperwire.subscriptions_file import load_subscriptions
from shared.events import MatchFound
from shared.subscription import Channels, Subscription, WebhookEndpoint

pytestmark = pytest.mark.e2e

SEED = "1605.08386"  # "Heat-bath random walks with Markov bases" (math.CO), arxiv.py's recorded id_list response
SEED_RESPONSE = FIXTURES / "arxiv_api" / "arxivpy_id_1605.08386_s0_m100_199195aa31ad.json"
SPACE = "sentence-transformers/all-MiniLM-L6-v2:384"


async def test_unknown_seed_is_fetched_embedded_and_not_sent_back(
    clean_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = [Route("/api/query", SEED_RESPONSE, {"id_list": SEED}), *demo_routes()]
    with ReplayServer(routes) as replay, WebhookReceiver() as receiver:
        for key, value in demo_environment(tmp_path, replay.url).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("REDIS_URL", clean_redis)
        monkeypatch.setenv("FETCHER_ARXIV_MIN_INTERVAL_S", "0.2")
        subscription = Subscription(
            id="markov",
            owner="demo",
            name="random walks on lattices",
            seed_papers=[f"https://arxiv.org/abs/{SEED}v2"],
            channels=Channels(webhooks=[WebhookEndpoint(url=HttpUrl(receiver.url), secret="whsec_" + "A" * 32)]),
        )
        await load_subscriptions(clean_redis, [subscription])
        redis = aioredis.Redis.from_url(clean_redis)
        try:
            async with pipeline_app(clean_redis):
                assert await wait_until_idle(redis, time.monotonic() + 150)
            assert any(f"id_list={SEED}" in request for request in replay.requests)
            assert await redis.hexists(f"vectors:{SPACE}", SEED), "the seed was fetched but never embedded"
            stored = await redis.get(f"paper:{SEED}")
            assert stored and b"Heat-bath random walks with Markov bases" in stored
            matched = [MatchFound.model_validate_json(b) for b in await _match_bodies(redis)]
            assert SEED not in {m.paper.id for m in matched}, "a subscriber's own seed paper came back as news"
        finally:
            await redis.aclose()


async def _match_bodies(redis: aioredis.Redis) -> list[bytes]:
    from faststream.redis.parser import BinaryMessageFormatV1

    bodies = []
    for _id, fields in await redis.xrange("matches"):
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
        bodies.append(body)
    return bodies
