"""Hugging Face Daily Papers (``/api/daily_papers?date=YYYY-MM-DD``): upvotes move, so re-polls matter."""

from __future__ import annotations

from datetime import date

from services.fetcher.http import Fetcher
from services.fetcher.sources.common import Publish, SourceReport, fetch_counted
from shared.events import RawPapers


async def fetch_day(fetcher: Fetcher, base_url: str, day: date, publish: Publish) -> SourceReport:
    """One day's list; published even when known, so the parser turns upvote changes into papers.trending events."""
    report = SourceReport("hf-daily", f"{base_url}?date={day.isoformat()}")
    result = await fetch_counted(fetcher, report, base_url, params={"date": day.isoformat()}, conditional=True)
    if result is None:
        return report
    if result.not_modified:
        report.not_modified += 1
        return report
    await publish(RawPapers(source="hf-daily", url=result.url, content_type=result.content_type, body=result.text()))
    await fetcher.remember(result)
    report.published += 1
    report.entries = result.body.count(b'"paper"')
    return report
