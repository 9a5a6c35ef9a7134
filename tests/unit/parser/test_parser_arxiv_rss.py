"""arXiv RSS feeds: announce types, authors, announcement date, and the empty weekend feed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from services.parser.parse import parse_document


def test_cl_feed_items(fixtures_dir: Path) -> None:
    result = parse_document("arxiv-rss", (fixtures_dir / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes())
    assert [p.id for p in result.papers] == ["2604.22002", "2604.22027", "2604.22038"]
    first = result.papers[0]
    assert first.version == 1 and first.announce_type == "new"
    assert first.title == (
        "When Cow Urine Cures Constipation on YouTube: Limits of LLMs in Detecting "
        "Culture-specific Health Misinformation"
    )
    # The "arXiv:... Announce Type: new Abstract:" preamble is not part of the abstract.
    assert first.abstract.startswith("Social media platforms have become primary channels for health information")
    assert [a.name for a in first.authors] == ["Anamta Khan", "Ratna Kandala", "Deepti", "Sheza Munir", "Joyojeet Pal"]
    assert first.announced == date(2026, 4, 27)
    assert first.categories == ["cs.CL"]
    assert result.papers[1].categories == ["cs.CL", "cs.AI", "cs.LG"]
    assert result.papers[1].title == "Shared Lexical Task Representations Explain Behavioral Variability In LLMs"
    assert all(p.sources == ["arxiv-rss"] for p in result.papers)


def test_lg_feed(fixtures_dir: Path) -> None:
    result = parse_document("arxiv-rss", (fixtures_dir / "arxiv_rss/distill_rss2_cs.LG_2026-04.xml").read_bytes())
    paper = result.papers[0]
    assert paper.id == "2604.21952"
    assert paper.categories == ["cs.LG", "cs.AI", "cs.AR", "cs.NE", "cs.RO"]
    assert paper.authors[0].name == "Muhammad Shafique" and len(paper.authors) == 6


def test_weekend_feed_is_no_announcement_not_an_error(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "arxiv_rss/allnewsai_rss2_cs.CL_weekend_empty_2026-08-01.xml").read_bytes()
    result = parse_document("arxiv-rss", body)
    assert result.papers == [] and result.errors == []
    assert result.no_announcement is not None
    assert "Saturday 2026-08-01" in result.no_announcement
