"""One paper from several sources: what a newer version inherits and what a same-version source adds.

The papers are real records (OAI-PMH arXivRaw, a paper the authors withdrew in its v8) and the other sources'
views of them: the same record as arXiv RSS lists it (no comment: it cannot know of the withdrawal), and its
previous version."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.parser.parse import parse_document
from shared.paper import Paper, merge_change

OAI = Path(__file__).parents[2] / "fixtures" / "arxiv_oai" / "litpuvn_ListRecords_arXivRaw_from2016-10-20.xml"


@pytest.fixture(scope="module")
def withdrawn_v8() -> Paper:
    paper = next(p for p in parse_document("arxiv-oai", OAI.read_bytes()).papers if p.id == "0808.3386")
    assert paper.version == 8 and paper.withdrawn
    return paper


def as_rss_lists_it(paper: Paper) -> Paper:
    return paper.model_copy(
        update={"comment": None, "withdrawn": False, "announce_type": "replace", "sources": ["arxiv-rss"]}
    )


@pytest.mark.parametrize("rss_first", [True, False], ids=["RSS first", "OAI first"])
def test_a_withdrawal_stands_whichever_source_of_the_version_came_first(withdrawn_v8: Paper, rss_first: bool) -> None:
    rss = as_rss_lists_it(withdrawn_v8)
    known, new = (rss, withdrawn_v8) if rss_first else (withdrawn_v8, rss)
    merged, change = merge_change(known, new)
    assert merged.withdrawn and merged.comment == withdrawn_v8.comment
    assert change == "merged"
    assert sorted(merged.sources) == ["arxiv-oai", "arxiv-rss"]


def test_a_new_version_does_not_inherit_the_old_versions_own_facts(withdrawn_v8: Paper) -> None:
    """v7 as the API gave it (its comment, announced as new), then RSS lists v8: v8 has no comment of its own yet,
    and it is not v7's "new" announcement; the text and the authors are still filled in where v8 lacks them."""
    v7 = withdrawn_v8.model_copy(
        update={
            "version": 7,
            "comment": "25 pages, 3 figures",
            "withdrawn": False,
            "announce_type": "new",
            "announced": date(2016, 10, 1),
            "sources": ["arxiv-api"],
        }
    )
    v8 = as_rss_lists_it(withdrawn_v8).model_copy(update={"abstract": "", "announced": None})
    merged, change = merge_change(v7, v8)
    assert change == "updated" and merged.version == 8
    assert (merged.comment, merged.announce_type, merged.announced) == (None, "replace", None)
    assert merged.abstract == v7.abstract and merged.authors == v7.authors
    # and the source that knows: v8 is withdrawn
    final, _ = merge_change(merged, withdrawn_v8)
    assert final.withdrawn and final.comment == withdrawn_v8.comment
