"""The fetcher against a local server replaying recorded arXiv/HF responses, failures included."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fetcher_replay import ReplayServer, Reply

from services.fetcher.http import Fetcher, FetchError, ResponseTooLarge
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.sources import arxiv_api, arxiv_rss
from services.fetcher.sources.common import peek_api_page
from shared.events import RawPapers

FIXTURES = Path(__file__).parents[2] / "fixtures"
API = FIXTURES / "arxiv_api" / "extracted_bodies"
PAGES = {
    start: (API / name).read_bytes()
    for start, name in [
        (0, "arxivpy_q_testing_s0_m10_bc5a6c384fe9.xml"),
        (10, "arxivpy_q_testing_s10_m10_34e56e15aaac.xml"),
        (20, "arxivpy_q_testing_s20_m10_348a237fecab.xml"),
        (30, "arxivpy_q_testing_s30_m10_f2e39f0143dc.xml"),
        (40, "arxivpy_q_testing_s40_m10_96dd32eb854c.xml"),
        (50, "arxivpy_q_testing_s50_m10_7f488ab8598c.xml"),
    ]
}
CL = (FIXTURES / "arxiv_api" / "llmpaperradar_q_cat-cs.CL_max2_2026-05-11.xml").read_bytes()
XML = {"Content-Type": "application/atom+xml; charset=utf-8"}


def make(redis: aioredis.Redis, **kwargs: float) -> tuple[Fetcher, SharedRateLimiter]:
    client = httpx.AsyncClient(timeout=httpx.Timeout(kwargs.pop("read_timeout", 5.0), connect=2.0))
    fetcher = Fetcher(client, redis, max_retries=3, backoff_base_s=0.05, backoff_max_s=0.2, **kwargs)  # type: ignore[arg-type]
    return fetcher, SharedRateLimiter(redis, "arxiv", min_interval_s=0.0)


class Sink:
    def __init__(self) -> None:
        self.events: list[RawPapers] = []

    async def __call__(self, event: RawPapers) -> None:
        self.events.append(event)


async def test_paging_across_recorded_pages(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, PAGES[int(q["start"])], XML)
    fetcher, limiter = make(redis)
    sink = Sink()
    report = await arxiv_api.fetch_query(
        fetcher, limiter, f"{replay.url}/api/query", sink, search_query="all:testing", max_results=60, page_size=10
    )
    await fetcher.client.aclose()
    assert report.ok and report.requests == 6 and report.entries == 60
    assert [int(s.query["start"]) for s in replay.seen] == [0, 10, 20, 30, 40, 50]
    assert all(s.query["max_results"] == "10" and s.query["search_query"] == "all:testing" for s in replay.seen)
    assert report.extra["total_results"] == "214881"
    assert [e.source for e in sink.events] == ["arxiv-api"] * 6
    assert sink.events[1].body == PAGES[10].decode()


async def test_paging_stops_on_a_short_page(redis: aioredis.Redis, replay: ReplayServer) -> None:
    """The demo's replay serves the same 2-entry body for every query: one request, not fifty."""
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, limiter = make(redis)
    report = await arxiv_api.fetch_query(
        fetcher, limiter, f"{replay.url}/api/query", Sink(), search_query="cat:cs.CL", max_results=100
    )
    await fetcher.client.aclose()
    assert report.requests == 1 and report.entries == 2
    assert report.ok and "answered 2 per page, not the 100 asked" in (report.note or "")


async def test_429_retry_after_is_honoured_by_everyone(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.scripts["/api/query"] = [Reply(429, b"slow down", {"Retry-After": "1"})]
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, limiter = make(redis)
    result = await fetcher.get(f"{replay.url}/api/query", params={"id_list": "x"}, limiter=limiter)
    await fetcher.client.aclose()
    assert result.status == 200 and result.attempts == 2
    # Retry-After went into the shared limiter: the retry was not sent before it passed.
    assert replay.seen[1].started - replay.seen[0].ended >= 0.95
    metrics = await redis.hgetall("fetcher:metrics")
    assert metrics[b"status_429"] == b"1" and metrics[b"retries"] == b"1" and metrics[b"ok"] == b"1"


async def test_503_then_success(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.scripts["/api/query"] = [Reply(503, b"busy"), Reply(503, b"busy")]
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, limiter = make(redis)
    result = await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert result.attempts == 3 and b"<feed" in result.body


async def test_503_forever_gives_up_with_the_reason(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.routes["/api/query"] = lambda p, q, h: Reply(503, b"busy")
    fetcher, limiter = make(redis)
    with pytest.raises(FetchError, match="after 4 attempts: HTTP 503"):
        await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert len(replay.seen) == 4


async def test_timeout_is_retried(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.scripts["/api/query"] = [Reply(200, CL, XML, delay_s=1.5)]
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, limiter = make(redis, read_timeout=0.5)
    result = await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert result.attempts == 2 and result.body == CL
    assert (await redis.hget("fetcher:metrics", "timeout")) == b"1"


async def test_truncated_body_is_retried_not_published(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.scripts["/api/query"] = [Reply(200, CL, XML, truncate_to=len(CL) // 2)]
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, limiter = make(redis)
    sink = Sink()
    report = await arxiv_api.fetch_query(fetcher, limiter, f"{replay.url}/api/query", sink, search_query="q")
    assert report.ok and report.requests == 1
    await fetcher.client.aclose()
    assert len(replay.seen) == 2 and len(sink.events) == 1 and sink.events[0].body == CL.decode()


async def test_a_body_that_does_not_decode_is_retried_then_a_fetch_error(
    redis: aioredis.Redis, replay: ReplayServer
) -> None:
    """A proxy labels the real page gzip without compressing it: the request is retried, then fails as a
    FetchError (which a source reports and skips), not as zlib's own exception."""
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, {**XML, "Content-Encoding": "gzip"})
    fetcher, limiter = make(redis)
    with pytest.raises(FetchError, match="after 4 attempts: transport_error: error: Error -3 while decompressing"):
        await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert len(replay.seen) == 4


async def test_response_size_limit(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, PAGES[0], XML)
    fetcher, limiter = make(redis, max_bytes=4096)
    with pytest.raises(ResponseTooLarge):
        await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert len(replay.seen) == 1  # not retried: it would be as large next time


async def test_client_error_is_not_retried(redis: aioredis.Redis, replay: ReplayServer) -> None:
    body = (FIXTURES / "arxiv_api/extracted_bodies/arxivpy_id_abc_s0_m100_b79c8dcf6bc3.xml").read_bytes()
    replay.routes["/api/query"] = lambda p, q, h: Reply(400, body, XML)
    fetcher, limiter = make(redis)
    with pytest.raises(FetchError, match="HTTP 400"):
        await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    assert len(replay.seen) == 1


async def test_conditional_rss_fetch(redis: aioredis.Redis, replay: ReplayServer) -> None:
    feed = (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes()

    def route(path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == '"v1"':
            return Reply(304, b"")
        return Reply(200, feed, {"ETag": '"v1"', "Content-Type": "application/rss+xml"})

    replay.routes["/rss/cs.CL+cs.LG"] = route
    fetcher, limiter = make(redis)
    sink = Sink()
    first = await arxiv_rss.fetch_feed(fetcher, limiter, replay.url, ["cs.CL", "cs.LG"], sink)
    second = await arxiv_rss.fetch_feed(fetcher, limiter, replay.url, ["cs.CL", "cs.LG"], sink)
    await fetcher.client.aclose()
    assert first.published == 1 and first.entries == 3
    assert second.not_modified == 1 and second.published == 0
    assert len(sink.events) == 1 and sink.events[0].url == f"{replay.url}/rss/cs.CL+cs.LG"
    assert replay.seen[1].headers["if-none-match"] == '"v1"'


async def test_rate_limit_spacing_in_one_process(redis: aioredis.Redis, replay: ReplayServer) -> None:
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML)
    fetcher, _ = make(redis)
    limiter = SharedRateLimiter(redis, "arxiv", min_interval_s=0.3)
    start = time.time()
    for _ in range(3):
        await fetcher.get(f"{replay.url}/api/query", limiter=limiter)
    await fetcher.client.aclose()
    starts = [s.started for s in replay.seen]
    assert all(b - a >= 0.3 for a, b in zip(starts, starts[1:], strict=False)), (starts, start)


async def test_retry_after_longer_than_the_lock_ttl_keeps_one_connection(
    redis: aioredis.Redis, replay: ReplayServer
) -> None:
    """Three replicas; the first answer is a 429 whose Retry-After outlasts the slot lock's lease (scaled down: 2 s
    against 0.5 s). Every replica waits it out, one connection at a time, and none sends before it ends, when arXiv
    is already throttling us."""
    replay.scripts["/api/query"] = [Reply(429, b"slow down", {"Retry-After": "2"}, delay_s=0.2)]
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, CL, XML, delay_s=0.3)

    async def replica() -> int:
        client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        fetcher = Fetcher(client, redis, max_retries=3, backoff_base_s=0.05, backoff_max_s=0.2)
        limiter = SharedRateLimiter(redis, "arxiv", min_interval_s=0.0, lock_ttl_s=0.5, poll_s=0.01)
        try:
            return (await fetcher.get(f"{replay.url}/api/query", limiter=limiter)).status
        finally:
            await client.aclose()

    assert await asyncio.gather(replica(), replica(), replica()) == [200, 200, 200]
    assert len(replay.seen) == 4
    assert replay.max_in_flight == 1
    throttled_until = replay.seen[0].ended + 2.0
    assert all(s.started >= throttled_until - 0.05 for s in replay.seen[1:])


def keep_entries(body: bytes, n: int) -> bytes:
    """A recorded page with only its first ``n`` entries: arXiv's empty (n=0) or short page, totals untouched."""
    head, *entries = re.split(rb"(?=<entry[\s>])", body)
    tail = entries[-1][entries[-1].rindex(b"</entry>") + len(b"</entry>") :]
    kept = [e[: e.rindex(b"</entry>") + len(b"</entry>")] for e in entries[:n]]
    return head + b"".join(kept) + tail


async def test_an_empty_page_inside_the_results_is_asked_for_again(redis: aioredis.Redis, replay: ReplayServer) -> None:
    """arXiv answers the page at start=10 empty twice, then properly: nothing is skipped, nothing empty published."""
    empty = keep_entries(PAGES[10], 0)
    answers = {10: [empty, empty]}
    replay.routes["/api/query"] = lambda p, q, h: Reply(
        200, (answers.get(int(q["start"])) or [PAGES[int(q["start"])]]).pop(0), XML
    )
    fetcher, limiter = make(redis)
    sink = Sink()
    report = await arxiv_api.fetch_query(
        fetcher, limiter, f"{replay.url}/api/query", sink, search_query="all:testing", max_results=30, page_size=10
    )
    await fetcher.client.aclose()
    assert [int(s.query["start"]) for s in replay.seen] == [0, 10, 10, 10, 20]
    assert report.ok and report.note is None and report.entries == 30 and report.requests == 5
    assert [e.body.encode() for e in sink.events] == [PAGES[0], PAGES[10], PAGES[20]]


async def test_a_page_that_stays_short_is_reported_not_claimed_complete(
    redis: aioredis.Redis, replay: ReplayServer
) -> None:
    short = keep_entries(PAGES[10], 4)
    assert peek_api_page(short) == (4, 214881)
    replay.routes["/api/query"] = lambda p, q, h: Reply(200, short if q["start"] == "10" else PAGES[0], XML)
    fetcher, limiter = make(redis)
    sink = Sink()
    report = await arxiv_api.fetch_query(
        fetcher,
        limiter,
        f"{replay.url}/api/query",
        sink,
        search_query="all:testing",
        max_results=30,
        page_size=10,
        short_page_retries=2,
    )
    await fetcher.client.aclose()
    assert [int(s.query["start"]) for s in replay.seen] == [0, 10, 10, 10]
    assert not report.ok and report.entries == 14
    assert "start=10" in (report.error or "") and "14 of 30" in (report.error or "")
    # The four papers it did get are real: handed on once, with the full first page.
    assert [e.body.encode() for e in sink.events] == [PAGES[0], short]
