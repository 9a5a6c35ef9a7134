"""arXiv API Atom responses (current 2026 format and the older 2016-2025 one) into papers.

The two formats differ in namespaces declared per element, ``title type``, element order and the
timezone of ``updated``; reading by local name and ISO dates covers both. The API's error feed (an
entry whose id points at ``/api/errors#...``) becomes an ArxivApiError carrying arXiv's message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from services.parser.errors import ArxivApiError, ParseError
from services.parser.result import ItemError, ParseResult
from services.parser.text import parse_iso
from services.parser.xmlsafe import DEFAULT_MAX_BYTES, local, parse_xml, text_of
from shared.paper import Author, Paper, clean_text, says_withdrawn, split_arxiv_id


def parse(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    root = parse_xml(body, max_bytes=max_bytes)
    if local(root.tag) != "feed":
        raise ParseError(f"not an arXiv API Atom feed: root element is <{local(root.tag)}>")
    result = ParseResult(source="arxiv-api")
    entries: list[ET.Element] = []
    for child in root:
        name = local(child.tag)
        if name == "totalResults":
            result.total_results = _int(child)
        elif name == "startIndex":
            result.start_index = _int(child)
        elif name == "itemsPerPage":
            result.items_per_page = _int(child)
        elif name == "entry":
            entries.append(child)
    for index, entry in enumerate(entries):
        raw_id = (text_of(_child(entry, "id")) or "").strip()
        if "/api/errors" in raw_id:
            code = raw_id.rsplit("#", 1)[-1]
            raise ArxivApiError(code, clean_text(text_of(_child(entry, "summary")) or code))
        try:
            result.papers.append(parse_entry(entry))
        except (ValueError, ParseError) as exc:
            result.errors.append(ItemError(index=index, reason=_reason(exc), ident=raw_id or None))
    return result


def parse_entry(entry: ET.Element) -> Paper:
    """One Atom ``<entry>``; raises ValueError when it lacks an arXiv id or a title."""
    paper_id, version = split_arxiv_id((text_of(_child(entry, "id")) or "").strip())
    title = clean_text(text_of(_child(entry, "title")) or "")
    if not title:
        raise ValueError("entry has no title")
    primary: str | None = None
    categories: list[str] = []
    authors: list[Author] = []
    links: dict[str, str] = {}
    fields: dict[str, str] = {}
    for child in entry:
        name = local(child.tag)
        if name == "primary_category":
            primary = child.get("term")
        elif name == "category" and child.get("term"):
            categories.append(child.get("term", ""))
        elif name == "author":
            authors.append(_author(child))
        elif name == "link":
            _link(child, links)
        elif name in ("doi", "journal_ref", "comment", "published", "updated", "summary"):
            fields[name] = text_of(child) or ""
    if primary:
        categories = [primary, *[c for c in categories if c != primary]]
    categories = list(dict.fromkeys(categories))
    return Paper(
        id=paper_id,
        version=version,
        title=title,
        abstract=clean_text(fields.get("summary", "")),
        authors=authors,
        categories=categories,
        submitted=parse_iso(fields.get("published")),
        updated=parse_iso(fields.get("updated")),
        doi=clean_text(fields["doi"]) or None if "doi" in fields else None,
        journal_ref=clean_text(fields["journal_ref"]) or None if "journal_ref" in fields else None,
        comment=clean_text(fields["comment"]) or None if "comment" in fields else None,
        withdrawn=says_withdrawn(fields.get("comment")),
        links=links,
        sources=["arxiv-api"],
    )


def _author(element: ET.Element) -> Author:
    name = ""
    affiliations: list[str] = []
    for child in element:
        if local(child.tag) == "name":
            name = clean_text(text_of(child) or "")
        elif local(child.tag) == "affiliation":
            affiliation = clean_text(text_of(child) or "")
            if affiliation:
                affiliations.append(affiliation)
    return Author(name=name, affiliations=affiliations)


def _link(element: ET.Element, links: dict[str, str]) -> None:
    href = element.get("href")
    if not href:
        return
    title, rel = element.get("title"), element.get("rel")
    if title in ("pdf", "doi"):
        links[title] = href
    elif rel == "alternate":
        links["abs"] = href


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if local(child.tag) == name:
            return child
    return None


def _int(element: ET.Element) -> int | None:
    try:
        return int((element.text or "").strip())
    except ValueError:
        return None


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
