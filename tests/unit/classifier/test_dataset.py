"""Reading labeled data sets in the shapes other collections use (the eval runs on sets we have not seen)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.classifier.dataset import DatasetError, load_dataset
from tests.unit.classifier.conftest import oai_labeled_set

FIXTURES = Path(__file__).parents[2] / "fixtures" / "labeled" / "daily_arxiv_ai_enhanced"


def real_rows(n: int) -> list[dict]:
    path = sorted(FIXTURES.glob("*.jsonl"))[0]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]


@pytest.mark.parametrize("join", [" ", ", ", ";", " | "])
def test_categories_as_a_string_keep_the_primary_first_whatever_the_separator(tmp_path: Path, join: str) -> None:
    rows = real_rows(5)
    out = tmp_path / "set.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            cats = row["categories"] if isinstance(row["categories"], list) else row["categories"].split()
            reshaped = {"id": row["id"], "title": row["title"], "summary": row.get("abstract") or row.get("summary")}
            reshaped |= {"categories": join.join(cats), "date": "2026-01-13T09:00:00Z"}
            fh.write(json.dumps(reshaped) + "\n")
    papers = load_dataset(out)
    assert len(papers) == 5
    for paper, row in zip(sorted(papers, key=lambda p: p.id), sorted(rows, key=lambda r: r["id"]), strict=True):
        cats = row["categories"] if isinstance(row["categories"], list) else row["categories"].split()
        assert paper.categories == tuple(cats) and paper.primary == cats[0]
        assert paper.abstract and str(paper.day) == "2026-01-13"


def test_a_line_without_a_date_names_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "undated.jsonl"
    out.write_text(json.dumps({k: v for k, v in real_rows(1)[0].items() if k != "date"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"undated\.jsonl:1: .*no `date` field"):
        load_dataset(out)


def test_an_oai_listing_becomes_a_labeled_set_from_other_fields(tmp_path: Path) -> None:
    papers = load_dataset(oai_labeled_set(tmp_path / "oai"))
    assert len(papers) == 387
    assert sorted({str(p.day) for p in papers}) == ["2016-10-20", "2016-10-21"]
    primaries = {p.primary for p in papers}
    assert {"quant-ph", "hep-ph", "math.CO"} <= primaries and not all(c.startswith("cs.") for c in primaries)
    first = next(p for p in papers if p.id == "0803.4354")
    assert first.title.startswith("A O(n^8) X O(n^7) Linear Programming Model") and first.abstract
