"""A subscription's personal Atom feed (RFC 4287): its matched papers, each with why it matched."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from shared.events import MatchFound
from shared.subscription import Subscription

ATOM_NS = "http://www.w3.org/2005/Atom"
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """Text without the characters XML 1.0 forbids: one control character in a title would break the whole feed."""
    return _NOT_XML_CHAR.sub("", text)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _element(parent: ET.Element, tag: str, attrs: dict[str, str] | None = None) -> ET.Element:
    return ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: xml_safe(v) for k, v in (attrs or {}).items()})


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = _element(parent, tag, attrs)
    element.text = xml_safe(text)
    return element


def build_feed(subscription: Subscription, matches: list[MatchFound], feed_url: str, page_url: str | None) -> bytes:
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _text(feed, "id", f"urn:paperwire:subscription:{subscription.id}")
    _text(feed, "title", f"paperwire: {subscription.name}")
    updated = max((m.occurred_at for m in matches), default=subscription.updated_at)
    _text(feed, "updated", _iso(updated))
    _text(feed, "generator", "paperwire")
    _element(feed, "link", {"rel": "self", "href": feed_url, "type": "application/atom+xml"})
    if page_url:
        _element(feed, "link", {"rel": "alternate", "href": page_url, "type": "text/html"})
    author = _element(feed, "author")
    _text(author, "name", "paperwire")
    for match in matches:
        paper = match.paper
        entry = _element(feed, "entry")
        _text(entry, "id", f"urn:paperwire:match:{subscription.id}:{paper.id}")
        _text(entry, "title", paper.title)
        _text(entry, "updated", _iso(match.occurred_at))
        if paper.submitted:
            _text(entry, "published", _iso(paper.submitted))
        _element(entry, "link", {"rel": "alternate", "href": paper.abs_url, "type": "text/html"})
        for person in paper.authors or []:
            _text(_element(entry, "author"), "name", person.name)
        if not paper.authors:
            _text(_element(entry, "author"), "name", "unknown")
        for category in paper.categories:
            _element(entry, "category", {"term": category})
        reasons = "; ".join(match.reasons) or "matched"
        _text(entry, "summary", f"Why: {reasons} (score {match.score:.2f}). {paper.abstract}".strip())
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
