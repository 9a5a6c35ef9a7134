"""The app ``build_app`` makes, started against a real Redis with work already waiting in its stream."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
import structlog.testing
from faststream import TestApp
from faststream._internal.cli.utils.logs import set_log_level
from faststream.redis import RedisBroker, RedisRouter, StreamSub
from pydantic import BaseModel

from shared.consumer import ensure_group, make_router, parse_batch, subscriber
from shared.logs import configure_logging
from shared.runtime import ServiceDef, build_app, make_broker, service_redis
from shared.settings import ServiceSettings
from tests.streams import decode, wait_for

SERVICE = "relay"
INBOX = "test.runtime.in"
OUTBOX = "test.runtime.out"
QUIET = "test.runtime.quiet"
WAITING = 20


class Job(BaseModel):
    n: int


def relay_router(handled: list[int], batch: bool) -> Any:
    """A service that republishes each entry of ``INBOX`` on ``OUTBOX`` through a router publisher, and like the
    real services also consumes another stream (each subscriber started is a little more start-up time)."""

    def build_router(settings: ServiceSettings) -> RedisRouter:
        router = make_router(SERVICE, settings)
        outbox = router.publisher(stream=OUTBOX)

        async def relay(jobs: list[Job]) -> None:
            handled.extend(job.n for job in jobs)
            for job in jobs:
                await outbox.publish(job)

        if batch:

            @subscriber(router, INBOX, service=SERVICE, settings=settings, batch=True, max_records=WAITING)
            async def on_batch(bodies: list[Any]) -> None:
                jobs, rejected = parse_batch(bodies, Job)
                assert not rejected
                await relay(jobs)

        else:

            @subscriber(router, INBOX, service=SERVICE, settings=settings)
            async def on_job(job: Job) -> None:
                await relay([job])

        @subscriber(router, QUIET, service=SERVICE, settings=settings)
        async def on_quiet(job: Job) -> None:
            handled.append(-job.n)

        return router

    return build_router


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_entries_waiting_at_start_are_published_on_their_first_delivery(
    redis: aioredis.Redis, clean_redis: str, batch: bool
) -> None:
    """Publishers are ready before any subscriber reads: every waiting entry is relayed on its first delivery.
    The claim idle time outlasts the test, so an entry whose first handling failed would never arrive."""
    await ensure_group(redis, INBOX, SERVICE)
    producer = RedisBroker(clean_redis)
    async with producer:
        for n in range(WAITING):
            await producer.publish(Job(n=n), stream=INBOX)
    handled: list[int] = []
    settings = ServiceSettings(redis_url=clean_redis, read_block_ms=50, claim_poll_ms=50, claim_idle_ms=60_000)
    app = build_app([ServiceDef(SERVICE, relay_router(handled, batch), settings)], clean_redis)
    async with TestApp(app):
        relayed = await wait_for(redis, OUTBOX, WAITING, limit_s=5.0)
        for _ in range(50):  # the ack follows the handler's last publish: give it a moment to land
            pending = await redis.xpending(INBOX, SERVICE)
            if pending["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        errors = await redis.hgetall(f"errors:{INBOX}:{SERVICE}")
    assert errors == {}
    assert sorted(job.n for job in decode(relayed, Job)) == list(range(WAITING))
    assert sorted(handled) == list(range(WAITING))
    assert pending["pending"] == 0


async def test_per_message_lines_are_debug_and_go_through_our_logging(clean_redis: str) -> None:
    """A day's listing is thousands of messages per service: FastStream's "Received"/"Processed" lines must not
    flood an INFO log; they are DEBUG, on the structlog pipeline like every other line."""
    configure_logging("INFO")
    broker = make_broker(clean_redis)
    seen = asyncio.Event()

    @broker.subscriber(stream=StreamSub("test.logs", group="g", consumer="c"))
    async def handle(body: dict) -> None:
        structlog.get_logger("test").info("handled", n=body["n"])
        seen.set()

    with structlog.testing.capture_logs() as logs:
        async with broker:
            await broker.start()
            await broker.publish({"n": 1}, stream="test.logs")
            await asyncio.wait_for(seen.wait(), 10)
            await asyncio.sleep(0.2)
    events = [entry.get("event") for entry in logs]
    assert "handled" in events  # the handler's own INFO line is there
    assert "Received" not in events and "Processed" not in events


async def test_clients_the_routers_open_are_closed_when_the_app_stops(redis: aioredis.Redis, clean_redis: str) -> None:
    """A service's own Redis client (``service_redis``) lives as long as its app: once the broker has stopped, its
    connections are gone from the server, not left for the garbage collector."""
    await ensure_group(redis, INBOX, SERVICE)
    connection_ids: list[str] = []

    def build_router(settings: ServiceSettings) -> RedisRouter:
        router = make_router(SERVICE, settings)
        client = service_redis(settings)

        @subscriber(router, INBOX, service=SERVICE, settings=settings)
        async def on_job(job: Job) -> None:
            connection_ids.append(str(await client.client_id()))

        return router

    settings = ServiceSettings(redis_url=clean_redis, read_block_ms=50, claim_poll_ms=50)
    app = build_app([ServiceDef(SERVICE, build_router, settings)], clean_redis)
    async with TestApp(app):
        await redis.xadd(INBOX, {"n": 1})
        for _ in range(100):
            if connection_ids:
                break
            await asyncio.sleep(0.05)
        assert connection_ids, "the handler never ran"
        assert connection_ids[0] in {c["id"] for c in await redis.client_list()}
    for _ in range(50):  # the server drops a connection just after the client closes it
        if connection_ids[0] not in {c["id"] for c in await redis.client_list()}:
            break
        await asyncio.sleep(0.02)
    assert connection_ids[0] not in {c["id"] for c in await redis.client_list()}


@pytest.mark.parametrize(("cli", "settings_level"), [(logging.INFO, "DEBUG"), (logging.DEBUG, "INFO")])
async def test_faststream_runs_log_level_sets_ours_and_keeps_per_message_lines_debug(
    redis: aioredis.Redis, clean_redis: str, capsys: pytest.CaptureFixture[str], cli: int, settings_level: str
) -> None:
    """``faststream run ... -l info`` (what an operator types) sets FastStream's per-message level to INFO too:
    thousands of "Received" lines a day. The app takes the CLI's level for its own lines (``-l debug`` too, over
    the settings' INFO) and keeps the per-message lines DEBUG."""
    await ensure_group(redis, INBOX, SERVICE)
    handled: list[int] = []
    settings = ServiceSettings(redis_url=clean_redis, read_block_ms=50, claim_poll_ms=50, log_level=settings_level)
    app = build_app([ServiceDef(SERVICE, relay_router(handled, batch=False), settings)], clean_redis)
    set_log_level(cli, app)  # what `faststream run -l ...` does before starting the app
    async with TestApp(app):
        await redis.xadd(INBOX, {"__data__": Job(n=7).model_dump_json()})
        await wait_for(redis, OUTBOX, 1, limit_s=5.0)
        structlog.get_logger("test").debug("a debug line of ours")
        structlog.get_logger("test").info("an info line of ours")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert handled == [7]
    assert "an info line of ours" in events
    if cli == logging.INFO:
        assert "Received" not in events and "Processed" not in events
        assert "a debug line of ours" not in events  # our own lines follow the CLI's INFO, not the settings' DEBUG
    else:
        assert "a debug line of ours" in events and "Received" in events  # asked for: everything, DEBUG included
