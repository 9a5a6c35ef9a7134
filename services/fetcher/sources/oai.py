"""arXiv OAI-PMH (``oaipmh.arxiv.org/oai``) ListRecords harvests that resume where they stopped.

The resumption token is stored in Redis after each page is published, so a stopped backfill picks up
at the next page (a page may be re-published after a crash: parsing is idempotent). Tokens expire
daily: a ``badResumptionToken`` restarts the harvest from the beginning once, saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import redis.asyncio as aioredis

from services.fetcher.http import Fetcher
from services.fetcher.ratelimit import SharedRateLimiter
from services.fetcher.sources.common import Publish, SourceReport, fetch_counted, peek_oai_page
from shared.events import RawPapers

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Harvest:
    from_date: date
    until_date: date
    set_spec: str | None = "cs"
    metadata_prefix: str = "arXivRaw"

    @property
    def key(self) -> str:
        return f"fetcher:backfill:{self.set_spec or '-'}:{self.metadata_prefix}:{self.from_date}:{self.until_date}"

    def first_params(self) -> dict[str, str | int]:
        params: dict[str, str | int] = {
            "verb": "ListRecords",
            "metadataPrefix": self.metadata_prefix,
            "from": self.from_date.isoformat(),
            "until": self.until_date.isoformat(),
        }
        if self.set_spec:
            params["set"] = self.set_spec
        return params


async def harvest(
    fetcher: Fetcher,
    limiter: SharedRateLimiter,
    redis: aioredis.Redis,
    base_url: str,
    job: Harvest,
    publish: Publish,
    *,
    progress: Progress | None = None,
    max_pages: int | None = None,
) -> SourceReport:
    """Run (or resume) a ListRecords harvest; returns when the list is complete, on error, or after max_pages."""
    report = SourceReport("arxiv-oai", job.key)
    state = {k.decode(): v.decode() for k, v in (await redis.hgetall(job.key)).items()}
    if state.get("done") == "1":
        report.note = f"already complete: {state.get('harvested', '0')} records"
        report.entries = int(state.get("harvested", 0))
        return report
    harvested = int(state.get("harvested", 0))
    token = state.get("token") or None
    total = int(state["total"]) if state.get("total") else None
    restarted = False
    if token:
        report.extra["resumed_from"] = token
    pages = 0
    while max_pages is None or pages < max_pages:
        params = {"verb": "ListRecords", "resumptionToken": token} if token else job.first_params()
        result = await fetch_counted(fetcher, report, base_url, params=params, limiter=limiter)
        if result is None:
            return report
        pages += 1
        records, next_token, size, error = peek_oai_page(result.body)
        if error == "badResumptionToken" and not restarted:
            restarted, token, harvested = True, None, 0
            await redis.delete(job.key)
            report.note = "resumption token expired or refused: restarted the harvest from the beginning"
            continue
        if error == "noRecordsMatch":
            await redis.hset(job.key, mapping={"done": "1", "harvested": harvested})
            report.note = "noRecordsMatch: nothing in this window"
            return report
        if error:
            report.error = f"OAI-PMH error {error}"
            return report
        if token and next_token == token:  # the same page again: following it would never end
            report.error = f"OAI-PMH answered resumptionToken {token!r} with itself: harvest stopped"
            return report
        await publish(
            RawPapers(source="arxiv-oai", url=result.url, content_type=result.content_type, body=result.text())
        )
        report.published += 1
        harvested += records
        report.entries += records
        total = size or total
        mapping: dict[str, str | int] = {
            "harvested": harvested,
            "token": next_token or "",
            "done": 0 if next_token else 1,
        }
        if total is not None:
            mapping["total"] = total
        await redis.hset(job.key, mapping=mapping)
        if progress:
            progress(harvested, total)
        if not next_token:
            return report
        token = next_token
    stopped = f"stopped after {pages} pages; run again to resume"
    report.note = f"{report.note}; {stopped}" if report.note else stopped
    return report
