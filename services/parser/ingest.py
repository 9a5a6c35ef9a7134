"""Parsed papers against what is already known: which ones become events, and with which change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

from services.parser.result import ParseResult
from shared.events import PaperParsed, RawPapers, UpvotesChanged
from shared.paper import Paper
from shared.storage import PaperStore


@dataclass
class IngestReport:
    events: list[PaperParsed] = field(default_factory=list)
    trending: list[UpvotesChanged] = field(default_factory=list)
    unchanged: int = 0
    item_errors: int = 0


async def ingest(result: ParseResult, store: PaperStore, listed_on: date | None = None) -> IngestReport:
    """Upsert every paper; "new" for an unknown id, "updated" for a higher version, "merged" for new facts.

    An identical repeat yields no event, so re-fetching a feed does not re-notify anyone. The same id twice
    in one document is merged first (a paper and its cross-list entry), so it yields one event at most.
    Hugging Face counts that moved become ``UpvotesChanged`` events (``listed_on`` is the Daily Papers day
    for papers whose listing does not say); when only counts moved there is no ``PaperParsed``: the text
    the embedder and classifier read is the same.
    """
    report = IngestReport(item_errors=len(result.errors))
    before = await store.get_many(list(dict.fromkeys(p.id for p in result.papers if p.hf is not None)))
    by_id: dict[str, PaperParsed] = {}
    for paper in result.papers:
        merged, change = await store.upsert(paper)
        if change is None:
            report.unchanged += 1
            continue
        previous = by_id.get(merged.id)
        if previous is None:
            by_id[merged.id] = PaperParsed(paper=merged, change=change)
            continue
        # Seen earlier in this document: one event carrying the merged paper, "new" beats "updated" beats "merged".
        previous.paper = merged
        if previous.change == "merged" and change == "updated":
            previous.change = "updated"
    for event in by_id.values():
        known = before.get(event.paper.id)
        moved = upvote_change(known, event.paper, listed_on or datetime.now(UTC).date())
        if moved is not None:
            report.trending.append(moved)
        if event.change == "merged" and known is not None and only_counts_moved(known, event.paper):
            report.unchanged += 1
            continue
        report.events.append(event)
    return report


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
