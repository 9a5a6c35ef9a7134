"""One entry point: ``parse_document(source, body)`` picks the parser for the source."""

from __future__ import annotations

import json
from collections.abc import Callable

from services.parser import arxiv_api, arxiv_oai, arxiv_rss, hf_daily
from services.parser.errors import ParseError
from services.parser.result import ParseResult
from services.parser.xmlsafe import DEFAULT_MAX_BYTES

PARSERS: dict[str, Callable[..., ParseResult]] = {
    "arxiv-api": arxiv_api.parse,
    "arxiv-rss": arxiv_rss.parse,
    "arxiv-oai": arxiv_oai.parse,
    "hf-daily": hf_daily.parse,
}
SOURCES = tuple(PARSERS)


def parse_document(source: str, body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    """Parse one fetched response; raises ParseError (with a one-line reason) for a rejected document."""
    try:
        parser = PARSERS[source]
    except KeyError:
        raise ParseError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}") from None
    return parser(body, max_bytes=max_bytes)


def unwrap_recording(body: bytes) -> bytes | str:
    """Accept the arxiv.py ``{url, status_code, body}`` recordings too: their ``body`` is the response."""
    head = body.lstrip()[:1]
    if head != b"{":
        return body
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return body
    if isinstance(data, dict) and isinstance(data.get("body"), str) and "status_code" in data:
        return data["body"]
    return body
