"""Hugging Face Daily Papers: upvotes, AI summary and keywords, GitHub repo, organisation."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from services.parser.parse import parse_document

HF = Path(__file__).parents[2] / "fixtures" / "hf_daily_papers"


def test_sotawhat_30_items() -> None:
    result = parse_document("hf-daily", (HF / "sotawhat_hf_daily_papers_2026-06.json").read_bytes())
    assert len(result.papers) == 30 and not result.errors
    paper = result.papers[0]
    assert paper.id == "2606.00467"
    assert paper.hf is not None and paper.hf.upvotes == 0
    assert paper.hf.organization == "California institute of technology"
    assert paper.hf.ai_keywords[:2] == ["zero-shot annotation", "LLM-as-a-judge"]
    assert paper.hf.ai_summary.startswith("Large language models exhibit limited ability to correct zero-shot errors")
    assert paper.hf.daily_date == date(2026, 6, 12)
    assert [a.name for a in paper.authors] == ["Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez"]
    assert paper.sources == ["hf-daily"]


def test_llmpaperradar_upvotes_and_repo() -> None:
    result = parse_document("hf-daily", (HF / "llmpaperradar_hf_daily_papers_2026-05.json").read_bytes())
    assert [p.id for p in result.papers] == ["2605.05242", "2605.06548", "2605.06130"]
    first = result.papers[0]
    assert first.hf.upvotes == 86
    assert first.hf.github_repo == "https://github.com/DCI-Agent/DCI-Agent-Lite"
    assert first.hf.organization == "TIGER-Lab"
    assert result.papers[1].hf.upvotes == 68 and result.papers[1].hf.github_repo is None


def test_allnewsai_without_ai_summary() -> None:
    result = parse_document("hf-daily", (HF / "allnewsai_hf_daily_papers_2026-07.json").read_bytes())
    first = result.papers[0]
    assert first.id == "2607.23193"
    assert first.title == "OmniScope: Modality-Decoupled Token Compression for Omnimodal Large Language Models"
    assert first.hf.upvotes == 3 and first.hf.github_stars == 3
    assert first.hf.github_repo == "https://github.com/MAC-AutoML/OmniScope"
    assert first.hf.ai_summary is None and first.hf.organization is None
    assert result.papers[1].hf.organization == "Nanyang Technological University"


def test_malformed_items_are_skipped_and_the_rest_kept() -> None:
    """sotawhat 2026-06-12 (30 items), changed in memory: one item's "paper" null, one a bare string, one
    item not an object, one paper with an author that is a string. Each is reported with its index (and id
    when readable); the other 26 papers stay. Before the fix the error report itself raised AttributeError
    on the null/string "paper" and the whole day's list was lost."""
    items = json.loads((HF / "sotawhat_hf_daily_papers_2026-06.json").read_text())
    ids = [item["paper"]["id"] for item in items]
    items[3]["paper"] = None
    items[7]["paper"] = ids[7]
    items[10] = "not an object"
    items[12]["paper"]["authors"] = ["Jane Doe"]
    result = parse_document("hf-daily", json.dumps(items))
    assert [(e.index, e.ident) for e in result.errors] == [(3, None), (7, None), (10, None), (12, ids[12])]
    assert [p.id for p in result.papers] == [pid for i, pid in enumerate(ids) if i not in {3, 7, 10, 12}]


def test_repo_and_project_links_must_be_http() -> None:
    """githubRepo and projectPage end up in hrefs of e-mails: a javascript: or data: URL is dropped, not linked."""
    items = json.loads((HF / "llmpaperradar_hf_daily_papers_2026-05.json").read_text())
    items[0]["paper"]["githubRepo"] = "javascript:alert(document.domain)"
    items[0]["paper"]["projectPage"] = "data:text/html,<script>alert(1)</script>"
    items[1]["paper"]["githubRepo"] = " JavaScript:alert(1)"
    items[2]["paper"]["githubRepo"] = "https://github.com/example/repo"
    result = parse_document("hf-daily", json.dumps(items))
    first, second, third = result.papers
    assert first.hf.github_repo is None and "code" not in first.links and "project" not in first.links
    assert second.hf.github_repo is None and "code" not in second.links
    assert third.links["code"] == third.hf.github_repo == "https://github.com/example/repo"
    assert first.links["abs"] == "https://arxiv.org/abs/2605.05242"
