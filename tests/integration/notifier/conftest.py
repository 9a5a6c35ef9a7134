"""A running delivery worker against the test Redis, with settings small enough for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from faststream.redis.parser.binary import BinaryMessageFormatV1

from services.notifier.runtime import delivery_worker
from services.notifier.settings import NotifierSettings
from services.notifier.worker import DeliveryWorker


def notifier_settings(redis_url: str, tmp_path: Path, **overrides: object) -> NotifierSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "outbox_dir": tmp_path / "outbox",
        "webhook_allowed_networks": ["127.0.0.1/32"],
        "webhook_retry_schedule_s": [0.1, 0.2, 0.3],
        "webhook_timeout_s": 2.0,
        "retry_jitter": 0.0,
        "worker_poll_s": 0.02,
        "slack_min_interval_s": 0.05,
        "PAPERWIRE_PUBLIC_URL": "http://127.0.0.1:8000",
        "PAPERWIRE_LINK_SECRET": "integration-link-secret",
        "claim_idle_ms": 300,
        "claim_poll_ms": 50,
        "read_block_ms": 50,
    }
    return NotifierSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def running(settings: NotifierSettings) -> AsyncIterator[DeliveryWorker]:
    async with delivery_worker(settings) as worker:
        task = asyncio.create_task(worker.run_forever())
        try:
            yield worker
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(predicate: Callable[[], Awaitable[bool] | bool], limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def settings_for(clean_redis: str, tmp_path: Path) -> Callable[..., NotifierSettings]:
    def make(**overrides: object) -> NotifierSettings:
        return notifier_settings(clean_redis, tmp_path, **overrides)

    return make


async def stream_results(redis: aioredis.Redis, stream: str = "deliveries") -> list[dict]:
    """DeliveryResults as FastStream wrote them (its binary envelope around the JSON body)."""
    out = []
    for _, fields in await redis.xrange(stream):
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
        out.append(json.loads(body))
    return out
