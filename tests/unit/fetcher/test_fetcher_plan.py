"""Per-source scheduling: a failing source is retried sooner on its own; last_poll waits for every source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.fetcher.poll import SourcePlan, source_keys
from services.fetcher.settings import FetcherSettings

T0 = datetime(2026, 5, 11, 12, 0, tzinfo=UTC)
KEYS = ["arxiv-api:cat:cs.CL", "arxiv-rss", "hf-daily"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_source_keys_follow_the_settings() -> None:
    settings = FetcherSettings(arxiv_queries=["cat:cs.CL", "cat:cs.LG"], rss_categories=["cs.CL"], oai_enabled=True)
    assert source_keys(settings) == ["arxiv-api:cat:cs.CL", "arxiv-api:cat:cs.LG", "arxiv-rss", "arxiv-oai", "hf-daily"]
    assert source_keys(FetcherSettings(rss_categories=[], hf_enabled=False)) == []


def test_only_the_failed_source_comes_back_sooner() -> None:
    plan = SourcePlan()
    assert plan.due(KEYS, T0) == KEYS  # never polled: due
    plan.record({"arxiv-api:cat:cs.CL": True, "arxiv-rss": True, "hf-daily": False}, T0, at(5), 3600, 120)
    assert plan.seconds_until_due(KEYS, at(5), 3600) == 120
    assert plan.due(KEYS, at(125)) == ["hf-daily"]
    plan.record({"hf-daily": True}, at(125), at(126), 3600, 120)
    assert plan.due(KEYS, at(3605)) == ["arxiv-api:cat:cs.CL", "arxiv-rss"]
    assert plan.seconds_until_due(KEYS, at(3605), 3600) == 0


def test_complete_since_is_the_oldest_success() -> None:
    plan = SourcePlan()
    plan.record({"arxiv-api:cat:cs.CL": True, "arxiv-rss": True, "hf-daily": False}, T0, at(5), 3600, 120)
    assert plan.complete_since(KEYS) is None
    plan.record({"hf-daily": True}, at(125), at(126), 3600, 120)
    assert plan.complete_since(KEYS) == T0
    assert plan.complete_since([]) is None


def test_nothing_configured_sleeps_the_interval() -> None:
    assert SourcePlan().seconds_until_due([], T0, 3600) == 3600
