"""One polling cycle over every configured source: what the app's loop and the CLI call."""

from __future__ import annotations

import time
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
OAI_COVERED_KEY = "fetcher:oai:covered_until"  # the last day a complete daily OAI harvest reached


@dataclass
class PollReport:
    started_at: datetime
    sources: list[SourceReport] = field(default_factory=list)
    schedule_note: str = ""
    polled: dict[str, bool] = field(default_factory=dict)
    """Each source polled this cycle (its ``source_keys`` key) and whether it succeeded."""

    @property
    def published(self) -> int:
        return sum(s.published for s in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def source_keys(settings: FetcherSettings) -> list[str]:
    """The sources the loop schedules each on its own: every arXiv query, the RSS feed, the OAI harvest, HF."""
    keys = [f"arxiv-api:{query}" for query in settings.arxiv_queries]
    if settings.rss_categories:
        keys.append("arxiv-rss")
    if settings.oai_enabled:
        keys.append("arxiv-oai")
    if settings.hf_enabled:
        keys.append("hf-daily")
    return keys


@dataclass
class SourcePlan:
    """When each source is next due and when it last succeeded.

    A failing source is retried sooner on its own, so one source being down (say Hugging Face) does not make
    every arXiv source re-fetch and republish its pages every retry interval. A source never polled is due.
    """

    next_due: dict[str, datetime] = field(default_factory=dict)
    last_ok: dict[str, datetime] = field(default_factory=dict)

    def due(self, keys: list[str], now: datetime) -> list[str]:
        return [key for key in keys if key not in self.next_due or self.next_due[key] <= now]

    def record(
        self, polled: dict[str, bool], started: datetime, finished: datetime, interval_s: float, retry_s: float
    ) -> None:
        """Success counts from the cycle's start (what was fetched then); the next try from its end."""
        for key, ok in polled.items():
            self.next_due[key] = finished + timedelta(seconds=interval_s if ok else retry_s)
            if ok:
                self.last_ok[key] = started

    def complete_since(self, keys: list[str]) -> datetime | None:
        """The time since which every source has been fetched successfully; None while one never was."""
        if not keys or any(key not in self.last_ok for key in keys):
            return None
        return min(self.last_ok[key] for key in keys)

    def seconds_until_due(self, keys: list[str], now: datetime, default_s: float) -> float:
        """How long the loop may sleep before the next source is due (``default_s`` when nothing is configured)."""
        if not keys:
            return default_s
        soonest = min(self.next_due.get(key, now) for key in keys)
        return max(0.0, (soonest - now).total_seconds())


def oai_window_start(today: date, covered_until: date | None, max_days: int) -> date:
    """The daily OAI harvest's ``from``: the day before the last complete harvest's ``until`` (records are
    datestamped by day, and the parser de-duplicates the overlap), never more than ``max_days`` back, and at the
    latest yesterday."""
    yesterday = today - timedelta(days=1)
    start = covered_until - timedelta(days=1) if covered_until else yesterday
    return max(today - timedelta(days=max_days), min(start, yesterday))


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
    limiter = SharedRateLimiter(
        redis, "arxiv", min_interval_s=settings.arxiv_min_interval_s, lock_ttl_s=settings.arxiv_lock_ttl_s
    )
    return fetcher, limiter


async def poll_once(
    settings: FetcherSettings,
    redis: aioredis.Redis,
    publish: Publish,
    *,
    now: datetime | None = None,
    plan: SourcePlan | None = None,
) -> PollReport:
    """Fetch every source that is due (all of them without a ``plan``) and publish each response.

    A failing source does not stop the others. ``fetcher:last_poll`` moves to the time since which every
    source has been fetched successfully, so a source still failing holds it back and its retry releases it.
    """
    now = now or datetime.now(UTC)
    clock = time.monotonic()
    plan = plan if plan is not None else SourcePlan()
    keys = source_keys(settings)
    due = set(plan.due(keys, now))
    report = PollReport(started_at=now)
    last = await redis.get(LAST_POLL_KEY)
    since = datetime.fromisoformat(last.decode()) if last else None
    calendar = schedule.status(now, since, frozenset(settings.holidays))
    report.schedule_note = calendar.reason

    def polled(key: str, *sources: SourceReport) -> None:
        report.sources.extend(sources)
        report.polled[key] = all(source.ok for source in sources)

    fetcher, limiter = make_fetcher(settings, redis)
    try:
        for query in settings.arxiv_queries:
            if f"arxiv-api:{query}" not in due:
                continue
            result = await arxiv_api.fetch_query(
                fetcher,
                limiter,
                settings.arxiv_api_url,
                publish,
                search_query=query,
                max_results=settings.max_results,
                page_size=settings.page_size,
                short_page_retries=settings.short_page_retries,
            )
            polled(f"arxiv-api:{query}", result)
        if "arxiv-rss" in due:
            result = await arxiv_rss.fetch_feed(
                fetcher, limiter, settings.arxiv_rss_url, settings.rss_categories, publish, settings.rss_format
            )
            polled("arxiv-rss", result)
        if "arxiv-oai" in due:
            # The daily harvest, resumable like a backfill: from where the last complete one ended, so an outage
            # of a few days leaves no gap.
            covered = await redis.get(OAI_COVERED_KEY)
            start = oai_window_start(
                now.date(), date.fromisoformat(covered.decode()) if covered else None, settings.oai_catchup_days
            )
            job = oai.Harvest(start, now.date(), settings.oai_set, settings.oai_metadata_prefix)
            if await redis.hget(job.key, "done") == b"1":
                await redis.delete(job.key)  # a new poll of the same window: records may have been added since
            harvested = await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, publish)
            if harvested.error is None and await redis.hget(job.key, "done") == b"1":
                await redis.set(OAI_COVERED_KEY, now.date().isoformat())
            polled("arxiv-oai", harvested)
        if "hf-daily" in due:
            days = hf_days(settings.hf_date or now.date(), settings.hf_days)
            polled("hf-daily", *[await hf_daily.fetch_day(fetcher, settings.hf_url, day, publish) for day in days])
    finally:
        await fetcher.client.aclose()
    finished = now + timedelta(seconds=time.monotonic() - clock)
    plan.record(report.polled, now, finished, settings.poll_interval_s, settings.retry_failed_after_s)
    complete = plan.complete_since(keys)
    if complete is not None and (since is None or complete > since):
        await redis.set(LAST_POLL_KEY, complete.isoformat())
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
