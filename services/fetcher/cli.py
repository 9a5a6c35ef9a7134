"""Fetcher commands mounted by ``paperwire``: ``backfill`` (OAI-PMH, resumable) and ``schedule``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import redis.asyncio as aioredis
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.fetcher import schedule as calendar
from services.fetcher.plan import format_decision
from services.fetcher.poll import LAST_POLL_KEY, make_fetcher, source_keys, source_schedule
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import oai
from shared.cli_errors import RUNTIME, at_least, fail
from shared.consumer import ensure_groups
from shared.events import RawPapers, Stream
from shared.redis_server import command_redis
from shared.runtime import DEFAULT_REDIS_URL, make_broker

OAI_PREFIXES = ("arXivRaw", "arXiv")  # the metadata formats services/parser/arxiv_oai.py parses


def backfill(
    from_: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first datestamp (YYYY-MM-DD)")],
    until: Annotated[datetime, typer.Option("--until", formats=["%Y-%m-%d"], help="last datestamp (YYYY-MM-DD)")],
    set_: Annotated[str, typer.Option("--set", help="OAI set, e.g. cs or cs:cs:LG")] = "cs",
    prefix: Annotated[str, typer.Option("--prefix", help="arXivRaw or arXiv")] = "arXivRaw",
    max_pages: Annotated[int | None, typer.Option(help="stop after this many pages (resume later)")] = None,
    restart: Annotated[bool, typer.Option(help="forget the stored resumption token")] = False,
) -> None:
    """Harvest OAI-PMH ListRecords into papers.raw with a progress bar; resumes where a previous run stopped."""
    if from_ > until:
        raise fail(f"--from {from_:%Y-%m-%d} is after --until {until:%Y-%m-%d}")
    if prefix not in OAI_PREFIXES:
        raise fail(f"--prefix must be one of {', '.join(OAI_PREFIXES)} (what the parser reads), got {prefix!r}")
    if max_pages is not None:
        at_least("--max-pages", max_pages, 1)
    settings = FetcherSettings()
    job = oai.Harvest(from_.date(), until.date(), set_ or None, prefix)
    with command_redis() as url:
        report = asyncio.run(_backfill(settings.model_copy(update={"redis_url": url}), job, max_pages, restart))
    if report.error:
        raise fail(f"{report.error} (run again to resume from the stored token)", RUNTIME)
    typer.echo(f"{report.entries} records in {report.published} pages" + (f"; {report.note}" if report.note else ""))


async def _backfill(settings: FetcherSettings, job: oai.Harvest, max_pages: int | None, restart: bool):  # noqa: ANN202
    url = settings.redis_url or DEFAULT_REDIS_URL
    redis = aioredis.Redis.from_url(url)
    broker = make_broker(url)
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
    """Each source's next due time and why, then whether arXiv has announced since the last complete poll.

    Read from the schedule the fetchers share in Redis (REDIS_URL, else the embedded one ``paperwire run`` uses).
    """
    settings = FetcherSettings()
    with command_redis() as url:
        lines = asyncio.run(_schedule_lines(settings.model_copy(update={"redis_url": url}), datetime.now(UTC)))
    for line in lines:
        typer.echo(line)


async def schedule_lines(settings: FetcherSettings, redis: aioredis.Redis, now: datetime) -> list[str]:
    """The report ``paperwire fetch schedule`` prints: one line per configured source, then the arXiv calendar."""
    keys = source_keys(settings)
    decisions = await source_schedule(settings, redis).decisions(keys, now)
    lines = [format_decision(decision, now) for decision in decisions] or ["no sources configured"]
    last = await redis.get(LAST_POLL_KEY)
    status = calendar.status(now, datetime.fromisoformat(last.decode()) if last else None, frozenset(settings.holidays))
    lines.append(f"arXiv last announcement: {status.last_announcement:%A %Y-%m-%d %H:%M %Z}")
    lines.append(f"arXiv next announcement: {status.next_announcement:%A %Y-%m-%d %H:%M %Z}")
    lines.append(f"arXiv: {'new papers to fetch: ' if status.new_papers else ''}{status.reason}")
    return lines


async def _schedule_lines(settings: FetcherSettings, now: datetime) -> list[str]:
    redis = aioredis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL)
    try:
        return await schedule_lines(settings, redis, now)
    finally:
        await redis.aclose()


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("", "backfill", backfill),
    ("fetch", "schedule", schedule_status),
]
