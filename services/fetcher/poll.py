"""One polling cycle over every configured source: what the app's loop and the CLI call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis
import structlog

from services.fetcher import schedule
from services.fetcher.http import Fetcher, make_client
from services.fetcher.plan import SourceSchedule, complete_since, set_if_later
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import arxiv_api, arxiv_rss, hf_daily, oai
from services.fetcher.sources.common import Publish, SourceReport
from shared.consumer import consumer_name

log = structlog.get_logger("paperwire.fetcher.poll")
LAST_POLL_KEY = "fetcher:last_poll"
OAI_COVERED_KEY = "fetcher:oai:covered_until"  # the last day a complete daily OAI harvest reached
OAI_HARVESTED_KEY = "fetcher:oai:harvested_at"  # when the last complete daily OAI harvest started
OAI_SETTLE = timedelta(hours=2)  # after an announcement, time for arXiv's OAI-PMH listing to hold it


@dataclass
class PollReport:
    sources: list[SourceReport] = field(default_factory=list)
    schedule_note: str = ""
    polled: dict[str, bool] = field(default_factory=dict)
    """Each source polled this cycle (its ``source_keys`` key) and whether it succeeded."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Sources this poller left to another one (claimed by it, or polled by it since the first read), and why."""

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


def source_schedule(settings: FetcherSettings, redis: aioredis.Redis, holder: str | None = None) -> SourceSchedule:
    """The Redis-kept schedule with the settings' intervals; ``holder`` names this poller in claims (default: the
    process' consumer name, ``fetcher-<host>-<pid>``)."""
    return SourceSchedule(
        redis,
        holder or consumer_name("fetcher", settings),
        interval_s=settings.poll_interval_s,
        retry_s=settings.retry_failed_after_s,
        lease_s=settings.poll_lease_s,
    )


def oai_window_start(today: date, covered_until: date | None, max_days: int) -> date:
    """The daily OAI harvest's ``from``: the day before the last complete harvest's ``until`` (records are
    datestamped by day, and the parser de-duplicates the overlap), never more than ``max_days`` back, and at the
    latest yesterday."""
    yesterday = today - timedelta(days=1)
    start = covered_until - timedelta(days=1) if covered_until else yesterday
    return max(today - timedelta(days=max_days), min(start, yesterday))


def oai_harvest_skip(now: datetime, harvested_at: datetime | None, holidays: frozenset[date]) -> str | None:
    """Why the daily OAI harvest need not run now, or None when it should.

    OAI records change when arXiv announces, so the harvest runs once per announcement, ``OAI_SETTLE`` after it
    (the first one at once): harvesting the same two-day window at every poll would load arXiv's server for no
    new record. A window it missed is still covered: the next window starts the day before the last one ended.
    """
    ready = schedule.last_announcement(now - OAI_SETTLE, holidays) + OAI_SETTLE
    if harvested_at is None or harvested_at < ready:
        return None
    upcoming = schedule.next_announcement(now, holidays) + OAI_SETTLE
    return (
        f"harvested at {harvested_at:%Y-%m-%d %H:%M %Z}, after the latest announcement; "
        f"next after {upcoming:%Y-%m-%d %H:%M %Z}"
    )


def oai_catchup_note(covered_until: date | None, start: date) -> str | None:
    """The days an outage longer than ``oai_catchup_days`` left out of the daily window, and how to fetch them."""
    last = start - timedelta(days=1)
    if covered_until is None or last < covered_until:
        return None
    return (
        f"days {covered_until} to {last} are beyond the catch-up limit and were not harvested: "
        f"paperwire backfill --from {covered_until} --until {last}"
    )


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
    plan: SourceSchedule | None = None,
    force: bool = False,
) -> PollReport:
    """Fetch every source that is due by the schedule in Redis (every source with ``force``) and publish each response.

    Each source is polled under its claim (see ``plan``): a source another replica is polling is skipped, and
    one it finished since our first read is found not due any more. A failing source does not stop the others.
    ``fetcher:last_poll`` moves to the time since which every source has been fetched successfully, so a source
    still failing holds it back and its retry releases it.
    """
    now = now or datetime.now(UTC)
    clock = time.monotonic()

    def current() -> datetime:
        return now + timedelta(seconds=time.monotonic() - clock)

    plan = plan if plan is not None else source_schedule(settings, redis)
    keys = source_keys(settings)
    report = PollReport()
    if force:
        due = set(keys)
    else:
        decisions = await plan.decisions(keys, now)
        due = {d.source for d in decisions if d.due}
        report.skipped.update({d.source: d.reason for d in decisions if d.claim is not None})
    last = await redis.get(LAST_POLL_KEY)
    since = datetime.fromisoformat(last.decode()) if last else None
    calendar = schedule.status(now, since, frozenset(settings.holidays))
    report.schedule_note = calendar.reason

    async def poll(key: str, fetch: Callable[[], Awaitable[list[SourceReport]]]) -> None:
        """Claim, re-check, poll, record, release: the outcome is in Redis before another poller can claim."""
        if key not in due:
            return
        async with plan.claimed(key) as held:
            if not held:
                report.skipped[key] = "claimed by another fetcher"
                return
            if not force and not await plan.due_now(key, current()):
                report.skipped[key] = "polled by another fetcher meanwhile"
                return
            await plan.mark_started(key, now)
            try:
                sources = await fetch()
            except Exception as exc:  # a bug or an unforeseen error in one source must not starve the ones after it
                error = f"{type(exc).__name__}: {exc}"
                log.error("source_failed", source=key, error=error, exc_info=True)
                sources = [SourceReport(source=key, target="", error=error)]
            ok = all(source.ok for source in sources)
            await plan.record(key, now, current(), ok, next((s.error for s in sources if s.error), None))
        report.sources.extend(sources)
        report.polled[key] = ok

    fetcher, limiter = make_fetcher(settings, redis)
    try:
        for query in settings.arxiv_queries:

            async def api(query: str = query) -> list[SourceReport]:
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
                return [result]

            await poll(f"arxiv-api:{query}", api)

        async def rss() -> list[SourceReport]:
            return [
                await arxiv_rss.fetch_feed(
                    fetcher, limiter, settings.arxiv_rss_url, settings.rss_categories, publish, settings.rss_format
                )
            ]

        async def harvest() -> list[SourceReport]:
            # The daily harvest, resumable like a backfill: from where the last complete one ended, so an outage
            # of a few days leaves no gap.
            raw_covered, raw_harvested = await redis.mget(OAI_COVERED_KEY, OAI_HARVESTED_KEY)
            covered = date.fromisoformat(raw_covered.decode()) if raw_covered else None
            start = oai_window_start(now.date(), covered, settings.oai_catchup_days)
            job = oai.Harvest(start, now.date(), settings.oai_set, settings.oai_metadata_prefix)
            done = await redis.hget(job.key, "done")
            if done is None or done == b"1":  # nothing to resume: a new harvest, once per announcement
                harvested_at = datetime.fromisoformat(raw_harvested.decode()) if raw_harvested else None
                skip = oai_harvest_skip(now, harvested_at, frozenset(settings.holidays))
                if skip is not None:
                    return [SourceReport("arxiv-oai", job.key, note=skip)]
                await redis.delete(job.key)  # the same window again after an announcement: records were added
            harvested = await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, publish)
            if harvested.error is None and await redis.hget(job.key, "done") == b"1":
                await redis.mset({OAI_COVERED_KEY: now.date().isoformat(), OAI_HARVESTED_KEY: now.isoformat()})
            gap = oai_catchup_note(covered, start)
            if gap is not None:
                log.warning("oai_days_skipped", note=gap)
                harvested.note = f"{harvested.note}; {gap}" if harvested.note else gap
            return [harvested]

        async def daily() -> list[SourceReport]:
            days = hf_days(settings.hf_date or now.date(), settings.hf_days)
            return [await hf_daily.fetch_day(fetcher, settings.hf_url, day, publish) for day in days]

        await poll("arxiv-rss", rss)
        await poll("arxiv-oai", harvest)
        await poll("hf-daily", daily)
    finally:
        await fetcher.client.aclose()
    complete = complete_since(await plan.states(keys), keys)
    if complete is not None:
        await set_if_later(redis, LAST_POLL_KEY, complete)
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
    for key, why in report.skipped.items():
        log.info("source_skipped", source=key, reason=why)
    if report.published == 0 or not calendar.new_papers:
        log.info("schedule", new_papers=calendar.new_papers, reason=calendar.reason)
    return report
