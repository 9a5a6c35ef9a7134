"""Parsed papers against what is already known: which ones become events, and with which change.

Planning reads the store and writes nothing. The service then saves the plan (``save_plan``, keyed by the raw
event's id), commits the papers (``commit``) and only then publishes the planned events, so a consumer that
reads the store on an event (the classifier's trending path reads the paper) never finds it older than the
event. A redelivery after a failure anywhere past ``save_plan`` loads that plan instead of planning again
against a store that already holds the papers (which would find nothing new and lose the events): it commits
again (an idempotent merge) and publishes the same events under the same event ids, which downstream consumers
already de-duplicate by (the embedder's ``once:embedder:{event_id}``).

Event ids: a "new" or "updated" event's id is derived from the paper version it announces (id, version, title
and abstract, ``content_event_id``), the others' from the raw event's id (``stable_event_id``). Two replicas
parsing overlapping documents at once (two arXiv API pages sharing papers, fetched together) both plan against a
store that holds neither yet and both publish "new" for the shared papers; with ids derived per raw event the
embedder embedded each twice and the classifier's background got duplicate vectors. Derived from the content,
both events carry one id and the embedder's de-duplication drops the second. A content id stays the same on
redelivery (a saved plan or a new plan of the same text), so the saved-plan guarantees are unchanged, and no
Redis round trip or cross-replica lock is added: a claim per (paper, version) would have to outlive a crashed
claimer's redelivery, or the event it stood for would be lost. "merged" events keep per-raw-event ids: each
brings other facts (categories, Hugging Face data) that downstream matching reads, so two of them for one
unchanged text are not repeats; nor are trending events, whose counts may move back to an earlier reading.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from pydantic import TypeAdapter

from services.parser.result import ParseResult
from shared.events import PaperParsed, RawPapers, Stream, UpvotesChanged
from shared.paper import Paper, merge_change
from shared.storage import PaperStore

_EVENT_IDS = uuid.UUID("5d0c5e1e-55a1-4f0e-9d0b-7a7a2f1c8e01")


@dataclass
class IngestReport:
    events: list[PaperParsed] = field(default_factory=list)
    trending: list[UpvotesChanged] = field(default_factory=list)
    unchanged: int = 0
    item_errors: int = 0
    writes: list[Paper] = field(default_factory=list)


_PLAN = TypeAdapter(IngestReport)


async def ingest(result: ParseResult, store: PaperStore, listed_on: date | None = None) -> IngestReport:
    """Plan and commit at once, for callers with nothing to publish in between."""
    report = await prepare(result, store, listed_on)
    await commit(report, store)
    return report


async def prepare(
    result: ParseResult, store: PaperStore, listed_on: date | None = None, source_event_id: str | None = None
) -> IngestReport:
    """The events ``result`` yields against the stored papers; writes nothing (see ``commit``)."""
    known = await store.get_many(list(dict.fromkeys(p.id for p in result.papers)))
    report = plan(result.papers, known, listed_on or datetime.now(UTC).date(), source_event_id)
    report.item_errors = len(result.errors)
    return report


async def commit(report: IngestReport, store: PaperStore) -> None:
    """Merge the planned papers into the store, before their events are published (see the module docstring).

    An upsert, not a put: another replica may have merged the same paper since the plan read it; and merging
    the same papers again (a redelivery of a saved plan) changes nothing.
    """
    for paper in report.writes:
        await store.upsert(paper)


async def restamp(report: IngestReport, store: PaperStore) -> int:
    """Put the paper as stored now into each planned event; returns how many changed. A "new" or "updated" event
    then takes the content id of the version it now carries, the id the replica that stored that version gave its
    own event, so the embedder embeds that version once.

    Called after ``commit``: another raw event may have merged a newer version of a paper between the plan and
    its publish (a saved plan redelivered minutes later), and the event published last must not carry the older
    text, or the embedder would take it as the newest version. Token ids made for other text are dropped; the
    embedder tokenizes such an event itself. A replica racing this one between the restamp and the publish is
    caught by the embedder, which skips an event whose text is not the stored paper's (``is_current``).
    """
    if not report.events:
        return 0
    stored = await store.get_many([event.paper.id for event in report.events])
    changed = 0
    for event in report.events:
        current = stored.get(event.paper.id)
        if current is None or current == event.paper:
            continue
        if (current.title, current.abstract) != (event.paper.title, event.paper.abstract):
            event.tokens = None
        event.paper = current
        if event.change in ("new", "updated"):
            event.event_id = content_event_id(current)
        changed += 1
    return changed


def plan_key(source_event_id: str) -> str:
    return f"parser:plan:{source_event_id}"


async def save_plan(redis: aioredis.Redis, source_event_id: str, report: IngestReport, ttl_s: int) -> None:
    """Keep the plan (events with their ids and token ids, papers to write) until its events are published.

    Serialized and compressed in a worker thread: a 387-paper OAI page is 1.6 MB of JSON, 0.6 MB deflated at
    level 1 (27 ms), which is what every document adds to the AOF until the plan is deleted.
    """
    data = await asyncio.to_thread(lambda: zlib.compress(_PLAN.dump_json(report), 1))
    await redis.set(plan_key(source_event_id), data, ex=ttl_s)


async def load_plan(redis: aioredis.Redis, source_event_id: str) -> IngestReport | None:
    """The plan an earlier delivery of this raw event saved and did not finish publishing, else None."""
    data = await redis.get(plan_key(source_event_id))
    if data is None:
        return None
    # a plan saved before plans were compressed is plain JSON
    return await asyncio.to_thread(lambda: _PLAN.validate_json(data if data[:1] == b"{" else zlib.decompress(data)))


async def forget_plan(redis: aioredis.Redis, source_event_id: str) -> None:
    """Every planned event is out: a later delivery may plan again (and finds the papers stored)."""
    await redis.delete(plan_key(source_event_id))


def plan(
    papers: Iterable[Paper], known: dict[str, Paper], listed_on: date, source_event_id: str | None = None
) -> IngestReport:
    """Each paper against ``known``: "new" for an unknown id, "updated" for a higher version, "merged" for new facts.

    An identical repeat yields no event, so re-fetching a feed does not re-notify anyone. The same id twice
    in one document is merged first (a paper and its cross-list entry), so it yields one event at most.
    Hugging Face counts that moved become ``UpvotesChanged`` events (``listed_on`` is the Daily Papers day
    for papers whose listing does not say), only from documents that carry Hugging Face data; when only
    counts moved there is no ``PaperParsed``: the text the embedder and classifier read is the same.
    "new" and "updated" events get ``content_event_id``; with ``source_event_id`` the other event ids are derived
    from it. Either way a redelivery re-emits the same ids (see the module docstring).
    """
    report = IngestReport()
    current = dict(known)
    with_hf: set[str] = set()
    by_id: dict[str, PaperParsed] = {}
    for paper in papers:
        if paper.hf is not None:
            with_hf.add(paper.id)
        merged, change = merge_change(current.get(paper.id), paper)
        if change is None:
            report.unchanged += 1
            continue
        current[paper.id] = merged
        report.writes.append(paper)
        previous = by_id.get(merged.id)
        if previous is None:
            by_id[merged.id] = PaperParsed(paper=merged, change=change)
            continue
        # Seen earlier in this document: one event carrying the merged paper, "new" beats "updated" beats "merged".
        previous.paper = merged
        if previous.change == "merged" and change == "updated":
            previous.change = "updated"
    for event in by_id.values():
        prior = known.get(event.paper.id)
        moved = upvote_change(prior, event.paper, listed_on) if event.paper.id in with_hf else None
        if moved is not None:
            report.trending.append(moved)
        if event.change == "merged" and prior is not None and only_counts_moved(prior, event.paper):
            report.unchanged += 1
            continue
        report.events.append(event)
    for event in report.events:
        if event.change in ("new", "updated"):
            event.event_id = content_event_id(event.paper)
        elif source_event_id is not None:
            event.event_id = stable_event_id(source_event_id, Stream.PARSED, event.paper.id)
    if source_event_id is not None:
        for moved in report.trending:
            moved.event_id = stable_event_id(source_event_id, Stream.TRENDING, moved.paper_id)
    return report


def stable_event_id(source_event_id: str, stream: str, paper_id: str) -> str:
    """The same id for the same raw event, stream and paper, however often the raw event is delivered."""
    return uuid.uuid5(_EVENT_IDS, f"{source_event_id}/{stream}/{paper_id}").hex


def content_event_id(paper: Paper) -> str:
    """One id per paper version and text, whichever raw event or replica announces it as "new" or "updated"."""
    return uuid.uuid5(_EVENT_IDS, f"{Stream.PARSED}/{paper.id}/v{paper.version}/{paper.title}\n{paper.abstract}").hex


def upvote_change(known: Paper | None, paper: Paper, listed_on: date) -> UpvotesChanged | None:
    """The trending event for ``paper`` when its upvotes (or listing day) differ from ``known``'s, else None."""
    if paper.hf is None:
        return None
    day = paper.hf.daily_date or listed_on
    old = known.hf if known is not None else None
    if old is not None and old.upvotes == paper.hf.upvotes and (old.daily_date or listed_on) == day:
        return None
    return UpvotesChanged(
        paper_id=paper.id, daily_date=day, upvotes=paper.hf.upvotes, upvotes_before=old.upvotes if old else None
    )


def only_counts_moved(known: Paper, merged: Paper) -> bool:
    """True when the merged paper differs from the known one only in Hugging Face counts (upvotes, stars)."""
    if known.hf is None or merged.hf is None:
        return False
    counts = {"upvotes": known.hf.upvotes, "github_stars": known.hf.github_stars}
    return merged.model_copy(update={"hf": merged.hf.model_copy(update=counts)}) == known


def listing_day(event: RawPapers) -> date:
    """The Daily Papers day a response lists: its ``date=`` query parameter, else the day it was fetched."""
    values = parse_qs(urlsplit(event.url).query).get("date") or []
    try:
        return date.fromisoformat(values[0])
    except (IndexError, ValueError):
        return event.fetched_at.date()


def describe(event: RawPapers) -> dict[str, str]:
    """Log fields for a raw event, without its body."""
    return {"source": event.source, "url": event.url, "raw_event_id": event.event_id}
