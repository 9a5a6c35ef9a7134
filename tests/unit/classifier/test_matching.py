"""Who a subscription matches without semantics, on real recorded arXiv responses: followed authors written
with initials or TeX accents, keywords in TeX, keyword-only thresholds and categories-only trending."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.classifier.profiles import build_profile
from services.classifier.scoring import Scorer, same_author
from services.parser import arxiv_api, arxiv_oai
from shared.paper import Paper
from shared.query import normalize_text, parse_query
from shared.subscription import Subscription

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
EMPTY = np.zeros((0, 384), np.float32)


def score(sub: Subscription, papers: list[Paper], **kwargs) -> list:  # noqa: ANN003
    profile = build_profile(sub, EMPTY, {}, EMPTY, EMPTY, EMPTY)
    return Scorer([profile]).score(papers, np.zeros((len(papers), 384), np.float32), **kwargs)


def test_a_followed_author_is_matched_however_the_paper_writes_the_name() -> None:
    """The recorded au:del_maestro response: 10 papers, 4 of them by "A. Del Maestro"."""
    body = (FIXTURES / "arxiv_api" / "arxivpy2016_q_au_del_maestro.xml").read_bytes()
    papers = arxiv_api.parse(body).papers
    spellings = {a.name for p in papers for a in p.authors if "Maestro" in a.name}
    assert {"Adrian Del Maestro", "A. Del Maestro"} <= spellings
    for followed in ("Adrian Del Maestro", "Del Maestro, Adrian", "A. Del Maestro"):
        matches = score(Subscription(name="adm", authors=[followed]), papers)
        assert len(matches) == len(papers) == 10, followed
        assert all(f"by {followed}, an author you follow" in m.reasons for m in matches)


def test_initials_agree_only_with_names_they_begin_and_a_surname_alone_is_not_enough() -> None:
    assert same_author("yann lecun", "y lecun") and same_author("yann lecun", "yann a lecun")
    assert same_author("anthony zador", "anthony m zador")
    assert not same_author("yann lecun", "x lecun") and not same_author("yu wang", "yi wang")
    assert not same_author("lecun", "yann lecun")


def test_tex_accents_match_the_unicode_and_the_plain_spelling() -> None:
    """The recorded OAI listing writes "B\\'ela Bollob\\'as"; abstracts write Schr\\"odinger and R\\'{e}nyi."""
    body = (FIXTURES / "arxiv_oai" / "litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
    papers = arxiv_oai.parse(body).papers
    (paper,) = [p for p in papers if any("Bollob" in a.name for a in p.authors)]
    for followed in ("Béla Bollobás", "Bela Bollobas"):
        assert [m.paper_id for m in score(Subscription(name="bb", authors=[followed]), papers)] == [paper.id]
    for tex, plain in (('Schr\\"odinger', "Schrödinger"), ("R\\'{e}nyi", "Renyi"), ("Erd\\H{o}s", "Erdős")):
        assert normalize_text(tex) == normalize_text(plain)
    assert normalize_text("$\\alpha$-divergence") == normalize_text("α-divergence") == " alpha divergence "
    assert normalize_text("C++ code") == " cplusplus code " != normalize_text("Vitamin C code")


def test_a_phrase_may_end_in_a_prefix() -> None:
    (term,) = parse_query('"graph neural network*"').terms()
    assert term.prefix and term.matches(normalize_text("Graph neural networks for molecules"), " ")


def test_a_keyword_subscription_matches_only_its_keywords_whatever_its_threshold() -> None:
    body = (FIXTURES / "arxiv_api" / "arxivpy2016_q_au_del_maestro.xml").read_bytes()
    papers = arxiv_api.parse(body).papers
    for threshold in (0.45, 0.0, -1.0):
        sub = Subscription(name="kw", keywords=["helium"], threshold=threshold)
        matched = {m.paper_id for m in score(sub, papers)}
        wanted = {p.id for p in papers if " helium " in normalize_text(f"{p.title} {p.abstract}")}
        assert matched == wanted and 0 < len(wanted) < len(papers), threshold


def test_trending_narrowed_by_categories_alone() -> None:
    body = (FIXTURES / "arxiv_api" / "arxivpy2016_q_au_del_maestro.xml").read_bytes()
    papers = arxiv_api.parse(body).papers
    category = papers[0].categories[0]
    ranks = {"day": np.arange(1, len(papers) + 1), "week": np.zeros(len(papers), np.int64)}
    sub = Subscription(name="t", categories=[category], trending={"window": "day", "top": 10, "narrow": True})
    matched = {m.paper_id for m in score(sub, papers, trending=ranks)}
    in_category = {p.id for p in papers if category in p.categories}
    assert matched == in_category and 0 < len(matched) < len(papers)


def test_a_keyword_reason_names_only_the_terms_that_made_the_query_true() -> None:
    paper = Paper(id="2401.00001", title="Graph diffusion models", abstract="We study language and graphs.")
    for query, named in (
        ("(graph AND vision) OR diffusion", "keywords diffusion matched"),
        ("diffusion AND NOT (vision AND NOT language)", "keywords diffusion matched"),
        ("graph AND (diffusion OR vision)", "keywords graph, diffusion matched"),
    ):
        (match,) = score(Subscription(name="kw", keywords=[query]), [paper])
        assert any(r.startswith(named + " your query") for r in match.reasons), (query, match.reasons)
