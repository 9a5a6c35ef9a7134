"""Which Hugging Face readings become papers.trending events, decided without Redis (real Daily Papers lists).

llmpaperradar 2026-05: 3 papers listed on 2026-05-08; the first, 2605.05242, has 86 upvotes and 101 GitHub
stars (read from the file). Variants (a count moved, a day moved) are copies changed here at run time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from services.parser.ingest import listing_day, only_counts_moved, plan, upvote_change
from services.parser.parse import parse_document
from shared.events import RawPapers
from shared.paper import Paper

HF = Path(__file__).parents[2] / "fixtures" / "hf_daily_papers"


def first_paper() -> Paper:
    return parse_document("hf-daily", (HF / "llmpaperradar_hf_daily_papers_2026-05.json").read_bytes()).papers[0]


def with_counts(paper: Paper, **counts: object) -> Paper:
    assert paper.hf is not None
    return paper.model_copy(update={"hf": paper.hf.model_copy(update=counts)})


def test_first_count_then_moves_only() -> None:
    paper = first_paper()
    assert paper.id == "2605.05242" and paper.hf is not None
    assert (paper.hf.upvotes, paper.hf.github_stars, paper.hf.daily_date) == (86, 101, date(2026, 5, 8))
    first = upvote_change(None, paper, date(2026, 5, 11))
    assert first is not None
    assert (first.paper_id, first.daily_date, first.upvotes, first.upvotes_before) == (
        paper.id,
        date(2026, 5, 8),
        86,
        None,
    )
    assert upvote_change(paper, paper, date(2026, 5, 11)) is None
    moved = upvote_change(paper, with_counts(paper, upvotes=91), date(2026, 5, 11))
    assert moved is not None and (moved.upvotes_before, moved.upvotes) == (86, 91)


def test_known_without_hf_data_gets_its_first_count() -> None:
    paper = first_paper()
    arxiv_only = paper.model_copy(update={"hf": None, "sources": ["arxiv-rss"]})
    event = upvote_change(arxiv_only, paper, date(2026, 5, 11))
    assert event is not None and event.upvotes_before is None and event.upvotes == 86


def test_listing_day_from_the_response_when_the_paper_has_none() -> None:
    paper = with_counts(first_paper(), daily_date=None)
    event = upvote_change(None, paper, date(2026, 5, 11))
    assert event is not None and event.daily_date == date(2026, 5, 11)
    moved_day = upvote_change(with_counts(first_paper()), paper, date(2026, 5, 11))
    assert moved_day is not None and moved_day.upvotes_before == 86 and moved_day.daily_date == date(2026, 5, 11)


def test_only_counts_moved_is_not_news_for_the_embedder() -> None:
    paper = first_paper()
    assert paper.hf is not None and paper.hf.github_stars is not None
    assert only_counts_moved(paper, with_counts(paper, upvotes=120, github_stars=paper.hf.github_stars + 3))
    assert not only_counts_moved(paper, with_counts(paper, ai_summary="a different summary"))
    assert not only_counts_moved(paper, paper.model_copy(update={"title": paper.title + " (v2)"}))


def test_listing_day_of_a_response() -> None:
    fetched = datetime(2026, 5, 12, 1, 0, tzinfo=UTC)
    hf = RawPapers(source="hf-daily", url="https://huggingface.co/api/daily_papers?date=2026-05-11", body="[]")
    assert listing_day(hf) == date(2026, 5, 11)
    bare = RawPapers(source="hf-daily", url="https://huggingface.co/api/daily_papers", body="[]", fetched_at=fetched)
    assert listing_day(bare) == date(2026, 5, 12)
    bad = RawPapers(source="hf-daily", url="http://x/api/daily_papers?date=yesterday", body="[]", fetched_at=fetched)
    assert listing_day(bad) == date(2026, 5, 12)


def test_document_without_hf_data_moves_no_count() -> None:
    """A known Daily Papers paper seen again without HF data (its v2 from the arXiv API, a variant built
    here): "updated", and no upvote change; the same paper with HF data and a moved count still yields one."""
    known = first_paper()
    v2 = known.model_copy(update={"version": 2, "hf": None, "sources": ["arxiv-api"], "abstract": "Revised."})
    report = plan([v2], {known.id: known}, date(2026, 5, 11))
    assert [(e.paper.id, e.change) for e in report.events] == [(known.id, "updated")]
    assert report.trending == []
    moved = plan([with_counts(known, upvotes=90)], {known.id: known}, date(2026, 5, 11))
    assert [(t.upvotes_before, t.upvotes) for t in moved.trending] == [(86, 90)]
    assert moved.events == [] and moved.unchanged == 1


def test_arxivs_first_listing_of_a_daily_papers_paper_is_merged_not_a_new_version() -> None:
    """Hugging Face gives no version: the arXiv listing of v1 adds facts ("merged"), its v2 is "updated"."""
    known = first_paper()
    assert known.version is None
    for version, change in ((1, "merged"), (2, "updated")):
        listed = known.model_copy(update={"version": version, "hf": None, "sources": ["arxiv-api"], "doi": "10.1/x"})
        report = plan([listed], {known.id: known}, date(2026, 5, 11))
        assert [e.change for e in report.events] == [change]


def test_event_ids_are_stable_per_raw_event() -> None:
    """A redelivered raw event re-emits its events under the same ids (the embedder's once-key). Another raw
    event (a later poll) announcing the same version and text as "new" shares the id (two replicas racing on
    overlapping documents: one embedding); its trending events and "merged" events (other facts) get new ones."""
    paper = first_paper()
    first = plan([paper], {}, date(2026, 5, 11), "raw-1")
    again = plan([paper], {}, date(2026, 5, 11), "raw-1")
    later = plan([paper], {}, date(2026, 5, 11), "raw-2")
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
    assert [t.event_id for t in first.trending] == [t.event_id for t in again.trending]
    assert first.events[0].event_id != first.trending[0].event_id
    assert first.events[0].event_id == later.events[0].event_id
    assert first.trending[0].event_id != later.trending[0].event_id
    listed = paper.model_copy(update={"version": 1, "hf": None, "sources": ["arxiv-api"], "doi": "10.1/x"})
    merges = [plan([listed], {paper.id: paper}, date(2026, 5, 11), raw) for raw in ("raw-1", "raw-2")]
    assert [m.events[0].change for m in merges] == ["merged", "merged"]
    assert merges[0].events[0].event_id != merges[1].events[0].event_id
    revised = paper.model_copy(update={"abstract": "Revised abstract."})
    assert plan([revised], {}, date(2026, 5, 11), "raw-1").events[0].event_id != first.events[0].event_id
