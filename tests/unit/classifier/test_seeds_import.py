"""BibTeX and CSL-JSON seed import: arXiv ids found where Zotero, Google Scholar and arXiv put them."""

from __future__ import annotations

import json

import pytest

from shared.seeds_import import SeedImportError, import_seeds

ZOTERO_BIB = r"""
@comment{jabref-meta: databaseType:bibtex;}
@misc{vaswani_attention_2017,
	title = {Attention {Is} {All} {You} {Need}},
	url = {http://arxiv.org/abs/1706.03762},
	doi = {10.48550/arXiv.1706.03762},
	publisher = {arXiv},
	author = {Vaswani, Ashish and Shazeer, Noam},
	month = aug,
	year = {2023},
	note = {arXiv:1706.03762 [cs]},
	keywords = {Computer Science - Computation and Language},
}

@article{liu_token_2025,
  title   = "Token-Level Uncertainty-Aware Objective for Language Model Post-Training",
  author  = "Liu, Tingkai and Benjamin, Ari S. and Zador, Anthony M.",
  journal = "arXiv preprint arXiv:2503.16511",
  year    = 2025
}

@article{arxiv_style,
  author        = {Maldacena, Juan},
  title         = {The Large N Limit of Superconformal Field Theories and Supergravity},
  eprint        = {hep-th/9711200v3},
  archivePrefix = {arXiv},
  primaryClass  = {hep-th},
  year          = {1997}
}

@inproceedings{no_arxiv,
  title = {A Conference Paper Without a Preprint},
  booktitle = {Proceedings of Something},
  doi = {10.1145/1234567.1234568},
}

@misc{duplicate, title={Attention again}, eprint={1706.03762v5}, archiveprefix={arXiv}}
"""

ZOTERO_CSL = [
    {
        "id": "http://zotero.org/users/1/items/ABCD1234",
        "type": "article",
        "title": "Attention Is All You Need",
        "publisher": "arXiv",
        "number": "arXiv:1706.03762",
        "URL": "http://arxiv.org/abs/1706.03762",
        "DOI": "10.48550/arXiv.1706.03762",
    },
    {
        "id": "doi-only",
        "type": "article",
        "title": "Token-Level Uncertainty-Aware Objective",
        "DOI": "10.48550/arXiv.2503.16511",
    },
    {"id": "pdf-url", "type": "article", "title": "A PDF link", "URL": "https://arxiv.org/pdf/2401.01234v2"},
    {"id": "journal", "type": "article-journal", "title": "Published elsewhere", "DOI": "10.1038/nature14539"},
]


def test_bibtex_ids_from_url_doi_journal_and_eprint() -> None:
    result = import_seeds(ZOTERO_BIB)
    assert result.ids == ["1706.03762", "2503.16511", "hep-th/9711200"]
    assert result.skipped == ["no_arxiv: A Conference Paper Without a Preprint"]


def test_csl_json_ids_from_number_doi_and_pdf_url() -> None:
    result = import_seeds(json.dumps(ZOTERO_CSL, indent=2))
    assert result.ids == ["1706.03762", "2503.16511", "2401.01234"]
    assert result.skipped == ["journal: Published elsewhere"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("[{broken", "not valid CSL-JSON"), ("just some words", "BibTeX (.bib) or CSL-JSON"), ("@@@", "no BibTeX")],
)
def test_unreadable_exports_say_why(text: str, message: str) -> None:
    with pytest.raises(SeedImportError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        import_seeds(text)


def test_seeds_import_command(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from tests.unit.classifier.test_eval_cli import make_app

    bib = tmp_path / "library.bib"
    bib.write_text(ZOTERO_BIB)
    result = CliRunner().invoke(make_app(), ["seeds", "import", str(bib), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ids"] == ["1706.03762", "2503.16511", "hep-th/9711200"]
    bad = tmp_path / "notes.txt"
    bad.write_text("just some words")
    result = CliRunner().invoke(make_app(), ["seeds", "import", str(bad)])
    assert result.exit_code == 2 and "BibTeX (.bib) or CSL-JSON" in result.output
