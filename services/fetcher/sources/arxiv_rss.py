"""arXiv RSS / Atom category feeds (``rss.arxiv.org/rss/cs.CL+cs.LG``), fetched conditionally."""

from __future__ import annotations

from services.fetcher.http import Fetcher
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.sources.common import Publish, SourceReport, fetch_counted
from shared.events import RawPapers


def feed_url(base_url: str, categories: list[str], fmt: str = "rss") -> str:
    return f"{base_url.rstrip('/')}/{fmt}/{'+'.join(categories)}"


async def fetch_feed(
    fetcher: Fetcher,
    limiter: SharedRateLimiter,
    base_url: str,
    categories: list[str],
    publish: Publish,
    fmt: str = "rss",
) -> SourceReport:
    url = feed_url(base_url, categories, fmt)
    report = SourceReport("arxiv-rss", url)
    result = await fetch_counted(fetcher, report, url, limiter=limiter, conditional=True)
    if result is None:
        return report
    if result.not_modified:
        report.not_modified += 1
        report.note = "feed not modified since the last poll"
        return report
    await publish(RawPapers(source="arxiv-rss", url=url, content_type=result.content_type, body=result.text()))
    await fetcher.remember(result)
    report.published += 1
    report.entries = result.body.count(b"<item>") + result.body.count(b"<entry>")
    if report.entries == 0:
        report.note = "feed is empty: no announcement (weekend or holiday)"
    return report
