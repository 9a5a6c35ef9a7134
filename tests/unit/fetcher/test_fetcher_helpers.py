"""Pure fetcher helpers: Retry-After, backoff, paging peeks on the recorded responses, URL builders."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from services.fetcher.http import backoff_s, retry_after_s
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.settings import FetcherSettings
from services.fetcher.sources.arxiv_api import page_is_short, query_params
from services.fetcher.sources.arxiv_rss import feed_url
from services.fetcher.sources.common import peek_api_page, peek_items_per_page, peek_oai_page

FIXTURES = Path(__file__).parents[2] / "fixtures"


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_s("7") == 7.0
    now = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("Sat, 01 Aug 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_s("Sat, 01 Aug 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    values = [backoff_s(3, 2.0, 300.0, rng) for _ in range(50)]
    assert all(4.0 <= v <= 8.0 for v in values) and len(set(values)) > 40
    assert backoff_s(20, 2.0, 300.0, rng) <= 300.0


def test_the_arxiv_slot_lease_is_short_but_outlasts_the_spacing() -> None:
    """A crashed holder's slot frees in seconds, not minutes; the lease stays above 1.5 intervals, so the next
    request after a crash still waits out arXiv's 3 s."""
    settings = FetcherSettings()
    limiter = SharedRateLimiter(
        aioredis.Redis(), min_interval_s=settings.arxiv_min_interval_s, lock_ttl_s=settings.arxiv_lock_ttl_s
    )
    assert limiter.lock_ttl_ms <= 15_000
    assert SharedRateLimiter(aioredis.Redis(), min_interval_s=3.0, lock_ttl_s=1.0).lock_ttl_ms == 4_500


def test_peek_api_pages_match_the_files() -> None:
    body = (FIXTURES / "arxiv_api/extracted_bodies/arxivpy_q_testing_s10_m10_34e56e15aaac.xml").read_bytes()
    assert peek_api_page(body) == (10, 214881)
    old = (FIXTURES / "arxiv_api/xiv_q_cat-cs.RO_AND_neural_max2_2025-10-17.xml").read_bytes()
    assert peek_api_page(old) == (2, 5619)
    empty = (FIXTURES / "arxiv_api/extracted_bodies/arxivpy_id_0000.0000_s0_m100_8b51d9633a68.xml").read_bytes()
    assert peek_api_page(empty) == (0, 0)


def test_items_per_page_is_what_arxiv_answered() -> None:
    body = (FIXTURES / "arxiv_api/extracted_bodies/arxivpy_q_testing_s10_m10_34e56e15aaac.xml").read_bytes()
    assert peek_items_per_page(body) == 10
    old = (FIXTURES / "arxiv_api/xiv_q_cat-cs.RO_AND_neural_max2_2025-10-17.xml").read_bytes()
    assert peek_items_per_page(old) == 2
    assert peek_items_per_page(b"<feed/>") is None


def test_short_page_means_results_are_missing() -> None:
    assert page_is_short(start=100, asked=100, entries=0, total=300, per_page=100)
    assert page_is_short(start=100, asked=100, entries=40, total=300, per_page=None)
    assert not page_is_short(start=200, asked=100, entries=100, total=300, per_page=100)  # a full page
    assert not page_is_short(start=200, asked=100, entries=57, total=257, per_page=100)  # the last page
    assert not page_is_short(start=0, asked=100, entries=2, total=108507, per_page=2)  # answers another request
    assert not page_is_short(start=0, asked=100, entries=0, total=None, per_page=None)  # nothing to compare with


def test_peek_oai_pages_match_the_files() -> None:
    body = (FIXTURES / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
    assert peek_oai_page(body) == (387, "1403493|1001", 1440, None)
    error = (FIXTURES / "arxiv_oai/saelim_ErrorResponseBadResumptionToken.xml").read_bytes()
    assert peek_oai_page(error) == (0, None, None, "badResumptionToken")


def test_url_builders() -> None:
    assert feed_url("https://rss.arxiv.org/", ["cs.CL", "cs.LG"]) == "https://rss.arxiv.org/rss/cs.CL+cs.LG"
    assert feed_url("https://rss.arxiv.org", ["cs.AI"], "atom") == "https://rss.arxiv.org/atom/cs.AI"
    assert query_params(search_query="cat:cs.CL", start=200, max_results=5000) == {
        "start": 200,
        "max_results": 2000,
        "search_query": "cat:cs.CL",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    assert (
        query_params(id_list=["2401.01234", "hep-th/9901001"], max_results=2)["id_list"] == "2401.01234,hep-th/9901001"
    )
