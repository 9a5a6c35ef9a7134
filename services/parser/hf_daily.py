"""Hugging Face Daily Papers (``/api/daily_papers?date=...``) into papers with their HF community facts."""

from __future__ import annotations

import json
from typing import Any

from services.parser.errors import DocumentTooLarge, ParseError
from services.parser.result import ItemError, ParseResult
from services.parser.text import parse_iso
from services.parser.xmlsafe import DEFAULT_MAX_BYTES, decode_xml
from shared.paper import Author, HuggingFaceInfo, Paper, clean_text, split_arxiv_id


def parse(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    size = len(body.encode() if isinstance(body, str) else body)
    if size > max_bytes:
        raise DocumentTooLarge(f"document is {size} bytes, above the {max_bytes}-byte limit")
    try:
        data = json.loads(decode_xml(body))
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None
    if isinstance(data, dict) and "error" in data:
        raise ParseError(f"Hugging Face API error: {data['error']}")
    if not isinstance(data, list):
        raise ParseError(f"expected a JSON list of daily papers, got {type(data).__name__}")
    result = ParseResult(source="hf-daily")
    if not data:
        result.no_announcement = "Hugging Face lists no daily papers for this date"
    for index, item in enumerate(data):
        try:
            result.papers.append(parse_item(item))
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:  # 1e999 upvotes: inf
            result.errors.append(ItemError(index=index, reason=f"{type(exc).__name__}: {exc}", ident=_ident(item)))
    return result


def _ident(item: Any) -> str | None:
    """The item's paper id for the error report, when a malformed item still has a readable one."""
    paper = item.get("paper") if isinstance(item, dict) else None
    ident = paper.get("id") if isinstance(paper, dict) else None
    return str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None


def parse_item(item: dict[str, Any]) -> Paper:
    """One daily-papers entry: the arXiv paper plus upvotes, AI summary and keywords, repo, organisation."""
    paper = item["paper"]
    paper_id, version = split_arxiv_id(str(paper["id"]))
    title = clean_text(paper.get("title") or item.get("title") or "")
    if not title:
        raise ValueError(f"{paper_id}: no title")
    organization = paper.get("organization") or item.get("organization") or {}
    daily = parse_iso(paper.get("submittedOnDailyAt"))
    hf = HuggingFaceInfo(
        upvotes=int(paper.get("upvotes") or 0),
        ai_summary=clean_text(paper["ai_summary"]) if paper.get("ai_summary") else None,
        ai_keywords=[clean_text(k) for k in paper.get("ai_keywords") or [] if k],
        github_repo=paper.get("githubRepo") or None,
        github_stars=paper.get("githubStars"),
        organization=(organization.get("fullname") or organization.get("name")) if organization else None,
        daily_date=daily.date() if daily else None,
    )
    authors = [
        Author(name=clean_text(a["name"])) for a in paper.get("authors") or [] if a.get("name") and not a.get("hidden")
    ]
    links = {"abs": f"https://arxiv.org/abs/{paper_id}", "hf": f"https://huggingface.co/papers/{paper_id}"}
    if hf.github_repo:
        links["code"] = hf.github_repo
    if paper.get("projectPage"):
        links["project"] = paper["projectPage"]
    return Paper(
        id=paper_id,
        version=version,
        title=title,
        abstract=clean_text(paper.get("summary") or item.get("summary") or ""),
        authors=authors,
        submitted=parse_iso(paper.get("publishedAt")),
        links=links,
        hf=hf,
        sources=["hf-daily"],
    )
