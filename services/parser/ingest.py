"""Parsed papers against what is already known: which ones become events, and with which change."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.parser.result import ParseResult
from shared.events import PaperParsed, RawPapers
from shared.storage import PaperStore


@dataclass
class IngestReport:
    events: list[PaperParsed] = field(default_factory=list)
    unchanged: int = 0
    item_errors: int = 0


async def ingest(result: ParseResult, store: PaperStore) -> IngestReport:
    """Upsert every paper; "new" for an unknown id, "updated" for a higher version, "merged" for new facts.

    An identical repeat yields no event, so re-fetching a feed does not re-notify anyone. The same id twice
    in one document is merged first (a paper and its cross-list entry), so it yields one event at most.
    """
    report = IngestReport(item_errors=len(result.errors))
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
    report.events = list(by_id.values())
    return report


def describe(event: RawPapers) -> dict[str, str]:
    """Log fields for a raw event, without its body."""
    return {"source": event.source, "url": event.url, "raw_event_id": event.event_id}
