"""arXiv API (``export.arxiv.org/api/query``): queries, paging, submittedDate windows, id_list lookups."""

from __future__ import annotations

from datetime import datetime

from services.fetcher.http import Fetcher, FetchError
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.sources.common import Publish, SourceReport, peek_api_page
from shared.events import RawPapers

MAX_PAGE = 2_000
MAX_PER_QUERY = 30_000
ID_LIST_CHUNK = 100


def submitted_window(query: str, start: datetime, end: datetime) -> str:
    """Restrict ``query`` to papers submitted in [start, end] (arXiv wants YYYYMMDDHHMM, GMT)."""
    fmt = "%Y%m%d%H%M"
    return f"({query}) AND submittedDate:[{start:{fmt}} TO {end:{fmt}}]"


def query_params(
    *, search_query: str = "", id_list: list[str] | None = None, start: int = 0, max_results: int = 100
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"start": start, "max_results": min(max_results, MAX_PAGE)}
    if search_query:
        params.update(search_query=search_query, sortBy="submittedDate", sortOrder="descending")
    if id_list:
        params["id_list"] = ",".join(id_list)
    return params


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
) -> SourceReport:
    """Page through one query, publishing each response; stops on an empty or short page or at the total."""
    report = SourceReport("arxiv-api", search_query or f"id_list={','.join(id_list or [])}")
    wanted = min(max_results, MAX_PER_QUERY)
    page_size = min(page_size, MAX_PAGE)
    start = 0
    while start < wanted:
        asked = min(page_size, wanted - start)
        params = query_params(search_query=search_query, id_list=id_list, start=start, max_results=asked)
        try:
            result = await fetcher.get(base_url, params=params, limiter=limiter)
        except FetchError as exc:
            report.error = str(exc)
            return report
        report.requests += 1
        await publish(
            RawPapers(source="arxiv-api", url=result.url, content_type=result.content_type, body=result.text())
        )
        report.published += 1
        entries, total = peek_api_page(result.body)
        report.entries += entries
        start += entries
        if total is not None:
            report.extra["total_results"] = str(total)
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
