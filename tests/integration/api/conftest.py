"""Api test fixtures: the real app (lifespan run) on a flushed real Redis, and the same app served over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from services.api.app import create_api
from tests.integration.api.api_helpers import LiveServer, api_settings


@pytest.fixture
async def api(clean_redis: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(api_settings(clean_redis))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def live_api(clean_redis: str) -> Iterator[LiveServer]:
    with LiveServer(create_api(api_settings(clean_redis))) as server:
        yield server
