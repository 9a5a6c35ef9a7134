"""arXiv API responses, current and old format; expected values read from the fixture files by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.parser.errors import ArxivApiError
from services.parser.parse import parse_document, unwrap_recording


def load(fixtures_dir: Path, name: str) -> bytes | str:
    return unwrap_recording((fixtures_dir / "arxiv_api" / name).read_bytes())


def by_id(result, paper_id):  # noqa: ANN001, ANN201
    return next(p for p in result.papers if p.id == paper_id)


def test_current_format_old_style_id_with_affiliations(fixtures_dir: Path) -> None:
    result = parse_document("arxiv-api", load(fixtures_dir, "arxivpy_id_astro-ph_0601001_s0_m100_3150dca9dc76.json"))
    assert result.total_results == 1
    paper = result.papers[0]
    assert paper.id == "astro-ph/0601001" and paper.version == 1
    assert paper.title == (
        "Frequency of Hot Jupiters and Very Hot Jupiters from the OGLE-III Transit Surveys "
        "Toward the Galactic Bulge and Carina"
    )
    assert paper.categories == ["astro-ph"]
    assert paper.journal_ref == "ActaAstron.56:1-50,2006"
    assert [(a.name, a.affiliations) for a in paper.authors] == [
        ("Andrew Gould", ["Ohio State"]),
        ("Susan Dorsher", ["Ohio State"]),
        ("B. Scott Gaudi", ["CfA"]),
        ("Andrzej Udalski", ["Warsaw University Observatory"]),
    ]
    assert paper.submitted == datetime(2006, 1, 2, 14, 57, 58, tzinfo=UTC)
    assert paper.abstract.startswith("We derive the frequencies of hot Jupiters (HJs) with 3--5 day periods")
    assert "V_max<17.5" in paper.abstract  # &lt; decoded, text kept as given
    assert paper.sources == ["arxiv-api"]


def test_old_2016_format_title_line_break_doi_journal(fixtures_dir: Path) -> None:
    result = parse_document("arxiv-api", load(fixtures_dir, "arxivpy2016_q_au_del_maestro_AND_ti_checkerboard.xml"))
    paper = result.papers[0]
    assert paper.id == "cond-mat/0603029" and paper.version == 1
    # The title spans two lines in the file; whitespace is normalised.
    assert paper.title == (
        "From stripe to checkerboard order on the square lattice in the presence of quenched disorder"
    )
    assert paper.abstract.startswith("We discuss the effects of quenched disorder on a model of charge density wave")
    assert paper.categories == ["cond-mat.str-el", "cond-mat.supr-con"]
    assert paper.doi == "10.1103/PhysRevB.74.024520"
    assert paper.journal_ref == "Phys. Rev. B 74, 024520 (2006)"
    assert paper.comment == "10 pages, 11 figures; added reference"
    assert [a.name for a in paper.authors] == ["Adrian Del Maestro", "Bernd Rosenow", "Subir Sachdev"]
    assert paper.links["pdf"] == "http://arxiv.org/pdf/cond-mat/0603029v1"


def test_primary_category_first_and_opensearch_total(fixtures_dir: Path) -> None:
    result = parse_document(
        "arxiv-api", load(fixtures_dir, "sotawhat_q_all-transformer_AND_cat-cs.LG_max5_2026-06.xml")
    )
    assert result.total_results == 28946 and result.start_index == 0 and result.items_per_page == 5
    assert len(result.papers) == 5 and not result.errors
    paper = by_id(result, "2606.13677")
    assert paper.title == "Mana: Dexterous Manipulation of Articulated Tools"
    assert paper.categories == ["cs.RO", "cs.AI", "cs.CV", "cs.LG"]
    assert paper.comment == "Project Page: https://zhaohengyin.github.io/mana"
    assert [a.name for a in paper.authors] == ["Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu"]


def test_error_feed_is_a_clear_error(fixtures_dir: Path) -> None:
    with pytest.raises(ArxivApiError) as info:
        parse_document("arxiv-api", load(fixtures_dir, "arxivpy_id_abc_s0_m100_b79c8dcf6bc3.json"))
    assert info.value.code == "incorrect_id_format_for_abc"
    assert "incorrect id format for abc" in str(info.value)


def test_empty_result(fixtures_dir: Path) -> None:
    result = parse_document("arxiv-api", load(fixtures_dir, "arxivpy_id_0000.0000_s0_m100_8b51d9633a68.json"))
    assert result.papers == [] and result.total_results == 0


def test_consecutive_pages_are_real_pages(fixtures_dir: Path) -> None:
    first = parse_document("arxiv-api", load(fixtures_dir, "arxivpy_q_testing_s0_m10_bc5a6c384fe9.json"))
    second = parse_document("arxiv-api", load(fixtures_dir, "arxivpy_q_testing_s10_m10_34e56e15aaac.json"))
    shifted = parse_document("arxiv-api", load(fixtures_dir, "arxivpy_q_testing_s5_m10_c0e94a259d4a.json"))
    assert first.total_results == 214881 and second.start_index == 10
    assert [p.id for p in first.papers][:2] == ["2202.12139", "2405.13786"]
    assert [p.id for p in second.papers][:2] == ["2403.16981", "2004.03322"]
    # start=5 overlaps the second half of page 0 and the first half of page 1.
    assert [p.id for p in shifted.papers] == [p.id for p in first.papers][5:] + [p.id for p in second.papers][:5]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (Path(__file__).parents[2] / "fixtures" / "arxiv_api").iterdir() if p.is_file()),
)
def test_every_api_fixture_parses_or_is_the_error_feed(fixtures_dir: Path, name: str) -> None:
    body = load(fixtures_dir, name)
    if "_id_abc_" in name:
        with pytest.raises(ArxivApiError):
            parse_document("arxiv-api", body)
        return
    result = parse_document("arxiv-api", body)
    assert not result.errors
    assert len(result.papers) == (body if isinstance(body, str) else body.decode()).count("<entry>")
    for paper in result.papers:
        assert paper.title and paper.categories and paper.authors and paper.submitted
