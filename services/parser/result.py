"""What parsing one fetched document yields: papers, per-item errors and feed-level facts."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.paper import Paper, SourceName


@dataclass(frozen=True)
class ItemError:
    """One entry we could not turn into a paper; the rest of the document still counts."""

    index: int
    reason: str
    ident: str | None = None


@dataclass
class ParseResult:
    source: SourceName
    papers: list[Paper] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # arXiv API (opensearch) paging facts.
    total_results: int | None = None
    start_index: int | None = None
    items_per_page: int | None = None
    # OAI-PMH paging facts: an empty token means the list is complete.
    resumption_token: str | None = None
    complete_list_size: int | None = None
    cursor: int | None = None
    deleted_ids: list[str] = field(default_factory=list)
    # Set when the document says "nothing was announced" (weekend RSS, OAI noRecordsMatch), with the reason.
    no_announcement: str | None = None
