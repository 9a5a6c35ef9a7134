"""Fetcher commands mounted by ``paperwire``: ``backfill`` (OAI-PMH, resumable) and ``schedule``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import redis.asyncio as aioredis
import typer
from faststream.redis import RedisBroker
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.fetcher import schedule as calendar
from services.fetcher.poll import make_fetcher
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import oai
from shared.consumer import ensure_groups
from shared.events import RawPapers, Stream
from shared.redis_server import command_redis
from shared.runtime import DEFAULT_REDIS_URL


def backfill(
    from_: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first datestamp (YYYY-MM-DD)")],
    until: Annotated[datetime, typer.Option("--until", formats=["%Y-%m-%d"], help="last datestamp (YYYY-MM-DD)")],
    set_: Annotated[str, typer.Option("--set", help="OAI set, e.g. cs or cs:cs:LG")] = "cs",
    prefix: Annotated[str, typer.Option("--prefix", help="arXivRaw or arXiv")] = "arXivRaw",
    max_pages: Annotated[int | None, typer.Option(help="stop after this many pages (resume later)")] = None,
    restart: Annotated[bool, typer.Option(help="forget the stored resumption token")] = False,
) -> None:
    """Harvest OAI-PMH ListRecords into papers.raw with a progress bar; resumes where a previous run stopped."""
    settings = FetcherSettings()
    job = oai.Harvest(from_.date(), until.date(), set_ or None, prefix)
    with command_redis() as url:
        report = asyncio.run(_backfill(settings.model_copy(update={"redis_url": url}), job, max_pages, restart))
    if report.error:
        typer.echo(f"error: {report.error} (run again to resume from the stored token)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{report.entries} records in {report.published} pages" + (f"; {report.note}" if report.note else ""))


async def _backfill(settings: FetcherSettings, job: oai.Harvest, max_pages: int | None, restart: bool):  # noqa: ANN202
    url = settings.redis_url or DEFAULT_REDIS_URL
    redis = aioredis.Redis.from_url(url)
    broker = RedisBroker(url)
    await broker.connect()
    await ensure_groups(redis)
    if restart:
        await redis.delete(job.key)
    fetcher, limiter = make_fetcher(settings, redis)

    async def publish(event: RawPapers) -> None:
        await broker.publish(event, stream=Stream.RAW)

    columns = (TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("records", total=None)

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            return await oai.harvest(
                fetcher, limiter, redis, settings.oai_url, job, publish, progress=progress, max_pages=max_pages
            )
    finally:
        await fetcher.client.aclose()
        await broker.stop()
        await redis.aclose()


def schedule_status() -> None:
    """Whether arXiv has announced since the last poll and, if not, why and when it will."""
    now = datetime.now(UTC)
    status = calendar.status(now, None, frozenset(FetcherSettings().holidays))
    typer.echo(f"last announcement: {status.last_announcement:%A %Y-%m-%d %H:%M %Z}")
    typer.echo(f"next announcement: {status.next_announcement:%A %Y-%m-%d %H:%M %Z}")


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("", "backfill", backfill),
    ("fetch", "schedule", schedule_status),
]
