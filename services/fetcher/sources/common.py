"""What every source module shares: the publish callback type, a per-source report, cheap peeks."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.fetcher.http import Fetcher, FetchError, FetchResult
from shared.events import RawPapers

Publish = Callable[[RawPapers], Awaitable[None]]

_TOTAL_RE = re.compile(rb"<(?:\w+:)?totalResults[^>]*>\s*(\d+)\s*<")
_ENTRY_RE = re.compile(rb"<entry[\s>]")
_PER_PAGE_RE = re.compile(rb"<(?:\w+:)?itemsPerPage[^>]*>\s*(\d+)\s*<")
_TOKEN_RE = re.compile(rb"<(?:\w+:)?resumptionToken([^>]*)>([^<]*)<|<(?:\w+:)?resumptionToken([^>]*)/>")
_RECORD_RE = re.compile(rb"<(?:\w+:)?record[\s>]")
_OAI_ERROR_RE = re.compile(rb"""<(?:\w+:)?error\s+code\s*=\s*["']([A-Za-z]+)["'][^>]*>([^<]*)<""")
_SIZE_RE = re.compile(rb"""completeListSize\s*=\s*["'](\d+)["']""")


@dataclass
class SourceReport:
    source: str
    target: str
    requests: int = 0
    published: int = 0
    not_modified: int = 0
    entries: int = 0
    error: str | None = None
    note: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


async def fetch_counted(fetcher: Fetcher, report: SourceReport, url: str, **request: object) -> FetchResult | None:
    """One request, counted on ``report``; None when it failed, with the reason as the report's error."""
    try:
        result = await fetcher.get(url, **request)  # type: ignore[arg-type]
    except FetchError as exc:
        report.error = str(exc)
        return None
    report.requests += 1
    return result


def peek_api_page(body: bytes) -> tuple[int, int | None]:
    """(entries on this page, opensearch totalResults): enough to page without parsing."""
    total = _TOTAL_RE.search(body)
    return len(_ENTRY_RE.findall(body)), int(total.group(1)) if total else None


def peek_items_per_page(body: bytes) -> int | None:
    """opensearch itemsPerPage: arXiv echoes the page size it answered, which tells a glitch from a smaller page."""
    found = _PER_PAGE_RE.search(body)
    return int(found.group(1)) if found else None


def peek_oai_page(body: bytes) -> tuple[int, str | None, int | None, str | None]:
    """(records, resumption token or None when the list is complete, completeListSize, OAI error code)."""
    error = _OAI_ERROR_RE.search(body)
    token = _TOKEN_RE.search(body)
    size = _SIZE_RE.search(body)
    value = token.group(2).decode().strip() if token and token.group(2) is not None else None
    return (
        len(_RECORD_RE.findall(body)),
        value or None,
        int(size.group(1)) if size else None,
        error.group(1).decode() if error else None,
    )
