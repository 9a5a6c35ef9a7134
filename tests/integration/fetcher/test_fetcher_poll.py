"""poll_once with the demo's settings, the resumable OAI backfill (CLI too), and the shared 3-second
limit across two fetcher processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import typer
from fetcher_replay import ReplayServer, Reply, replayed_settings, requests_to
from typer.testing import CliRunner

from services.fetcher.app import poll_forever
from services.fetcher.cli import COMMANDS
from services.fetcher.poll import LAST_POLL_KEY, OAI_COVERED_KEY, make_fetcher, oai_window_start, poll_once
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources import oai
from shared.events import RawPapers
from shared.tasks import cancel_and_wait

FIXTURES = Path(__file__).parents[2] / "fixtures"
ROOT = Path(__file__).parents[3]
CL = (FIXTURES / "arxiv_api/llmpaperradar_q_cat-cs.CL_max2_2026-05-11.xml").read_bytes()
HF = (FIXTURES / "hf_daily_papers/llmpaperradar_hf_daily_papers_2026-05.json").read_bytes()
HF_JUNE = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_bytes()
HF_JULY = (FIXTURES / "hf_daily_papers/allnewsai_hf_daily_papers_2026-07.json").read_bytes()
OAI_FIRST = (FIXTURES / "arxiv_oai/saelim_ListRecordsResponse.xml").read_bytes()  # token 726959|1001
OAI_SECOND = (FIXTURES / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
OAI_BAD_TOKEN = (FIXTURES / "arxiv_oai/saelim_ErrorResponseBadResumptionToken.xml").read_bytes()


class Sink:
    def __init__(self) -> None:
        self.events: list[RawPapers] = []

    async def __call__(self, event: RawPapers) -> None:
        self.events.append(event)


async def test_poll_once_with_demo_settings(redis: aioredis.Redis, clean_redis: str, replay: ReplayServer) -> None:
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, {"Content-Type": "application/atom+xml"})
    replay.routes["/api/daily_papers"] = lambda p, q, h: Reply(200, HF, {"Content-Type": "application/json"})
    settings = FetcherSettings(
        redis_url=clean_redis,
        arxiv_api_url=f"{replay.url}/api/query",
        hf_url=f"{replay.url}/api/daily_papers",
        arxiv_queries=["cat:cs.CL"],
        rss_categories=[],
        oai_enabled=False,
        hf_date=date(2026, 5, 11),
        max_results=100,
        arxiv_min_interval_s=0,
    )
    sink = Sink()
    report = await poll_once(settings, redis, sink)
    # Daily Papers: hf_date and the day before (the default hf_days=2), newest first.
    assert report.ok and report.published == 3
    assert [e.source for e in sink.events] == ["arxiv-api", "hf-daily", "hf-daily"]
    assert sink.events[0].body == CL.decode() and sink.events[1].body == HF.decode()
    assert replay.seen[0].query["search_query"] == "cat:cs.CL"
    assert [s.query for s in replay.seen[1:]] == [{"date": "2026-05-11"}, {"date": "2026-05-10"}]
    assert report.schedule_note


async def test_hf_days_back_each_with_its_own_list(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    """Three Daily Papers dates, each answered by a different real recording; a date with no list is a 404."""
    lists = {"2026-06-12": HF_JUNE, "2026-06-11": HF, "2026-06-10": HF_JULY}
    replay.routes["/api/daily_papers"] = lambda p, q, h: (
        Reply(200, lists[q["date"]], {"Content-Type": "application/json"}) if q.get("date") in lists else Reply(404)
    )
    settings = FetcherSettings(
        redis_url=clean_redis,
        hf_url=f"{replay.url}/api/daily_papers",
        rss_categories=[],
        hf_days=3,
        arxiv_min_interval_s=0,
    )
    sink = Sink()
    now = datetime(2026, 6, 12, 15, 0, tzinfo=UTC)  # no hf_date: counting back from today (UTC)
    report = await poll_once(settings, redis, sink, now=now)
    assert report.ok and report.published == 3
    assert [s.query["date"] for s in replay.seen] == ["2026-06-12", "2026-06-11", "2026-06-10"]
    assert [e.body.encode() for e in sink.events] == [HF_JUNE, HF, HF_JULY]
    assert [e.url.rsplit("=", 1)[1] for e in sink.events] == ["2026-06-12", "2026-06-11", "2026-06-10"]
    assert [s.entries for s in report.sources] == [30, 3, 5]
    # One day only, when asked: just today's list (forced: by the schedule in Redis the source just ran).
    replay.seen.clear()
    one = await poll_once(settings.model_copy(update={"hf_days": 1}), redis, Sink(), now=now, force=True)
    assert one.published == 1 and [s.query["date"] for s in replay.seen] == ["2026-06-12"]
    # A day that fails does not cost the others: four days back, the fourth answers 404.
    four = await poll_once(settings.model_copy(update={"hf_days": 4}), redis, Sink(), now=now, force=True)
    assert four.published == 3 and [s.target.rsplit("=", 1)[1] for s in four.failed] == ["2026-06-09"]
    assert "HTTP 404" in (four.failed[0].error or "")


async def oai_route_setup(replay: ReplayServer) -> None:
    def route(path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        token = query.get("resumptionToken")
        if token is None:
            return Reply(200, OAI_FIRST)
        if token == "726959|1001":
            return Reply(200, OAI_SECOND)
        return Reply(200, OAI_BAD_TOKEN)

    replay.routes["/oai"] = route


async def test_backfill_resumes_from_the_stored_token(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    await oai_route_setup(replay)
    settings = FetcherSettings(redis_url=clean_redis, oai_url=f"{replay.url}/oai", arxiv_min_interval_s=0)
    job = oai.Harvest(date(2014, 10, 1), date(2014, 10, 31), "physics", "arXivRaw")
    fetcher, limiter = make_fetcher(settings, redis)
    sink = Sink()
    first = await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, sink, max_pages=1)
    assert first.entries == 6 and "resume" in (first.note or "")
    assert replay.seen[0].query == {
        "verb": "ListRecords",
        "metadataPrefix": "arXivRaw",
        "from": "2014-10-01",
        "until": "2014-10-31",
        "set": "physics",
    }
    seen: list[tuple[int, int | None]] = []
    second = await oai.harvest(
        fetcher, limiter, redis, settings.oai_url, job, sink, max_pages=1, progress=lambda d, t: seen.append((d, t))
    )
    assert replay.seen[1].query == {"verb": "ListRecords", "resumptionToken": "726959|1001"}
    assert second.extra["resumed_from"] == "726959|1001" and seen == [(393, 1440)]
    state = await redis.hgetall(job.key)
    assert state[b"token"] == b"1403493|1001" and state[b"harvested"] == b"393"
    # The next token is refused (expired): the harvest restarts from the beginning once, and says so.
    third = await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, sink, max_pages=2)
    await fetcher.client.aclose()
    assert "restarted" in (third.note or "")
    assert "resumptionToken" not in replay.seen[3].query
    assert [e.source for e in sink.events] == ["arxiv-oai"] * 3


def test_backfill_command(clean_redis: str, replay: ReplayServer, monkeypatch) -> None:  # noqa: ANN001
    replay.routes["/oai"] = lambda p, q, h: Reply(200, OAI_SECOND if "resumptionToken" in q else OAI_FIRST)
    monkeypatch.setenv("REDIS_URL", clean_redis)
    monkeypatch.setenv("FETCHER_OAI_URL", f"{replay.url}/oai")
    monkeypatch.setenv("FETCHER_ARXIV_MIN_INTERVAL_S", "0")
    app = typer.Typer()
    for group, name, func in COMMANDS:
        if not group:
            app.command(name)(func)
    app.command("unused")(lambda: None)
    runner = CliRunner()
    args = ["backfill", "--from", "2014-10-01", "--until", "2014-10-31", "--set", "physics", "--max-pages", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "6 records in 1 pages" in first.stdout
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "387 records in 1 pages" in second.stdout
    assert replay.seen[1].query.get("resumptionToken") == "726959|1001"


CHILD = """
import asyncio, sys, httpx, redis.asyncio as aioredis
from services.fetcher.http import Fetcher
from services.fetcher.ratelimit import SharedRateLimiter
async def main(redis_url, url, n, interval):
    redis = aioredis.Redis.from_url(redis_url)
    fetcher = Fetcher(httpx.AsyncClient(), redis)
    limiter = SharedRateLimiter(redis, "arxiv", min_interval_s=interval)
    for _ in range(n):
        await fetcher.get(url, limiter=limiter)
    await fetcher.client.aclose()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


def test_two_fetcher_processes_share_one_limit(clean_redis: str, replay: ReplayServer) -> None:
    """Two processes, 4 requests each, one shared limiter: never two connections, starts >= interval apart."""
    interval = 0.5  # the same code path as the production 3 s; shorter to keep the suite fast
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, delay_s=0.05)
    args = [clean_redis, f"{replay.url}/api/query", "4", str(interval)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    starts = sorted(s.started for s in replay.seen)
    assert len(starts) == 8
    assert replay.max_in_flight == 1
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= interval, gaps


class HuggingFace:
    """A stand-in Daily Papers endpoint: 404 while down, the recorded list once up; tells when it was asked enough."""

    def __init__(self) -> None:
        self.up = False
        self.requests = 0
        self.asked_enough = asyncio.Event()
        self.enough = 3
        self.loop = asyncio.get_running_loop()

    def __call__(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        self.requests += 1
        if self.requests >= self.enough:
            self.loop.call_soon_threadsafe(self.asked_enough.set)
        return Reply(200, HF, {"Content-Type": "application/json"}) if self.up else Reply(404)


def one_failing_source(replay: ReplayServer, hf: HuggingFace, clean_redis: str, **overrides: object) -> FetcherSettings:
    """An arXiv query and an RSS feed that answer, and Hugging Face (down until ``hf.up``)."""
    rss = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes()
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, {"Content-Type": "application/atom+xml"})
    replay.routes["/rss/cs.CL"] = lambda p, q, h: Reply(200, rss, {"Content-Type": "application/rss+xml"})
    replay.routes["/api/daily_papers"] = hf
    return replayed_settings(
        clean_redis,
        arxiv_api_url=f"{replay.url}/api/query",
        arxiv_rss_url=replay.url,
        hf_url=f"{replay.url}/api/daily_papers",
        arxiv_queries=["cat:cs.CL"],
        rss_categories=["cs.CL"],
        **overrides,
    )


async def test_the_loop_retries_only_the_failing_source(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    """Hugging Face is down: it is retried every retry interval (scaled down here), arXiv stays on the hourly poll."""
    hf = HuggingFace()
    settings = one_failing_source(replay, hf, clean_redis, poll_interval_s=3600, retry_failed_after_s=0.1)
    loop = asyncio.create_task(poll_forever(settings))
    try:
        await asyncio.wait_for(hf.asked_enough.wait(), timeout=30)
    finally:
        await cancel_and_wait(loop)
    assert requests_to(replay, "/api/query") == 1
    assert requests_to(replay, "/rss/cs.CL") == 1
    # The API page and the feed, once each: the retries republished nothing.
    assert len(await redis.xrange("papers.raw")) == 2


async def test_each_source_keeps_its_own_schedule_and_last_poll_waits_for_all(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    hf = HuggingFace()
    settings = one_failing_source(replay, hf, clean_redis)
    start = datetime(2026, 5, 11, 12, 0, tzinfo=UTC)
    first = await poll_once(settings, redis, Sink(), now=start)
    assert first.polled == {"arxiv-api:cat:cs.CL": True, "arxiv-rss": True, "hf-daily": False}
    assert await redis.get(LAST_POLL_KEY) is None  # Hugging Face has never been fetched yet

    retry = start + timedelta(seconds=settings.retry_failed_after_s + 1)
    replay.seen.clear()
    second = await poll_once(settings, redis, Sink(), now=retry)
    assert second.polled == {"hf-daily": False} and [s.path for s in replay.seen] == ["/api/daily_papers"]

    hf.up = True
    later = retry + timedelta(seconds=settings.retry_failed_after_s + 1)
    third = await poll_once(settings, redis, Sink(), now=later)
    assert third.polled == {"hf-daily": True}
    # Every source has now succeeded, the arXiv ones at the first cycle: that is what has been seen since.
    assert await redis.get(LAST_POLL_KEY) == start.isoformat().encode()

    replay.seen.clear()
    hourly = start + timedelta(seconds=settings.poll_interval_s + 1)
    fourth = await poll_once(settings, redis, Sink(), now=hourly)
    assert set(fourth.polled) == {"arxiv-api:cat:cs.CL", "arxiv-rss"}
    assert {s.path for s in replay.seen} == {"/api/query", "/rss/cs.CL"}
    assert await redis.get(LAST_POLL_KEY) == later.isoformat().encode()


class FailingFor(Sink):
    """Publishing fails for one source's events, in a way no source expects (a bug, or a broken event)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    async def __call__(self, event: RawPapers) -> None:
        if event.source == self.source:
            raise RuntimeError("unforeseen")
        await super().__call__(event)


@pytest.mark.parametrize("failure", ["gzip label on a plain body", "unforeseen exception"])
async def test_a_source_failing_in_any_way_does_not_stop_the_sources_after_it(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer, failure: str
) -> None:
    """The RSS feed fails (polled before Hugging Face): Hugging Face is still polled and published, the feed is
    recorded as failed with its reason (so it is retried soon), and the cycle itself does not raise."""
    hf = HuggingFace()
    hf.up = True
    settings = one_failing_source(replay, hf, clean_redis, max_retries=0)
    sink: Sink = Sink()
    if failure.startswith("gzip"):
        rss = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes()
        replay.routes["/rss/cs.CL"] = lambda p, q, h: Reply(200, rss, {"Content-Encoding": "gzip"})
    else:
        sink = FailingFor("arxiv-rss")
    report = await poll_once(settings, redis, sink, now=datetime(2026, 5, 11, 12, 0, tzinfo=UTC))
    assert report.polled == {"arxiv-api:cat:cs.CL": True, "arxiv-rss": False, "hf-daily": True}
    error = next(s.error for s in report.sources if s.error)
    assert ("decompressing" if failure.startswith("gzip") else "RuntimeError: unforeseen") in error
    assert {event.source for event in sink.events} == {"arxiv-api", "hf-daily"}
    assert requests_to(replay, "/api/daily_papers") >= 1


def test_the_daily_oai_window_reaches_back_to_the_last_complete_harvest() -> None:
    today = date(2026, 11, 26)
    assert oai_window_start(today, None, 7) == date(2026, 11, 25)
    assert oai_window_start(today, today, 7) == date(2026, 11, 25)
    assert oai_window_start(today, date(2026, 11, 22), 7) == date(2026, 11, 21)  # four days down: no gap
    assert oai_window_start(today, date(2026, 10, 1), 7) == date(2026, 11, 19)  # capped


def oai_only(replay: ReplayServer, clean_redis: str) -> FetcherSettings:
    """The daily OAI harvest alone, against arXiv's recorded answer for a window without records."""
    no_records = (FIXTURES / "arxiv_oai/saelim_ErrorResponseNoRecordsMatch.xml").read_bytes()
    replay.routes["/oai"] = lambda p, q, h: Reply(200, no_records)
    return FetcherSettings(
        redis_url=clean_redis,
        arxiv_queries=[],
        rss_categories=[],
        hf_enabled=False,
        oai_enabled=True,
        oai_url=f"{replay.url}/oai",
        arxiv_min_interval_s=0,
    )


async def test_the_daily_oai_harvest_starts_where_the_last_complete_one_ended(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    # The window is what is checked; arXiv's answer for a window without records completes the harvest at once.
    settings = oai_only(replay, clean_redis)
    now = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    await redis.set(OAI_COVERED_KEY, "2026-11-22")  # the fetcher was down for four days
    report = await poll_once(settings, redis, Sink(), now=now)
    assert report.ok
    assert replay.seen[0].query["from"] == "2026-11-21" and replay.seen[0].query["until"] == "2026-11-26"
    assert await redis.get(OAI_COVERED_KEY) == b"2026-11-26"
    await poll_once(settings, redis, Sink(), now=now + timedelta(days=1))
    assert replay.seen[1].query["from"] == "2026-11-25"


async def test_the_daily_oai_harvest_runs_once_per_announcement(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    """OAI records change when arXiv announces: the hourly poll harvests the window once after each announcement
    (and its settling time), not at every poll."""
    settings = oai_only(replay, clean_redis)
    morning = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # Tuesday, after Monday's 20:00 US Eastern announcement
    assert (await poll_once(settings, redis, Sink(), now=morning)).ok
    assert len(replay.seen) == 1
    for hours in (1, 2, 12, 19):  # the same day, up to the next announcement (Tuesday 20:00 EST = 01:00 UTC)
        report = await poll_once(settings, redis, Sink(), now=morning + timedelta(hours=hours), force=True)
        assert report.ok and "after the latest announcement" in report.sources[0].note
    assert len(replay.seen) == 1
    settled = datetime(2026, 11, 25, 1, 0, tzinfo=UTC) + timedelta(hours=2, minutes=1)
    await poll_once(settings, redis, Sink(), now=settled, force=True)
    assert len(replay.seen) == 2
    assert replay.seen[1].query["from"] == "2026-11-23" and replay.seen[1].query["until"] == "2026-11-25"


async def test_days_beyond_the_catch_up_limit_are_named_with_the_command_that_fetches_them(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    settings = oai_only(replay, clean_redis)
    await redis.set(OAI_COVERED_KEY, "2026-10-01")  # down for eight weeks; the daily window reaches back 7 days
    report = await poll_once(settings, redis, Sink(), now=datetime(2026, 11, 26, 6, 0, tzinfo=UTC))
    assert report.ok and replay.seen[0].query["from"] == "2026-11-19"
    assert "paperwire backfill --from 2026-10-01 --until 2026-11-18" in report.sources[0].note


def test_the_default_user_agent_is_flagged_until_it_names_a_real_contact() -> None:
    assert "FETCHER_USER_AGENT" in (FetcherSettings().contact_problem() or "")
    assert FetcherSettings(user_agent="labwire/1.0 (mailto:alerts@lab.uni-x.de)").contact_problem() is None


async def test_a_resumption_token_that_answers_with_itself_stops_the_harvest(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    replay.routes["/oai"] = lambda p, q, h: Reply(200, OAI_FIRST)  # every page says "next: 726959|1001"
    settings = FetcherSettings(redis_url=clean_redis, oai_url=f"{replay.url}/oai", arxiv_min_interval_s=0)
    fetcher, limiter = make_fetcher(settings, redis)
    sink = Sink()
    try:
        job = oai.Harvest(date(2014, 10, 1), date(2014, 10, 31), "physics", "arXivRaw")
        report = await oai.harvest(fetcher, limiter, redis, settings.oai_url, job, sink)
    finally:
        await fetcher.client.aclose()
    assert report.requests == 2 and len(sink.events) == 1  # the repeated page is not published again
    assert "726959|1001" in (report.error or "")
