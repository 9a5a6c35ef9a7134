"""Notifier commands for the lead's CLI: ``paperwire deliveries dead|replay`` and ``paperwire bench deliver``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import typer

from services.notifier.queue import DeliveryQueue
from services.notifier.settings import NotifierSettings
from shared.cli_errors import RUNTIME, at_least, fail
from shared.redis_server import command_redis


async def _dead(url: str) -> list[dict[str, object]]:
    redis = aioredis.Redis.from_url(url)
    try:
        jobs = await DeliveryQueue(redis).dead_jobs()
    finally:
        await redis.aclose()
    return [
        {
            "id": j.id,
            "subscription_id": j.subscription_id,
            "channel": j.channel,
            "target": j.target,
            "papers": j.paper_ids,
            "attempts": j.attempts,
            "last_status": j.last_status,
            "last_error": j.last_error,
        }
        for j in sorted(jobs, key=lambda j: j.created_at)
    ]


async def _replay(url: str, ids: list[str] | None) -> list[str]:
    redis = aioredis.Redis.from_url(url)
    try:
        return [j.id for j in await DeliveryQueue(redis).replay(ids, time.time())]
    finally:
        await redis.aclose()


def dead_command() -> None:
    """List deliveries whose retries are spent (they are also on the deliveries.failed stream)."""
    with command_redis() as url:
        rows = asyncio.run(_dead(url))
    if not rows:
        typer.echo("no dead deliveries", err=True)  # stderr: stdout stays JSON lines for scripts
    for row in rows:
        typer.echo(json.dumps(row))


def replay_command(
    delivery_id: list[str] = typer.Option(None, "--id", help="a dead delivery's id (repeatable)"),
    all_: bool = typer.Option(False, "--all", help="replay every dead delivery"),
) -> None:
    """Queue dead deliveries again with a fresh retry budget; papers already delivered are not sent twice."""
    if not delivery_id and not all_:
        raise fail("give --id ID (repeatable) or --all")
    with command_redis() as url:
        replayed = asyncio.run(_replay(url, None if all_ else list(delivery_id)))
    typer.echo(f"replayed {len(replayed)} deliveries")
    for job_id in replayed:
        typer.echo(job_id)
    missing = sorted(set(delivery_id or ()) - set(replayed)) if not all_ else []
    if missing:  # as `dead replay`: a mistyped id is not a silent "replayed 0"
        raise fail(f"{len(missing)} of the given ids are not dead deliveries: {', '.join(missing)}", RUNTIME)


def bench_deliver_command(
    n: int = typer.Option(2000, "--n", help="deliveries to send"),
    endpoints: int = typer.Option(8, "--endpoints", help="webhook endpoints they are spread over"),
    use_redis_url: bool = typer.Option(
        False, "--use-redis-url", help="run on REDIS_URL (it is FLUSHED) instead of a private Redis"
    ),
) -> None:
    """Webhook deliveries/s to a local receiver, and how long a hanging endpoint delays a healthy one."""
    from services.notifier.bench import MAX_DELIVERIES, bench

    at_least("--endpoints", endpoints, 1)
    if n < endpoints:  # each endpoint gets n // endpoints deliveries: at least one each
        raise fail(f"--n must be at least --endpoints ({endpoints}), got {n}")
    if n > MAX_DELIVERIES:
        raise fail(f"--n must be at most {MAX_DELIVERIES} (the bench's paper ids), got {n}")
    settings = NotifierSettings()
    result = bench(n, endpoints, settings.redis_url if use_redis_url else None)
    typer.echo(json.dumps(result))
    typer.echo(
        f"{result['deliveries']} deliveries to {result['endpoints']} endpoints in {result['seconds']} s: "
        f"{result['deliveries_per_s']} deliveries/s; with {result['hanging_jobs']} deliveries stuck on a hanging "
        f"endpoint (timeout {result['webhook_timeout_s']} s), {result['healthy_jobs']} to a healthy one took "
        f"{result['isolation_s']} s"
    )


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("deliveries", "dead", dead_command),
    ("deliveries", "replay", replay_command),
    ("bench", "deliver", bench_deliver_command),
]
