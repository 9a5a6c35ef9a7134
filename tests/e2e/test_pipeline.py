"""The whole pipeline on real parts: real Redis, recorded real arXiv/HF responses, the real model,
a local webhook receiver verified with the `standardwebhooks` package, and the email outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import HttpUrl
from standardwebhooks import Webhook

from paperwire.demo import EXAMPLE_SUBSCRIPTIONS, demo_environment, demo_routes, wait_until_idle
from paperwire.replay import ReplayServer, WebhookReceiver
from paperwire.runner import pipeline_app
from paperwire.subscriptions_file import load_subscriptions, read_subscriptions

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Read by hand from the recordings: "LLMs Improving LLMs: Agentic Discovery for Test-Time Scaling" (arXiv API,
# cat:cs.CL) and "Beyond Semantic Similarity: Rethinking Retrieval for Agentic Search via Direct Corpus
# Interaction" (Hugging Face daily papers, 86 upvotes): both match the example subscription's keyword query.
EXPECTED = {"2605.08083", "2605.05242"}
# Off-topic papers from the same responses (robot manipulation, algebraic topology layers).
OFF_TOPIC = {"2606.13677", "2606.13568"}


@pytest.fixture(scope="module")
def exported_model() -> None:
    subprocess.run([sys.executable, "-m", "paperwire.cli", "model", "export"], check=True, cwd=ROOT)


def delivered_ids(receiver: WebhookReceiver) -> list[str]:
    ids = []
    for hook in receiver.received:
        data = json.loads(hook.body)["data"]
        papers = data.get("papers") or [data["paper"]]
        ids += [p["id"] for p in papers]
    return ids


def outbox_ids(outbox: Path) -> list[str]:
    ids = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content()
        ids += [pid for pid in EXPECTED | OFF_TOPIC if f"arxiv.org/abs/{pid}" in text]
    return ids


async def run_until_idle(redis_url: str, limit_s: float = 150) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    app = pipeline_app(redis_url)
    try:
        async with app:
            assert await wait_until_idle(redis, time.monotonic() + limit_s), "pipeline did not go idle"
    finally:
        await redis.aclose()


async def test_papers_travel_from_sources_to_webhook_and_email_exactly_once(
    clean_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exported_model: None
) -> None:
    with ReplayServer(demo_routes()) as replay, WebhookReceiver() as receiver:
        for key, value in demo_environment(tmp_path, replay.url).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("REDIS_URL", clean_redis)
        subscriptions = read_subscriptions(EXAMPLE_SUBSCRIPTIONS)
        for endpoint in subscriptions[0].channels.webhooks:
            endpoint.url = HttpUrl(receiver.url)
        await load_subscriptions(clean_redis, subscriptions)

        await run_until_idle(clean_redis)

        assert any("/api/query" in r for r in replay.requests)
        assert any("/api/daily_papers" in r for r in replay.requests)
        secret = subscriptions[0].channels.webhooks[0].secret
        for hook in receiver.received:
            Webhook(secret).verify(hook.body, hook.headers)  # raises on a bad signature
        webhook_ids = Counter(delivered_ids(receiver))
        assert EXPECTED <= webhook_ids.keys()
        assert not OFF_TOPIC & webhook_ids.keys()
        assert max(webhook_ids.values()) == 1, f"a paper was delivered twice: {webhook_ids}"

        mail_ids = Counter(outbox_ids(tmp_path / "outbox"))
        assert EXPECTED <= mail_ids.keys()
        assert max(mail_ids.values()) == 1

        # A restart polls the same sources again: nothing new, so nothing is delivered again.
        before = len(receiver.received), len(list((tmp_path / "outbox").glob("*.eml")))
        await run_until_idle(clean_redis)
        await asyncio.sleep(0.5)
        assert (len(receiver.received), len(list((tmp_path / "outbox").glob("*.eml")))) == before
