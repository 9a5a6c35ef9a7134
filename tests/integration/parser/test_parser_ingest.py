"""Parsed papers against a real Redis PaperStore: new, updated, merged, and nothing for a repeat.

Fixtures share no paper across sources, so the cross-source and new-version cases use variants of
copies built here at run time (version bumped, HF id pointed at an RSS paper, upvotes changed).
Hugging Face counts that move go to papers.trending (``report.trending``), not papers.parsed.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis

from services.parser.ingest import (
    _PLAN,
    commit,
    forget_plan,
    ingest,
    load_plan,
    plan_key,
    prepare,
    restamp,
    save_plan,
)
from services.parser.parse import parse_document, unwrap_recording
from services.parser.result import ParseResult
from services.parser.tokens import PaperTokenizer
from shared.events import TokenIds
from shared.storage import PaperStore
from tests.unit.embedder.model_cache import exported_model_dir

FIXTURES = Path(__file__).parents[2] / "fixtures"


def api_body() -> str:
    return unwrap_recording((FIXTURES / "arxiv_api/arxivpy_id_astro-ph_0601001_s0_m100_3150dca9dc76.json").read_bytes())


async def test_new_then_repeat_then_new_version(redis: aioredis.Redis) -> None:
    store = PaperStore(redis)
    first = await ingest(parse_document("arxiv-api", api_body()), store)
    assert [(e.paper.id, e.change) for e in first.events] == [("astro-ph/0601001", "new")]
    repeat = await ingest(parse_document("arxiv-api", api_body()), store)
    assert repeat.events == [] and repeat.unchanged == 1
    bumped = api_body().replace("astro-ph/0601001v1</id>", "astro-ph/0601001v2</id>")
    update = await ingest(parse_document("arxiv-api", bumped), store)
    assert [(e.paper.id, e.change, e.paper.version) for e in update.events] == [("astro-ph/0601001", "updated", 2)]
    stored = await store.get("astro-ph/0601001")
    assert stored.version == 2 and stored.authors[0].affiliations == ["Ohio State"]


async def test_same_paper_from_rss_and_hf_is_one_paper_and_upvotes_flow(redis: aioredis.Redis) -> None:
    store = PaperStore(redis)
    rss = parse_document("arxiv-rss", (FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes())
    assert len((await ingest(rss, store)).events) == 3
    items = json.loads((FIXTURES / "hf_daily_papers/llmpaperradar_hf_daily_papers_2026-05.json").read_text())
    items = items[:1]
    items[0]["paper"]["id"] = "2604.22002"  # the variant: HF lists the RSS paper
    hf = await ingest(parse_document("hf-daily", json.dumps(items)), store)
    (event,) = hf.events
    assert event.change == "merged"
    paper = event.paper
    assert paper.sources == ["arxiv-rss", "hf-daily"]
    assert paper.announce_type == "new" and paper.categories == ["cs.CL"]  # RSS facts kept
    assert paper.hf.upvotes == 86 and paper.hf.github_repo == "https://github.com/DCI-Agent/DCI-Agent-Lite"
    assert paper.version == 1 and paper.title.startswith("When Cow Urine Cures Constipation")
    # Known from RSS, first listed on Hugging Face: its first count goes on papers.trending.
    (first,) = hf.trending
    assert (first.paper_id, first.daily_date, first.upvotes, first.upvotes_before) == (
        "2604.22002",
        date(2026, 5, 8),  # submittedOnDailyAt in the file
        86,
        None,
    )
    # Same list again: nothing new on either stream.
    repeat = await ingest(parse_document("hf-daily", json.dumps(items)), store)
    assert repeat.events == [] and repeat.trending == []
    # Upvotes move: one trending event, and no papers.parsed (the text to embed did not change).
    items[0]["paper"]["upvotes"] = 120
    moved = await ingest(parse_document("hf-daily", json.dumps(items)), store)
    assert moved.events == [] and moved.unchanged == 1
    (trend,) = moved.trending
    assert (trend.paper_id, trend.upvotes, trend.upvotes_before) == ("2604.22002", 120, 86)
    stored = await store.get("2604.22002")
    assert stored.hf.upvotes == 120 and stored.sources == ["arxiv-rss", "hf-daily"]


async def test_first_listing_of_a_day_publishes_every_first_count(redis: aioredis.Redis) -> None:
    """sotawhat 2026-06-12: 30 papers, none known; upvotes read by hand: 2606.13681 118, 2606.13106 18."""
    store = PaperStore(redis)
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_bytes()
    first = await ingest(parse_document("hf-daily", body), store, date(2026, 6, 12))
    assert len(first.events) == 30 and {e.change for e in first.events} == {"new"}
    counts = {t.paper_id: (t.upvotes, t.upvotes_before, t.daily_date) for t in first.trending}
    assert len(counts) == 30
    assert counts["2606.13681"] == (118, None, date(2026, 6, 12))
    assert counts["2606.13106"] == (18, None, date(2026, 6, 12))


async def test_weekend_feed_publishes_nothing(redis: aioredis.Redis) -> None:
    body = (FIXTURES / "arxiv_rss/allnewsai_rss2_cs.CL_weekend_empty_2026-08-01.xml").read_bytes()
    result = parse_document("arxiv-rss", body)
    assert (await ingest(result, PaperStore(redis))).events == []
    assert result.no_announcement


async def test_concurrent_merges_of_one_paper_lose_nothing(redis: aioredis.Redis, clean_redis: str) -> None:
    """Parser replicas merging the same paper at once: every replica's facts survive (no lost update).

    Each of 20 clients (its own connection, like a replica) merges a copy that adds one link; all read
    before any writes, so a plain read-merge-write keeps only the last writer's link.
    """
    (paper,) = parse_document("arxiv-api", api_body()).papers
    await PaperStore(redis).put(paper)
    clients = [aioredis.Redis.from_url(clean_redis) for _ in range(20)]
    try:
        copies = [paper.model_copy(update={"links": {f"mirror{i}": f"https://m{i}.example/abs"}}) for i in range(20)]
        results = await asyncio.gather(*(PaperStore(c).upsert(p) for c, p in zip(clients, copies, strict=True)))
    finally:
        for client in clients:
            await client.aclose()
    stored = await PaperStore(redis).get(paper.id)
    assert {f"mirror{i}" for i in range(20)} <= set(stored.links)
    assert set(stored.links) - {f"mirror{i}" for i in range(20)} == set(paper.links)  # the original links stay
    assert all(change == "merged" for _, change in results)


async def test_update_without_hf_data_emits_no_upvote_change(redis: aioredis.Redis) -> None:
    """A paper listed on Daily Papers (sotawhat 2026-06-12: 2606.13681, 118 upvotes) whose v2 later comes
    from the arXiv API (a variant built here: version bumped, no HF data): one "updated" event and no
    papers.trending event. Before the fix the stored count was not loaded for a document without HF data,
    so a false first count (upvotes_before None) went out."""
    store = PaperStore(redis)
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_bytes()
    listed = await ingest(parse_document("hf-daily", body), store, date(2026, 6, 12))
    (paper,) = [p for p in parse_document("hf-daily", body).papers if p.id == "2606.13681"]
    assert {t.paper_id: t.upvotes for t in listed.trending}[paper.id] == 118
    v2 = paper.model_copy(update={"version": 2, "hf": None, "sources": ["arxiv-api"], "abstract": "Revised."})
    update = await ingest(ParseResult(source="arxiv-api", papers=[v2]), store)
    assert [(e.paper.id, e.change, e.paper.hf.upvotes) for e in update.events] == [(paper.id, "updated", 118)]
    assert update.trending == []
    # The next Daily Papers reading is compared with the stored count, not taken for a first one.
    items = json.loads(body)
    (item,) = [i for i in items if i["paper"]["id"] == paper.id]
    item["paper"]["upvotes"] = 130
    moved = await ingest(parse_document("hf-daily", json.dumps(items)), store, date(2026, 6, 12))
    assert [(t.paper_id, t.upvotes_before, t.upvotes) for t in moved.trending] == [(paper.id, 118, 130)]


async def test_a_saved_plan_comes_back_whole(redis: aioredis.Redis) -> None:
    """What a redelivery publishes from: the same events (ids, token ids), first counts and papers to write."""
    body = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_bytes()
    report = await prepare(parse_document("hf-daily", body), PaperStore(redis), date(2026, 6, 12), "raw-1")
    report.events[0].tokens = TokenIds.pack(np.array([101, 2000, 102]), "sha", 256)
    assert await load_plan(redis, "raw-1") is None
    await save_plan(redis, "raw-1", report, 60)
    loaded = await load_plan(redis, "raw-1")
    assert loaded == report and len(loaded.events) == len(loaded.trending) == len(loaded.writes) == 30
    assert loaded.events[0].tokens.array().tolist() == [101, 2000, 102]
    assert 0 < await redis.ttl(plan_key("raw-1")) <= 60
    assert await redis.strlen(plan_key("raw-1")) < len(_PLAN.dump_json(report)) / 2  # stored deflated
    await forget_plan(redis, "raw-1")
    assert await load_plan(redis, "raw-1") is None
    await redis.set(plan_key("raw-1"), _PLAN.dump_json(report))  # a plan saved before plans were compressed
    assert await load_plan(redis, "raw-1") == report


async def test_a_plan_redelivered_after_a_newer_version_publishes_the_stored_paper(
    redis: aioredis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Raw event A (v1) saves its plan and writes, then fails before publishing; raw event B (v2) is handled in
    full; A's redelivery publishes last, so its event must carry v2 (as stored), not v1, and no v1 token ids."""
    store = PaperStore(redis)
    v1 = parse_document("arxiv-api", api_body())
    bumped = api_body().replace("astro-ph/0601001v1</id>", "astro-ph/0601001v2</id>")
    bumped = bumped.replace("<title>Frequency of Hot", "<title>Revised: Frequency of Hot")
    v2 = parse_document("arxiv-api", bumped)
    plan_a = await prepare(v1, store, date(2006, 1, 2), "raw-a")
    PaperTokenizer.open(exported_model_dir(tmp_path_factory)).attach(plan_a.events)
    assert plan_a.events[0].tokens is not None
    await save_plan(redis, "raw-a", plan_a, 60)
    await commit(plan_a, store)  # ... and the publish fails
    plan_b = await prepare(v2, store, date(2006, 1, 2), "raw-b")
    await commit(plan_b, store)
    assert await restamp(plan_b, store) == 0  # nothing newer than its own plan
    (published_b,) = plan_b.events
    assert published_b.paper.version == 2 and published_b.paper.title.startswith("Revised: ")

    again = await load_plan(redis, "raw-a")
    await commit(again, store)
    assert await restamp(again, store) == 1
    (event,) = again.events
    # the id of the version it now carries, which B published: the embedder embeds v2 once
    assert event.event_id == published_b.event_id != plan_a.events[0].event_id
    assert event.paper == await store.get("astro-ph/0601001") and event.paper.version == 2
    assert event.tokens is None  # v1's ids describe other text: the embedder tokenizes v2 itself


async def test_replicas_racing_on_overlapping_pages_announce_each_paper_version_once(
    redis: aioredis.Redis, clean_redis: str
) -> None:
    """Two replicas, each with its own connection, parse two recorded pages of ``search_query=testing`` (start 0,
    15 results; start 5, 10 results: 10 papers in common) published together: both plan before either commits,
    so both announce the 10 shared papers as "new". Each paper must go out under one event id, the one the
    embedder's ``once:embedder:{event_id}`` drops a repeat of; before the fix each replica derived its own."""
    pages = FIXTURES / "arxiv_api/extracted_bodies"
    documents = {
        "raw-a": parse_document("arxiv-api", (pages / "arxivpy_q_testing_s0_m15_80c242b59d59.xml").read_bytes()),
        "raw-b": parse_document("arxiv-api", (pages / "arxivpy_q_testing_s5_m10_c0e94a259d4a.xml").read_bytes()),
    }
    shared = {p.id for p in documents["raw-a"].papers} & {p.id for p in documents["raw-b"].papers}
    assert len(shared) == 10
    clients = {raw: aioredis.Redis.from_url(clean_redis) for raw in documents}
    try:
        stores = {raw: PaperStore(client) for raw, client in clients.items()}
        plans = {raw: await prepare(documents[raw], stores[raw], date(2026, 5, 11), raw) for raw in documents}
        for raw, report in plans.items():
            await save_plan(clients[raw], raw, report, 60)
        for raw, report in plans.items():
            await commit(report, stores[raw])
            await restamp(report, stores[raw])
        published = [event for report in plans.values() for event in report.events]
        # b failed to publish: its redelivery loads the saved plan
        redelivered = await load_plan(clients["raw-b"], "raw-b")
        await commit(redelivered, stores["raw-b"])
        await restamp(redelivered, stores["raw-b"])
    finally:
        for client in clients.values():
            await client.aclose()
    assert {e.change for e in published} == {"new"} and len(published) == 25
    ids: dict[str, set[str]] = {}
    for event in [*published, *redelivered.events]:
        ids.setdefault(event.paper.id, set()).add(event.event_id)
    assert len(ids) == 15 and all(len(event_ids) == 1 for event_ids in ids.values()), ids
    assert {e.event_id for e in redelivered.events} == {e.event_id for e in plans["raw-b"].events}
