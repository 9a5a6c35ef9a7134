"""arXiv API (``export.arxiv.org/api/query``): queries, paging, submittedDate windows, id_list lookups."""

from __future__ import annotations

from services.fetcher.http import Fetcher, FetchResult
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.sources.common import Publish, SourceReport, fetch_counted, peek_api_page, peek_items_per_page
from shared.events import RawPapers

MAX_PAGE = 2_000
MAX_PER_QUERY = 30_000
ID_LIST_CHUNK = 100


def query_params(
    *, search_query: str = "", id_list: list[str] | None = None, start: int = 0, max_results: int = 100
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"start": start, "max_results": min(max_results, MAX_PAGE)}
    if search_query:
        params.update(search_query=search_query, sortBy="submittedDate", sortOrder="descending")
    if id_list:
        params["id_list"] = ",".join(id_list)
    return params


def page_is_short(*, start: int, asked: int, entries: int, total: int | None, per_page: int | None) -> bool:
    """Fewer entries than asked although totalResults says more exist from here: arXiv's empty/short-page glitch.

    A page whose itemsPerPage differs from what was asked answers some other request (a server that ignores
    max_results, the demo's replay): short by design, so retrying it would only get the same page again.
    """
    return total is not None and entries < asked and start + entries < total and per_page in (None, asked)


async def fetch_query(
    fetcher: Fetcher,
    limiter: SharedRateLimiter,
    base_url: str,
    publish: Publish,
    *,
    search_query: str = "",
    id_list: list[str] | None = None,
    max_results: int = 100,
    page_size: int = 100,
    short_page_retries: int = 3,
) -> SourceReport:
    """Page through one query, publishing each response; stops at the total or on a short page.

    A short page while totalResults says there are more is asked for again (through the limiter) up to
    ``short_page_retries`` times; if it stays short the report carries an error, since papers are missing.
    """
    report = SourceReport("arxiv-api", search_query or f"id_list={','.join(id_list or [])}")
    wanted = min(max_results, MAX_PER_QUERY)
    page_size = min(page_size, MAX_PAGE)
    start = 0
    while start < wanted:
        asked = min(page_size, wanted - start)
        params = query_params(search_query=search_query, id_list=id_list, start=start, max_results=asked)
        best: FetchResult | None = None
        entries, total, per_page, short = -1, None, None, False
        for _ in range(1 + short_page_retries):
            result = await fetch_counted(fetcher, report, base_url, params=params, limiter=limiter)
            if result is None:
                return report
            got, total = peek_api_page(result.body)
            per_page = peek_items_per_page(result.body)
            if got > entries:
                best, entries = result, got
            short = page_is_short(start=start, asked=asked, entries=entries, total=total, per_page=per_page)
            if not short:
                break
        assert best is not None
        if entries > 0 or not short:
            await publish(RawPapers(source="arxiv-api", url=best.url, content_type=best.content_type, body=best.text()))
            report.published += 1
        report.entries += entries
        if total is not None:
            report.extra["total_results"] = str(total)
        if short:
            report.error = (
                f"incomplete: the page at start={start} had {entries} of {asked} entries after "
                f"{1 + short_page_retries} tries although totalResults is {total}; "
                f"{report.entries} of {min(wanted, total or 0)} fetched"
            )
            break
        start += entries
        if per_page is not None and per_page != asked and entries < asked and total is not None and start < total:
            report.note = f"the server answered {per_page} per page, not the {asked} asked: stopped after that page"
        if entries == 0 or entries < asked or (total is not None and start >= total):
            break
    return report


async def fetch_ids(
    fetcher: Fetcher, limiter: SharedRateLimiter, base_url: str, publish: Publish, arxiv_ids: list[str]
) -> list[SourceReport]:
    """id_list lookups in chunks (URL length), for seed papers other services ask about."""
    ids = list(dict.fromkeys(i.strip() for i in arxiv_ids if i.strip()))
    reports = []
    for offset in range(0, len(ids), ID_LIST_CHUNK):
        chunk = ids[offset : offset + ID_LIST_CHUNK]
        reports.append(await fetch_query(fetcher, limiter, base_url, publish, id_list=chunk, max_results=len(chunk)))
    return reports
