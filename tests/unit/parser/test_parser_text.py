"""Author lines: split on ",", ";" and " and " outside parentheses, each affiliation kept with its author."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.parser.parse import parse_document
from services.parser.text import split_authors

OAI = Path(__file__).parents[2] / "fixtures" / "arxiv_oai"


def authors(line: str) -> list[tuple[str, list[str]]]:
    return [(a.name, a.affiliations) for a in split_authors(line)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Alice Smith (MIT) and Bob Jones (Stanford)", [("Alice Smith", ["MIT"]), ("Bob Jones", ["Stanford"])]),
        (
            "Alice Smith (MIT), Bob Jones (Stanford) and Carol White (ETH)",
            [("Alice Smith", ["MIT"]), ("Bob Jones", ["Stanford"]), ("Carol White", ["ETH"])],
        ),
        ("Alice Smith and Bob Jones (Stanford)", [("Alice Smith", []), ("Bob Jones", ["Stanford"])]),
        ("A. Smith; B. Jones, and C. White", [("A. Smith", []), ("B. Jones", []), ("C. White", [])]),
        (
            "Ann Lee (Dept. of Physics and Astronomy, UCL) AND Tom Anderson",
            [("Ann Lee", ["Dept. of Physics and Astronomy, UCL"]), ("Tom Anderson", [])],
        ),
        ("Kim Park (Lab (North)), Sandra Brand", [("Kim Park", ["Lab (North)"]), ("Sandra Brand", [])]),
    ],
)
def test_examples(line: str, expected: list[tuple[str, list[str]]]) -> None:
    assert authors(line) == expected


def oai_record(paper_id: str):  # noqa: ANN201
    result = parse_document("arxiv-oai", (OAI / "litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes())
    (paper,) = [p for p in result.papers if p.id == paper_id]
    return paper


def test_two_authors_with_affiliations_from_arxiv_raw() -> None:
    """1601.05231 in the recorded arXivRaw list; the line was merged into one author before the fix."""
    paper = oai_record("1601.05231")
    assert [(a.name, a.affiliations) for a in paper.authors] == [
        ("Fernando Etayo", ["Cantabria University"]),
        ("Rafael Santamar\\'ia", ["Le\\'on University"]),
    ]


def test_numbered_affiliations_from_arxiv_raw() -> None:
    """1408.0799: "Maciej Bilicki (1,2), ... and Louise Steward (1) ((1) University of Cape Town, ...)":
    the numbers become the names of the legend that closes the line."""
    paper = oai_record("1408.0799")
    assert [(a.name, a.affiliations) for a in paper.authors] == [
        ("Maciej Bilicki", ["University of Cape Town", "University of Zielona G\\'ora"]),
        ("John A. Peacock", ["University of Edinburgh"]),
        ("Thomas H. Jarrett", ["University of Cape Town"]),
        ("Michelle E. Cluver", ["University of Cape Town"]),
        ("Louise Steward", ["University of Cape Town"]),
    ]
