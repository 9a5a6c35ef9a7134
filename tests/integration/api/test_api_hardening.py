"""Crash-safe Redis writes of the api (failed-auth counter, feed secrets), page headers, redacted access log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from services.api.app import create_api
from services.api.store import AuthLimiter, FeedSecrets
from shared.links import sign_link
from tests.integration.api.api_helpers import SPEC, api_settings, free_port, owner_token


class Dies(Exception):
    """The worker is killed or its connection lost at this point."""


@contextlib.contextmanager
def redis_command_replaced(redis: aioredis.Redis, name: str, replacement: Any) -> Iterator[None]:
    """``redis.<name>`` is ``replacement`` inside the block (the crash point under test), the real one after it;
    the ``Dies`` it raises ends the block as the killed worker would end."""
    setattr(redis, name, replacement)
    try:
        with contextlib.suppress(Dies):
            yield
    finally:
        delattr(redis, name)


async def test_failed_auth_counter_always_expires(redis: aioredis.Redis) -> None:
    """INCR and EXPIRE used to be two calls: a failure between them left a counter that blocked forever."""
    limiter = AuthLimiter(redis, limit=3, window_s=60)

    async def lost(*_args: Any, **_kwargs: Any) -> None:
        raise Dies("connection lost")

    with redis_command_replaced(redis, "expire", lost):
        await limiter.failed("10.0.0.1")
    assert 0 < await redis.ttl("api:authfail:10.0.0.1") <= 60

    # a counter left without expiry by the old code is given one at the next failure
    await redis.set("api:authfail:10.0.0.2", 7)
    assert await limiter.failed("10.0.0.2") is not None
    assert 0 < await redis.ttl("api:authfail:10.0.0.2") <= 60


async def test_failed_auth_counter_blocks_after_the_limit(redis: aioredis.Redis) -> None:
    limiter = AuthLimiter(redis, limit=3, window_s=60)
    waits = [await limiter.failed("10.0.0.3") for _ in range(5)]
    assert waits[:3] == [None, None, None]
    assert all(wait is not None and 1 <= wait <= 60 for wait in waits[3:])
    assert await limiter.failed("10.0.0.4") is None  # per client


async def test_feed_secret_survives_a_crash_between_its_two_keys(redis: aioredis.Redis) -> None:
    """The feed key and its reverse key are written together: a crash cannot leave a feed URL that 404s."""
    real_set = redis.set
    calls = 0

    async def dies_on_second_set(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Dies("killed")
        return await real_set(*args, **kwargs)

    feeds = FeedSecrets(redis)
    with redis_command_replaced(redis, "set", dies_on_second_set):
        await feeds.get_or_create("sub1")
    secret = await feeds.get_or_create("sub1")
    assert await feeds.subscription_for(secret) == "sub1"
    assert await feeds.get_or_create("sub1") == secret


async def test_half_written_feed_secret_is_repaired(redis: aioredis.Redis) -> None:
    """The state an older version could leave behind: ``api:feed:{sid}`` without ``api:feedsecret:{secret}``."""
    await redis.set("api:feed:sub2", "half-written-secret")
    feeds = FeedSecrets(redis)
    assert await feeds.get_or_create("sub2") == "half-written-secret"
    assert await feeds.subscription_for("half-written-secret") == "sub2"


async def test_concurrent_feed_secret_creation_agrees(redis: aioredis.Redis) -> None:
    feeds = FeedSecrets(redis)
    secrets = set(await asyncio.gather(*(feeds.get_or_create("sub3") for _ in range(8))))
    assert len(secrets) == 1
    assert await feeds.subscription_for(secrets.pop()) == "sub3"
    assert len(await redis.keys("api:feedsecret:*")) == 1


async def test_html_pages_send_no_referrer_and_are_not_cached(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """Their URLs carry the token: a Referer to a linked site or a shared cache would hand it on."""
    alice = await owner_token(redis, "alice")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    page_url = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    secret = "test-link-secret"
    pages = [
        await api.get(page_url.removeprefix("http://testserver")),
        await api.get(f"/v1/feedback/{sign_link(secret, 'like', sid, '1201.4869')}"),
        await api.get(f"/v1/unsubscribe/{sign_link(secret, 'unsubscribe', sid)}"),
        await api.post(f"/v1/unsubscribe/{sign_link(secret, 'unsubscribe', sid)}"),
    ]
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("log_config", ["uvicorn default", None])
async def test_uvicorn_access_log_has_no_link_tokens_or_feed_secrets(clean_redis: str, log_config: str | None) -> None:
    """Served by uvicorn with its own logging config (``uvicorn services.api.app:app``) and without
    (``paperwire run``): the filter the app installs rewrites the records uvicorn itself builds."""
    extra = {} if log_config else {"log_config": None}
    config = uvicorn.Config(
        create_api(api_settings(clean_redis)), host="127.0.0.1", port=free_port(), access_log=True, **extra
    )
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.setLevel(logging.INFO)
    records = _Records()
    access.addHandler(records)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{config.port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
            await client.get("/web/eyJhIjoidmlldyJ9.SECRET-VIEW-MAC==")
            await client.post("/web/eyJhIjoidmlldyJ9.SECRET-VIEW-MAC/rate?x=1")
            await client.get("/v1/feedback/eyJsaWtlIn0.SECRET-LIKE-MAC")
            await client.get("/v1/unsubscribe/eyJ1bnN1YiJ9.SECRET-UNSUB-MAC")
            await client.get("/v1/feeds/SECRETFEEDSECRET")
            await client.get("/healthz")
    finally:
        server.should_exit = True
        await task
        access.removeHandler(records)
        access.setLevel(level)
    lines = [record.getMessage() for record in records.records]
    assert len(lines) == 6, lines
    assert not [line for line in lines if "SECRET" in line], lines
    assert '"GET /web/REDACTED HTTP/1.1" 403' in lines[0]
    assert '"POST /web/REDACTED/rate?x=1 HTTP/1.1" 403' in lines[1]
    assert "/v1/feedback/REDACTED " in lines[2] and "/v1/unsubscribe/REDACTED " in lines[3]
    assert '"GET /v1/feeds/REDACTED HTTP/1.1" 404' in lines[4]
    assert '"GET /healthz HTTP/1.1" 200' in lines[5]
    assert all(isinstance(record.args, tuple) and len(record.args) == 5 for record in records.records)
