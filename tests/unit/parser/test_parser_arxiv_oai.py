"""OAI-PMH arXivRaw records, resumption tokens and error codes by name."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.parser.errors import OaiError
from services.parser.parse import parse_document
from shared.paper import says_withdrawn

OAI = Path(__file__).parents[2] / "fixtures" / "arxiv_oai"


def parse(name: str):  # noqa: ANN201
    return parse_document("arxiv-oai", (OAI / name).read_bytes())


def test_387_record_list_with_resumption_token() -> None:
    result = parse("litpuvn_ListRecords_arXivRaw_from2016-10-20.xml")
    assert len(result.papers) == 387 and not result.errors
    assert len(Counter(p.categories[0] for p in result.papers)) == 84  # PROVENANCE.md: 84 primary categories
    assert result.resumption_token == "1403493|1001"
    assert result.complete_list_size == 1440 and result.cursor == 0
    first = result.papers[0]
    assert first.id == "0803.4354" and first.version == 6
    assert first.title == "A O(n^8) X O(n^7) Linear Programming Model of the Traveling Salesman Problem"
    assert first.categories == ["cs.DM"]
    assert first.submitted == datetime(2008, 3, 30, 23, 26, 50, tzinfo=UTC)
    assert first.updated == datetime(2016, 10, 20, 16, 58, 38, tzinfo=UTC)
    assert first.authors[0].name == "Moustapha Diaby"


def test_get_record_authors_with_and() -> None:
    paper = parse("saelim_GetRecordResponse.xml").papers[0]
    assert paper.id == "1302.2146" and paper.version == 2
    assert [a.name for a in paper.authors] == ["Joshua Berger", "Maxim Perelstein", "Michael Saelim", "Philip Tanedo"]
    assert paper.categories == ["hep-ph", "hep-ex"]
    assert paper.comment == "18 pages, 6 figures; v2: References added"
    assert paper.title == "The Same-Sign Dilepton Signature of RPV/MFV SUSY"


def test_list_records_doi_and_journal_ref() -> None:
    result = parse("saelim_ListRecordsResponse.xml")
    assert len(result.papers) == 6
    assert result.resumption_token == "726959|1001" and result.complete_list_size == 58011
    paper = result.papers[0]
    assert paper.id == "0704.0471"
    assert [a.name for a in paper.authors] == ["D.V. Shetty", "S.J. Yennello", "G.A. Souliotis"]
    assert paper.doi == "10.1103/PhysRevC.76.024606"
    assert paper.journal_ref == "Phys.Rev.C76:024606,2007; Erratum-ibid.C76:039902,2007"
    assert '" stiff "' in paper.abstract


def test_no_records_match_is_an_empty_harvest() -> None:
    result = parse("saelim_ErrorResponseNoRecordsMatch.xml")
    assert result.papers == []
    assert result.no_announcement is not None and result.no_announcement.startswith("noRecordsMatch")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("saelim_ErrorResponseBadArgument.xml", "badArgument"),
        ("saelim_ErrorResponseBadResumptionToken.xml", "badResumptionToken"),
        ("saelim_ErrorResponseBadVerb.xml", "badVerb"),
        ("saelim_ErrorResponseIdDoesNotExist.xml", "idDoesNotExist"),
    ],
)
def test_oai_errors_by_name(name: str, code: str) -> None:
    with pytest.raises(OaiError) as info:
        parse(name)
    assert info.value.code == code


def test_get_record_litpuvn() -> None:
    paper = parse("litpuvn_GetRecord_arXivRaw_0804.2273.xml").papers[0]
    assert paper.id == "0804.2273" and paper.version == 1
    assert paper.title == "Object Re-Use & Exchange: A Resource-Centric Approach"
    assert len(paper.authors) == 6 and paper.authors[-1].name == "Pete Johnston"
    assert paper.categories == ["cs.DL", "cs.NI"]


def test_withdrawn_papers_are_marked_whether_or_not_their_comment_says_so() -> None:
    """arXiv withdraws a paper by adding a version without files (0kb); four of the page's six say nothing like
    "withdrawn" in their comment. Every other record stays live."""
    result = parse("litpuvn_ListRecords_arXivRaw_from2016-10-20.xml")
    withdrawn = {p.id: p for p in result.papers if p.withdrawn}
    assert sorted(withdrawn) == ["0803.4354", "0808.3386", "1502.02762", "1505.00300", "1603.06854", "1605.00928"]
    assert withdrawn["0808.3386"].version == 8
    assert sum("withdrawn" in (p.comment or "").lower() for p in withdrawn.values()) == 2


@pytest.mark.parametrize(
    ("comment", "says"),
    [
        ("This paper has been withdrawn by the author because it was merged with 1603.06855", True),
        ("This paper has been withdrawn. Theorem 38 and Corollary 39 are incorrect", True),
        ("withdrawn by the authors due to an error in Lemma 2", True),
        ("12 pages, 4 figures; v2: a withdrawn claim about Lemma 3 is corrected", False),
        ("Accepted at ACL 2026", False),
        (None, False),
    ],
)
def test_withdrawal_notices_in_comments(comment: str | None, says: bool) -> None:
    assert says_withdrawn(comment) is says
