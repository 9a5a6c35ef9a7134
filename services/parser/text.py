"""Small text helpers shared by the per-source parsers (authors, dates)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from shared.paper import Author, clean_text

_AND_RE = re.compile(r",?\s+and\s+|\s*;\s*", re.I)
_AFFIL_RE = re.compile(r"^(?P<name>.*?)\s*\((?P<affil>[^()]*)\)\s*$")


def split_authors(raw: str) -> list[Author]:
    """Split an arXiv author line ("A, B (MIT), and C") on commas and "and", outside parentheses."""
    parts: list[str] = []
    depth, current = 0, []
    for char in clean_text(raw):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    authors: list[Author] = []
    for part in parts:
        for name in _split_and(part):
            name = name.strip()
            if not name:
                continue
            match = _AFFIL_RE.match(name)
            if match and match.group("name"):
                authors.append(Author(name=match.group("name"), affiliations=[match.group("affil").strip()]))
            else:
                authors.append(Author(name=name))
    return authors


def _split_and(part: str) -> list[str]:
    # Only split on " and " outside parentheses (an affiliation may read "Dept. of X and Y").
    if "(" in part:
        head, _, tail = part.partition("(")
        pieces = _AND_RE.split(head)
        pieces[-1] = f"{pieces[-1]}({tail}"
        return pieces
    return _AND_RE.split(part)


def parse_iso(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None  # an unreadable date is a missing date, not a lost paper
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_rfc822(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
