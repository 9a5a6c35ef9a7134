"""arXiv OAI-PMH responses (ListRecords / GetRecord in arXivRaw or arXiv metadata) into papers.

OAI errors are handled by name: ``noRecordsMatch`` is an empty harvest (a fact, with arXiv's message),
every other code (badResumptionToken, badArgument, badVerb, idDoesNotExist, ...) raises OaiError so
the caller can branch on ``exc.code``. Deleted records are listed, not turned into papers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from services.parser.errors import OaiError, ParseError
from services.parser.result import ItemError, ParseResult
from services.parser.text import parse_rfc822, split_authors
from services.parser.xmlsafe import DEFAULT_MAX_BYTES, local, parse_xml, text_of
from shared.paper import Author, Paper, clean_text, says_withdrawn, split_arxiv_id

EMPTY_CODES = ("noRecordsMatch",)


def parse(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    root = parse_xml(body, max_bytes=max_bytes)
    if local(root.tag) != "OAI-PMH":
        raise ParseError(f"not an OAI-PMH response: root element is <{local(root.tag)}>")
    result = ParseResult(source="arxiv-oai")
    for child in root:
        if local(child.tag) == "error":
            code = child.get("code", "unknown")
            message = clean_text(text_of(child) or "")
            if code in EMPTY_CODES:
                result.no_announcement = f"{code}: {message}"
                return result
            raise OaiError(code, message)
    container = next((c for c in root if local(c.tag) in ("ListRecords", "GetRecord")), None)
    if container is None:
        raise ParseError("OAI-PMH response has neither ListRecords nor GetRecord nor error")
    index = 0
    for child in container:
        name = local(child.tag)
        if name == "resumptionToken":
            result.resumption_token = (child.text or "").strip() or None
            result.complete_list_size = _int(child.get("completeListSize"))
            result.cursor = _int(child.get("cursor"))
        elif name == "record":
            _record(child, index, result)
            index += 1
    return result


def _record(record: ET.Element, index: int, result: ParseResult) -> None:
    header = next((c for c in record if local(c.tag) == "header"), None)
    identifier = _text(header, "identifier") if header is not None else None
    if header is not None and header.get("status") == "deleted":
        if identifier:
            result.deleted_ids.append(_safe_id(identifier) or identifier)
        return
    metadata = next((c for c in record if local(c.tag) == "metadata"), None)
    body = next(iter(metadata), None) if metadata is not None else None
    try:
        if body is None:
            raise ValueError("record has no metadata")
        kind = local(body.tag)
        if kind == "arXivRaw":
            result.papers.append(parse_arxiv_raw(body))
        elif kind == "arXiv":
            result.papers.append(parse_arxiv_format(body))
        else:
            raise ValueError(f"unsupported metadata format <{kind}> (use arXivRaw or arXiv)")
    except (ValueError, ParseError) as exc:
        result.errors.append(ItemError(index=index, reason=str(exc), ident=identifier))


def parse_arxiv_raw(element: ET.Element) -> Paper:
    """arXivRaw: every version with its date, authors as one line, categories space-separated."""
    paper_id, _ = split_arxiv_id(_required(element, "id"))
    versions: list[tuple[int, datetime | None, str]] = []
    for child in element:
        if local(child.tag) == "version":
            number = _int((child.get("version") or "").lstrip("v"))
            if number is not None:
                versions.append((number, parse_rfc822(_text(child, "date")), (_text(child, "size") or "").strip()))
    versions.sort(key=lambda item: item[0])
    dates = [d for _, d, _ in versions if d is not None]
    return _paper(
        element,
        paper_id,
        version=versions[-1][0] if versions else None,
        authors=split_authors(_text(element, "authors") or ""),
        submitted=dates[0] if dates else None,
        updated=dates[-1] if dates else None,
        # A withdrawal is a new version without files; its comment does not always say so.
        emptied=bool(versions) and versions[-1][2] == "0kb",
    )


def parse_arxiv_format(element: ET.Element) -> Paper:
    """arXiv metadata format: structured authors with affiliations, created/updated days, no version numbers."""
    paper_id, version = split_arxiv_id(_required(element, "id"))
    authors: list[Author] = []
    container = next((c for c in element if local(c.tag) == "authors"), None)
    for author in container if container is not None else []:
        parts = [_text(author, "forenames"), _text(author, "keyname"), _text(author, "suffix")]
        name = clean_text(" ".join(p for p in parts if p))
        affiliations = [clean_text(text_of(a) or "") for a in author if local(a.tag) == "affiliation"]
        if name:
            authors.append(Author(name=name, affiliations=[a for a in affiliations if a]))
    created = _day(_text(element, "created"))
    return _paper(
        element,
        paper_id,
        version=version,
        authors=authors,
        submitted=created,
        updated=_day(_text(element, "updated")) or created,  # no <updated>: one version, as arXivRaw and the API say
    )


def _paper(
    element: ET.Element,
    paper_id: str,
    *,
    version: int | None,
    authors: list[Author],
    submitted: datetime | None,
    updated: datetime | None,
    emptied: bool = False,
) -> Paper:
    title = clean_text(_text(element, "title") or "")
    comment = clean_text(_text(element, "comments") or "") or None
    if not title:
        raise ValueError(f"{paper_id}: record has no title")
    categories = (_text(element, "categories") or "").split()
    doi = (_text(element, "doi") or "").split()
    return Paper(
        id=paper_id,
        version=version,
        title=title,
        abstract=clean_text(_text(element, "abstract") or ""),
        authors=authors,
        categories=list(dict.fromkeys(categories)),
        submitted=submitted,
        updated=updated,
        doi=doi[0] if doi else None,
        journal_ref=clean_text(_text(element, "journal-ref") or "") or None,
        comment=comment,
        withdrawn=emptied or says_withdrawn(comment),
        links={"abs": f"https://arxiv.org/abs/{paper_id}", "pdf": f"https://arxiv.org/pdf/{paper_id}"},
        sources=["arxiv-oai"],
    )


def _required(element: ET.Element, name: str) -> str:
    value = (_text(element, name) or "").strip()
    if not value:
        raise ValueError(f"record has no <{name}>")
    return value


def _text(element: ET.Element | None, name: str) -> str | None:
    if element is None:
        return None
    for child in element:
        if local(child.tag) == name:
            return text_of(child)
    return None


def _day(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    return datetime.fromisoformat(value.strip()).replace(tzinfo=UTC)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _safe_id(identifier: str) -> str | None:
    try:
        return split_arxiv_id(identifier)[0]
    except ValueError:
        return None
