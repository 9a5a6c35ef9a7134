"""arXiv ids: the new-style scheme's dates and digit counts, and the URL forms people paste."""

from __future__ import annotations

import pytest

from shared.paper import InvalidArxivId, normalize_arxiv_id
from shared.seeds_import import find_arxiv_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0704.0001", "0704.0001"),
        ("1412.9999v3", "1412.9999"),
        ("1501.00001", "1501.00001"),
        ("2605.05242", "2605.05242"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("math.GT/0309136", "math.GT/0309136"),
        ("https://arxiv.org/abs/1706.03762v7", "1706.03762"),
        ("https://www.arxiv.org/abs/1706.03762", "1706.03762"),
        ("http://export.arxiv.org/abs/1706.03762", "1706.03762"),
        ("arxiv.org/abs/1706.03762", "1706.03762"),
        ("www.arxiv.org/pdf/1706.03762v2.pdf", "1706.03762"),
    ],
)
def test_valid_ids_and_urls(raw: str, expected: str) -> None:
    assert normalize_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "2613.00001",  # month 13
        "2600.00001",  # month 00
        "0704.00001",  # 5 digits before 2015
        "1412.00001",
        "1706.3762",  # 4 digits from 2015
        "1501.0001",
        "9912.12345",  # new style before 2007-04
        "0703.0001",
        "1706.037622",
        "https://evil.example/abs/1706.03762",
    ],
)
def test_impossible_ids_are_refused(raw: str) -> None:
    with pytest.raises(InvalidArxivId):
        normalize_arxiv_id(raw)


def test_import_reader_finds_the_same_url_forms_and_skips_impossible_ids() -> None:
    assert find_arxiv_id("see https://www.arxiv.org/abs/1706.03762v2 for details") == "1706.03762"
    assert find_arxiv_id("arxiv.org/abs/2401.01234") == "2401.01234"
    assert find_arxiv_id("arXiv:1706.037622") is None
