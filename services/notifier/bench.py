"""``paperwire bench deliver``: webhook deliveries per second to a local receiver, and the isolation bound.

Phase 1 queues ``n`` signed webhook deliveries spread over ``endpoints`` endpoints of one local receiver
(its own process, so the receiver does not share the notifier's event loop) and times the worker from
start until every one was accepted. Phase 2 queues deliveries to an endpoint that never answers, lets them
occupy their slots, then queues deliveries to a healthy endpoint and reports how long those took (the
isolation bound: what a hanging endpoint costs the others).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis
import structlog

from services.notifier.jobs import MatchItem, alert_jobs
from services.notifier.queue import DeliveryQueue
from services.notifier.runtime import delivery_worker
from services.notifier.settings import NotifierSettings
from shared.paper import Author, Paper
from shared.storage import SubscriptionStore
from shared.subscription import Channels, Subscription, WebhookEndpoint

MAX_DELIVERIES = 80000  # phase 1 paper ids stay below the hanging (90000) and healthy (95000) phases' ids
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class BenchResult:
    deliveries: int
    endpoints: int
    seconds: float
    deliveries_per_s: float
    hanging_jobs: int
    healthy_jobs: int
    webhook_timeout_s: float
    isolation_s: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(port: int) -> None:
    import uvicorn

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"].startswith("/hang"):
            await asyncio.sleep(3600)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)


async def _wait_port(port: int, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _until(check: Callable[[], Awaitable[bool]], step_s: float = 0.005) -> None:
    while not await check():  # noqa: ASYNC110 (polling Redis state, there is no event to wait on)
        await asyncio.sleep(step_s)


async def _true(value: bool) -> bool:
    return value


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def _at_least(value: Awaitable[int], target: int) -> bool:
    return await value >= target


def _paper(i: int) -> Paper:
    # A synthetic load: the benchmark measures the delivery path, not paper content.
    return Paper(
        id=f"2601.{i:05d}", title=f"Benchmark paper {i}", authors=[Author(name="A. Author")], categories=["cs.LG"]
    )


async def _queue(redis: aioredis.Redis, url: str, count: int, offset: int, name: str) -> Subscription:
    sub = Subscription(
        name=name,
        interests=["benchmark"],
        channels=Channels(webhooks=[WebhookEndpoint(url=url, secret=SECRET)]),
    )
    await SubscriptionStore(redis).put(sub)
    queue = DeliveryQueue(redis)
    now = time.time()
    for i in range(count):
        for job in alert_jobs(sub, MatchItem(paper=_paper(offset + i), score=0.9)):
            await queue.enqueue(job, now)
    return sub


async def _delivered(redis: aioredis.Redis, subs: list[Subscription]) -> int:
    total = 0
    for sub in subs:
        total += len(await redis.keys(f"once:delivered:{sub.id}:*"))
    return total


async def run_bench(
    redis_url: str,
    n: int = 2000,
    endpoints: int = 8,
    hang_jobs: int = 20,
    healthy_jobs: int = 50,
    webhook_timeout_s: float = 15.0,
) -> BenchResult:
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    server = ctx.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await _wait_port(port)
        await redis.flushdb()
        base = f"http://127.0.0.1:{port}"
        settings = NotifierSettings(
            redis_url=redis_url,
            webhook_allowed_networks=["127.0.0.1/32"],
            webhook_timeout_s=webhook_timeout_s,
            worker_poll_s=0.01,
            log_level="WARNING",
            shutdown_grace_s=0,  # the hanging endpoint's requests are left open on purpose: no waiting for them
        )
        per = max(1, min(n, MAX_DELIVERIES) // endpoints)
        subs = [await _queue(redis, f"{base}/ok/{e}", per, e * per, f"bench {e}") for e in range(endpoints)]
        total = per * endpoints
        async with delivery_worker(settings) as worker:
            started = time.perf_counter()
            task = asyncio.create_task(worker.run_forever())
            queue = DeliveryQueue(redis)
            await _until(lambda: _is_zero(queue.pending()))
            await worker.drain()
            seconds = time.perf_counter() - started
            assert await _delivered(redis, subs) == total
            # phase 2: a hanging endpoint first, then a healthy one
            await _queue(redis, f"{base}/hang", hang_jobs, 90000, "hanging")
            hanging_slots = min(hang_jobs, settings.webhook_concurrency_per_endpoint)
            await _until(lambda: _true(sum(worker.in_flight.values()) >= hanging_slots))
            t0 = time.perf_counter()
            healthy = await _queue(redis, f"{base}/ok/healthy", healthy_jobs, 95000, "healthy")
            await _until(lambda: _at_least(_delivered(redis, [healthy]), healthy_jobs))
            isolation = time.perf_counter() - t0
            task.cancel()
        return BenchResult(
            deliveries=total,
            endpoints=endpoints,
            seconds=round(seconds, 3),
            deliveries_per_s=round(total / seconds, 1),
            hanging_jobs=hang_jobs,
            healthy_jobs=healthy_jobs,
            webhook_timeout_s=webhook_timeout_s,
            isolation_s=round(isolation, 3),
        )
    finally:
        await redis.aclose()
        server.kill()
        server.join(5)


def bench(n: int, endpoints: int, redis_url: str | None) -> dict[str, object]:
    """Run against ``redis_url`` (flushed!) or a private embedded Redis; per-delivery log lines are muted, httpx's
    "HTTP Request: POST ..." lines (one per delivery at INFO) too."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    http_loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in http_loggers]
    for logger in http_loggers:
        logger.setLevel(logging.WARNING)
    try:
        return _bench(n, endpoints, redis_url)
    finally:
        structlog.configure(**saved)
        for logger, level in zip(http_loggers, levels, strict=True):
            logger.setLevel(level)


def _bench(n: int, endpoints: int, redis_url: str | None) -> dict[str, object]:
    if redis_url:
        return asdict(asyncio.run(run_bench(redis_url, n=n, endpoints=endpoints)))
    from shared.redis_server import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp)).start()
        try:
            return asdict(asyncio.run(run_bench(server.url, n=n, endpoints=endpoints)))
        finally:
            server.stop()
