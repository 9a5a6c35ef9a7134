"""The per-source schedule lives in Redis: a restart does not re-poll what just ran, replicas racing on a due
source poll it once, a crashed poller's claim expires, a live one's is renewed, and ``paperwire fetch schedule``
says when each source is next due and why."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import typer
from fetcher_replay import ReplayServer, Reply, replayed_settings, requests_to
from typer.testing import CliRunner

from services.fetcher.app import poll_forever
from services.fetcher.cli import COMMANDS
from services.fetcher.plan import CLAIM_KEY, STATE_KEY, SourceSchedule
from services.fetcher.poll import poll_once, source_schedule
from services.fetcher.settings import FetcherSettings
from shared.events import RawPapers
from shared.tasks import cancel_and_wait

FIXTURES = Path(__file__).parents[2] / "fixtures"
HF = (FIXTURES / "hf_daily_papers/llmpaperradar_hf_daily_papers_2026-05.json").read_bytes()
HF_PATH = "/api/daily_papers"


class Sink:
    def __init__(self) -> None:
        self.events: list[RawPapers] = []

    async def __call__(self, event: RawPapers) -> None:
        self.events.append(event)


def hf_only(replay: ReplayServer, clean_redis: str, delay_s: float = 0.0, **overrides: object) -> FetcherSettings:
    """One source, Hugging Face Daily Papers (one date), answered by a real recording."""
    replay.routes[HF_PATH] = lambda p, q, h: Reply(200, HF, {"Content-Type": "application/json"}, delay_s=delay_s)
    return replayed_settings(clean_redis, hf_url=f"{replay.url}{HF_PATH}", rss_categories=[], **overrides)


async def test_a_new_scheduler_on_the_same_redis_does_not_repoll_a_recent_source(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    settings = hf_only(replay, clean_redis)
    now = datetime.now(UTC)
    first = await poll_once(settings, redis, Sink(), now=now, plan=source_schedule(settings, redis, "fetcher-a-1"))
    assert first.polled == {"hf-daily": True}
    state = await redis.hgetall(STATE_KEY.format(source="hf-daily"))
    assert state[b"ok"] == b"1" and state[b"by"] == b"fetcher-a-1" and state[b"last_ok"]
    assert await redis.exists(CLAIM_KEY.format(source="hf-daily")) == 0  # released once recorded

    # The process restarted: a fresh schedule object, nothing in memory.
    later = now + timedelta(minutes=10)
    again = await poll_once(settings, redis, Sink(), now=later, plan=source_schedule(settings, redis, "fetcher-a-2"))
    assert again.polled == {} and requests_to(replay, HF_PATH) == 1
    # An interval later it is due again.
    hourly = now + timedelta(seconds=settings.poll_interval_s + 5)
    due = await poll_once(settings, redis, Sink(), now=hourly, plan=source_schedule(settings, redis, "fetcher-a-2"))
    assert due.polled == {"hf-daily": True} and requests_to(replay, HF_PATH) == 2


async def test_a_restarted_loop_does_not_poll_at_start_what_just_ran(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    settings = hf_only(replay, clean_redis, poll_on_start=True)
    first = asyncio.create_task(poll_forever(settings))
    try:
        for tick in range(300):  # published, and its outcome recorded (in memory only, before the change)
            if await redis.xlen("papers.raw") and (
                await redis.hget(STATE_KEY.format(source="hf-daily"), "ok") == b"1" or tick > 40
            ):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the first loop never polled")
    finally:
        await cancel_and_wait(first)
    assert requests_to(replay, HF_PATH) == 1
    restarted = asyncio.create_task(poll_forever(settings))  # poll_on_start: it looks at once
    try:
        await asyncio.sleep(1.0)
    finally:
        await cancel_and_wait(restarted)
    assert requests_to(replay, HF_PATH) == 1
    assert len(await redis.xrange("papers.raw")) == 1


async def test_two_replicas_racing_on_a_due_source_poll_it_once(clean_redis: str, replay: ReplayServer) -> None:
    settings = hf_only(replay, clean_redis, delay_s=0.3)
    one, two = aioredis.Redis.from_url(clean_redis), aioredis.Redis.from_url(clean_redis)
    try:
        reports = await asyncio.gather(
            poll_once(settings, one, Sink(), plan=source_schedule(settings, one, "fetcher-a-1")),
            poll_once(settings, two, Sink(), plan=source_schedule(settings, two, "fetcher-b-1")),
        )
    finally:
        await one.aclose()
        await two.aclose()
    assert requests_to(replay, HF_PATH) == 1
    assert sorted(len(r.polled) for r in reports) == [0, 1]
    loser = next(r for r in reports if not r.polled)
    assert loser.skipped["hf-daily"].startswith(("claimed by another fetcher", "polled by another fetcher meanwhile"))


async def test_only_one_of_many_claims_wins(redis: aioredis.Redis, clean_redis: str) -> None:
    schedules = [SourceSchedule(redis, f"fetcher-{n}", lease_s=30) for n in range(20)]
    won = await asyncio.gather(*(s.try_claim("arxiv-api:cat:cs.CL") for s in schedules))
    assert sum(won) == 1
    assert 0 < await redis.pttl(CLAIM_KEY.format(source="arxiv-api:cat:cs.CL")) <= 30_000


async def test_a_replica_that_read_due_before_another_finished_does_not_poll_again(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer
) -> None:
    """The re-check under the claim: B saw the source due, A polled and released, then B got the claim."""
    settings = hf_only(replay, clean_redis)
    a, b = source_schedule(settings, redis, "fetcher-a-1"), source_schedule(settings, redis, "fetcher-b-1")
    now = datetime.now(UTC)
    assert [d.due for d in await b.decisions(["hf-daily"], now)] == [True]
    assert (await poll_once(settings, redis, Sink(), now=now, plan=a)).polled == {"hf-daily": True}
    assert await b.try_claim("hf-daily")  # free again: A released it
    assert not await b.due_now("hf-daily", now + timedelta(seconds=1))
    await b.release("hf-daily")


async def test_a_crashed_pollers_claim_expires(redis: aioredis.Redis, clean_redis: str, replay: ReplayServer) -> None:
    settings = hf_only(replay, clean_redis)
    crashed = source_schedule(settings.model_copy(update={"poll_lease_s": 0.3}), redis, "fetcher-dead-1")
    assert await crashed.try_claim("hf-daily")  # and never renews nor releases it
    live = source_schedule(settings, redis, "fetcher-b-1")
    blocked = await poll_once(settings, redis, Sink(), plan=live)
    assert blocked.polled == {} and list(blocked.skipped) == ["hf-daily"]
    assert blocked.skipped["hf-daily"].startswith("claimed by another fetcher (fetcher-dead-1) until ")
    assert requests_to(replay, HF_PATH) == 0
    await asyncio.sleep(0.4)
    freed = await poll_once(settings, redis, Sink(), plan=live)
    assert freed.polled == {"hf-daily": True} and requests_to(replay, HF_PATH) == 1


async def test_a_live_pollers_claim_is_renewed_past_its_lease(redis: aioredis.Redis, clean_redis: str) -> None:
    holder = SourceSchedule(redis, "fetcher-a-1", lease_s=0.3)
    other = SourceSchedule(redis, "fetcher-b-1", lease_s=0.3)
    async with holder.claimed("arxiv-oai") as held:
        assert held
        for _ in range(4):  # 1.2 s: four leases long
            await asyncio.sleep(0.3)
            assert not await other.try_claim("arxiv-oai")
    assert await redis.exists(CLAIM_KEY.format(source="arxiv-oai")) == 0
    assert await other.try_claim("arxiv-oai")


async def test_a_poll_that_raises_is_recorded_as_failed_and_released(
    redis: aioredis.Redis, clean_redis: str, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = hf_only(replay, clean_redis)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("parser of dates exploded")

    monkeypatch.setattr("services.fetcher.sources.hf_daily.fetch_day", broken)
    report = await poll_once(settings, redis, Sink())  # reported, not raised: the sources after it still run
    assert report.polled == {"hf-daily": False} and "exploded" in report.sources[0].error
    state = await redis.hgetall(STATE_KEY.format(source="hf-daily"))
    assert state[b"ok"] == b"0" and b"exploded" in state[b"error"]
    assert await redis.exists(CLAIM_KEY.format(source="hf-daily")) == 0
    [decision] = await source_schedule(settings, redis).decisions(["hf-daily"], datetime.now(UTC))
    assert not decision.due and "the last poll failed: RuntimeError: parser of dates exploded" in decision.reason


async def test_the_schedule_command_prints_each_sources_next_due_time_and_reason(
    redis: aioredis.Redis, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", clean_redis)
    monkeypatch.setenv("FETCHER_ARXIV_QUERIES", json.dumps(["cat:cs.CL", "cat:cs.LG"]))
    monkeypatch.setenv("FETCHER_RSS_CATEGORIES", json.dumps(["cs.CL"]))
    monkeypatch.setenv("FETCHER_OAI_ENABLED", "true")
    monkeypatch.setenv("FETCHER_POLL_INTERVAL_S", "1800")
    settings = FetcherSettings()
    now = datetime.now(UTC)
    plan = source_schedule(settings, redis, "fetcher-a-1")
    await plan.record("arxiv-api:cat:cs.CL", now - timedelta(minutes=5), now - timedelta(minutes=4), True, None)
    await plan.record("arxiv-rss", now - timedelta(hours=2), now - timedelta(hours=2), True, None)
    await plan.record("hf-daily", now - timedelta(minutes=1), now - timedelta(minutes=1), False, "HTTP 503")
    other = source_schedule(settings, redis, "fetcher-b-7")
    assert await other.try_claim("arxiv-oai")

    app = typer.Typer()
    for group, name, func in COMMANDS:
        if group == "fetch":
            app.command(name)(func)
    app.command("unused")(lambda: None)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["schedule"])
    assert result.exit_code == 0, result.output
    lines = {line.split(": next due")[0]: line for line in result.stdout.splitlines() if ": next due" in line}
    assert list(lines) == ["arxiv-api:cat:cs.CL", "arxiv-api:cat:cs.LG", "arxiv-rss", "arxiv-oai", "hf-daily"]
    assert "next due 20" in lines["arxiv-api:cat:cs.CL"]
    assert "waiting: next at" in lines["arxiv-api:cat:cs.CL"] and "(every 30 min)" in lines["arxiv-api:cat:cs.CL"]
    assert lines["arxiv-api:cat:cs.LG"] == "arxiv-api:cat:cs.LG: next due now; due: never ran"
    assert lines["arxiv-rss"].startswith("arxiv-rss: next due now; due: interval 30 min elapsed")
    assert "claimed by another fetcher (fetcher-b-7) until " in lines["arxiv-oai"]
    assert "waiting: next at" in lines["hf-daily"] and "the last poll failed: HTTP 503" in lines["hf-daily"]
    assert "arXiv next announcement:" in result.stdout
    await other.release("arxiv-oai")
