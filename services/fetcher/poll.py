"""One polling cycle over every configured source: what the app's loop and the CLI call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis
import structlog

from services.fetcher import schedule
from services.fetcher.http import Fetcher, make_client
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import arxiv_api, arxiv_rss, hf_daily, oai
from services.fetcher.sources.common import Publish, SourceReport

log = structlog.get_logger("paperwire.fetcher.poll")
LAST_POLL_KEY = "fetcher:last_poll"


@dataclass
class PollReport:
    started_at: datetime
    sources: list[SourceReport] = field(default_factory=list)
    schedule_note: str = ""

    @property
    def published(self) -> int:
        return sum(s.published for s in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def hf_days(newest: date, days: int) -> list[date]:
    """The Daily Papers dates to poll, newest first: older lists still collect upvotes (the trending signal)."""
    return [newest - timedelta(days=offset) for offset in range(days)]


def make_fetcher(settings: FetcherSettings, redis: aioredis.Redis) -> tuple[Fetcher, SharedRateLimiter]:
    client = make_client(settings.connect_timeout_s, settings.read_timeout_s, settings.user_agent)
    fetcher = Fetcher(
        client,
        redis,
        max_bytes=settings.max_response_bytes,
        max_retries=settings.max_retries,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
    )
    limiter = SharedRateLimiter(redis, "arxiv", min_interval_s=settings.arxiv_min_interval_s)
    return fetcher, limiter


async def poll_once(
    settings: FetcherSettings, redis: aioredis.Redis, publish: Publish, *, now: datetime | None = None
) -> PollReport:
    """Fetch every configured source once and publish each response; a failing source does not stop the others."""
    now = now or datetime.now(UTC)
    report = PollReport(started_at=now)
    last = await redis.get(LAST_POLL_KEY)
    since = datetime.fromisoformat(last.decode()) if last else None
    calendar = schedule.status(now, since, frozenset(settings.holidays))
    report.schedule_note = calendar.reason
    fetcher, limiter = make_fetcher(settings, redis)
    try:
        for query in settings.arxiv_queries:
            report.sources.append(
                await arxiv_api.fetch_query(
                    fetcher,
                    limiter,
                    settings.arxiv_api_url,
                    publish,
                    search_query=query,
                    max_results=settings.max_results,
                    page_size=settings.page_size,
                )
            )
        if settings.rss_categories:
            report.sources.append(
                await arxiv_rss.fetch_feed(
                    fetcher, limiter, settings.arxiv_rss_url, settings.rss_categories, publish, settings.rss_format
                )
            )
        if settings.oai_enabled:
            # The daily harvest: yesterday and today, resumable like a backfill.
            job = oai.Harvest(
                now.date() - timedelta(days=1), now.date(), settings.oai_set, settings.oai_metadata_prefix
            )
            if await redis.hget(job.key, "done") == b"1":
                await redis.delete(job.key)  # a new poll of the same window: records may have been added since
            report.sources.append(await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, publish))
        if settings.hf_enabled:
            for day in hf_days(settings.hf_date or now.date(), settings.hf_days):
                report.sources.append(await hf_daily.fetch_day(fetcher, settings.hf_url, day, publish))
    finally:
        await fetcher.client.aclose()
    if report.ok:
        await redis.set(LAST_POLL_KEY, now.isoformat())
    for source in report.sources:
        level = log.warning if source.error else log.info
        level(
            "source_polled",
            source=source.source,
            target=source.target,
            requests=source.requests,
            published=source.published,
            entries=source.entries,
            not_modified=source.not_modified,
            error=source.error,
            note=source.note,
        )
    if report.published == 0 or not calendar.new_papers:
        log.info("schedule", new_papers=calendar.new_papers, reason=calendar.reason)
    return report
