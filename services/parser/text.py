"""Small text helpers shared by the per-source parsers (authors, dates)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from shared.paper import Author, clean_text

_AND_RE = re.compile(r"\s+and\s+", re.I)
_LEGEND_RE = re.compile(r"^\(\d+\)")
_NUMBER_RE = re.compile(r"\((\d+)\)")


def split_authors(raw: str) -> list[Author]:
    """Authors of an arXiv author line ("A (MIT), B and C (ETH)"), each with the affiliation written after it.

    arXiv's numbered form ("A (1), B (1,2) ((1) MIT, (2) ETH)") gets the numbers replaced by the names.
    """
    authors = [_author(part) for part in _split_top_level(clean_text(raw))]
    if authors and authors[-1].affiliations and _LEGEND_RE.match(authors[-1].affiliations[0]):
        legend = _legend(authors[-1].affiliations[0])
        authors[-1] = _author(authors[-1].name)
        authors = [_resolve(author, legend) for author in authors]
    return authors


def _split_top_level(text: str) -> list[str]:
    """Split on ",", ";" and " and " outside parentheses (an affiliation may read "Dept. of X and Y, Z")."""
    parts: list[str] = []
    start = depth = index = 0
    while index < len(text):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and char in ",;":
            parts.append(text[start:index])
            start = index + 1
        elif depth == 0 and (match := _AND_RE.match(text, index)):
            parts.append(text[start:index])
            start = index = match.end()
            continue
        index += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _author(part: str) -> Author:
    """A name with its trailing parenthesised affiliation, which may itself hold parentheses."""
    if part.endswith(")"):
        depth = 0
        for index in range(len(part) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(part[index], 0)
            if depth == 0:
                name, affiliation = part[:index].strip(), part[index + 1 : -1].strip()
                if name and affiliation:
                    return Author(name=name, affiliations=[affiliation])
                break
    return Author(name=part)


def _legend(text: str) -> dict[str, str]:
    """ "(1) MIT, (2) ETH" -> {"1": "MIT", "2": "ETH"}."""
    pieces = _NUMBER_RE.split(text)
    return {number: name.strip().rstrip(",;").strip() for number, name in zip(pieces[1::2], pieces[2::2], strict=True)}


def _resolve(author: Author, legend: dict[str, str]) -> Author:
    """Numbers ("1,2") to the legend's names; an affiliation that is not all known numbers stays as written."""
    resolved: list[str] = []
    for affiliation in author.affiliations:
        numbers = [n.strip() for n in affiliation.split(",")]
        if all(n in legend for n in numbers):
            resolved.extend(legend[n] for n in numbers)
        else:
            resolved.append(affiliation)
    return author.model_copy(update={"affiliations": resolved})


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
