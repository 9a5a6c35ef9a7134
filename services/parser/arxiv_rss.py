"""arXiv RSS 2.0 and Atom category feeds (``rss.arxiv.org/rss/<cats>``, ``/atom/<cats>``) into papers.

Each item carries ``arxiv:announce_type`` (new, cross, replace, replace-cross), the announcement
date, the authors as one ``dc:creator`` line, and ``arxiv:DOI`` / ``arxiv:journal_reference`` once
published (arXiv's RSS and Atom specifications list the same item elements for both layouts).
A feed with no items is arXiv saying "nothing was announced" (weekends, holidays): that is a
``no_announcement`` fact with the reason, not an error.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

from services.parser.errors import ParseError
from services.parser.result import ItemError, ParseResult
from services.parser.text import parse_iso, parse_rfc822, split_authors
from services.parser.xmlsafe import DEFAULT_MAX_BYTES, local, parse_xml, text_of
from shared.paper import Author, Paper, clean_text, split_arxiv_id

ANNOUNCE_TYPES = ("new", "cross", "replace", "replace-cross")
ATOM_SKIP_DAYS = ("Saturday", "Sunday")
_DESC_RE = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[a-z-]+)\s*(?:Abstract:\s*)?(?P<abstract>.*)$", re.S
)


def parse(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    root = parse_xml(body, max_bytes=max_bytes)
    kind = local(root.tag)
    if kind == "rss":
        channel = next((c for c in root if local(c.tag) == "channel"), None)
        if channel is None:
            raise ParseError("RSS document has no <channel>")
        items = [c for c in channel if local(c.tag) == "item"]
        feed_date = _date(parse_rfc822(_text(channel, "pubDate")))
        parse_item = _rss_item
    elif kind == "feed":
        channel = root
        items = [c for c in root if local(c.tag) == "entry"]
        feed_date = _date(parse_iso(_text(root, "updated")))
        parse_item = _atom_entry
    else:
        raise ParseError(f"not an RSS or Atom feed: root element is <{kind}>")
    result = ParseResult(source="arxiv-rss")
    if not items:
        result.no_announcement = _no_items_reason(channel, feed_date)
        return result
    for index, item in enumerate(items):
        try:
            result.papers.append(parse_item(item, feed_date))
        except (ValueError, ParseError) as exc:
            ident = _text(item, "guid") or _text(item, "id")
            result.errors.append(ItemError(index=index, reason=str(exc), ident=ident))
    return result


def _no_items_reason(channel: ET.Element, feed_date: date | None) -> str:
    skip = [clean_text(text_of(d) or "") for s in channel if local(s.tag) == "skipDays" for d in s]
    if not skip and local(channel.tag) == "feed":
        skip = list(ATOM_SKIP_DAYS)  # Atom has no skipDays element; arXiv's weekend is the same
    when = f"{feed_date:%A %Y-%m-%d}" if feed_date else "this feed"
    if feed_date and feed_date.strftime("%A") in skip:
        return f"no announcement on {when}: arXiv does not announce on {', '.join(sorted(skip))}"
    return f"no announcement in {when}: the feed lists no papers (holiday or announcement not yet out)"


def _rss_item(item: ET.Element, feed_date: date | None) -> Paper:
    guid = _text(item, "guid") or _text(item, "link") or ""
    description = _text(item, "description") or ""
    match = _DESC_RE.match(description)
    raw_id = guid if guid else (match.group("id") if match else "")
    paper_id, version = split_arxiv_id(raw_id.strip())
    if version is None and match:
        version = split_arxiv_id(match.group("id"))[1]
    announce = _text(item, "announce_type") or (match.group("type") if match else None)
    abstract = match.group("abstract") if match else description
    categories = [clean_text(text_of(c) or "") for c in item if local(c.tag) == "category"]
    creator = _text(item, "creator") or ""
    announced = _date(parse_rfc822(_text(item, "pubDate"))) or feed_date
    return _paper(item, paper_id, version, announce, abstract, categories, split_authors(creator), announced)


def _atom_entry(entry: ET.Element, feed_date: date | None) -> Paper:
    summary = _text(entry, "summary") or ""
    match = _DESC_RE.match(summary)
    raw_id = match.group("id") if match else (_text(entry, "id") or "")
    paper_id, version = split_arxiv_id(raw_id.strip())
    announce = _text(entry, "announce_type") or (match.group("type") if match else None)
    abstract = match.group("abstract") if match else summary
    categories = [c.get("term", "") for c in entry if local(c.tag) == "category" and c.get("term")]
    creator = _text(entry, "creator")
    authors = [
        Author(name=clean_text(_text(a, "name") or "")) for a in entry if local(a.tag) == "author" and _text(a, "name")
    ]
    if creator:
        authors = split_authors(creator)  # arXiv's Atom layout: one dc:creator line, as in RSS
    elif len(authors) == 1 and "," in authors[0].name:
        authors = split_authors(authors[0].name)
    announced = _date(parse_iso(_text(entry, "published"))) or feed_date
    return _paper(entry, paper_id, version, announce, abstract, categories, authors, announced)


def _paper(
    item: ET.Element,
    paper_id: str,
    version: int | None,
    announce: str | None,
    abstract: str,
    categories: list[str],
    authors: list[Author],
    announced: date | None,
) -> Paper:
    title = clean_text(_text(item, "title") or "")
    if not title:
        raise ValueError(f"{paper_id}: item has no title")
    announce = clean_text(announce) if announce else None
    if announce is not None and announce not in ANNOUNCE_TYPES:
        raise ValueError(f"{paper_id}: unknown announce type {announce!r}")
    links = {"abs": f"https://arxiv.org/abs/{paper_id}", "pdf": f"https://arxiv.org/pdf/{paper_id}"}
    doi = (_text(item, "DOI") or "").split()
    return Paper(
        id=paper_id,
        version=version,
        title=title,
        abstract=clean_text(abstract),
        authors=authors,
        categories=list(dict.fromkeys(c for c in categories if c)),
        announced=announced,
        announce_type=announce,  # type: ignore[arg-type]
        doi=doi[0] if doi else None,
        journal_ref=clean_text(_text(item, "journal_reference") or "") or None,
        links=links,
        sources=["arxiv-rss"],
    )


def _text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if local(child.tag) == name:
            return text_of(child)
    return None


def _date(value) -> date | None:  # noqa: ANN001 - datetime or None
    return value.date() if value is not None else None
