"""The one Paper model every service speaks, keyed by the versionless arXiv id."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

# New style (since 2007-04): YYMM.NNNN until 2014-12, YYMM.NNNNN from 2015-01 (years 9x read as the 1990s, before
# new-style ids existed, so they are refused); old style: archive[.SUBJ]/YYMMNNN.
_MONTH = r"(?:0[1-9]|1[0-2])"
_NEW_ID = (
    rf"(?:07(?:0[4-9]|1[0-2])|(?:0[89]|1[0-4]){_MONTH})\.\d{{4}}(?!\d)"
    rf"|(?:1[5-9]|[2-8]\d){_MONTH}\.\d{{5}}(?!\d)"
)
_OLD_ID = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID_PATTERN = rf"(?:{_NEW_ID}|{_OLD_ID})(?:v\d+)?"
"""An arXiv id with optional version, unanchored: for finding ids in text; :func:`split_arxiv_id` validates."""
ARXIV_URL_PREFIX = r"(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/"
"""What precedes an id in an abs or pdf URL, with or without scheme and ``www.``."""
ARXIV_ID_RE = re.compile(rf"^(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?$")
_URL_PREFIX_RE = re.compile(rf"^(?:{ARXIV_URL_PREFIX}|arxiv:|oai:arXiv\.org:)", re.I)

AnnounceType = Literal["new", "cross", "replace", "replace-cross"]
SourceName = Literal["arxiv-api", "arxiv-rss", "arxiv-oai", "hf-daily"]


class InvalidArxivId(ValueError):
    """Raised for a string that is not an arXiv identifier in either style."""


def split_arxiv_id(raw: str) -> tuple[str, int | None]:
    """Return (versionless id, version) for any arXiv id, abs/pdf URL or OAI identifier."""
    text = _URL_PREFIX_RE.sub("", raw.strip())
    text = text.removesuffix(".pdf")
    match = ARXIV_ID_RE.match(text)
    if not match:
        raise InvalidArxivId(f"not an arXiv id: {raw!r}")
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def normalize_arxiv_id(raw: str) -> str:
    return split_arxiv_id(raw)[0]


_WITHDRAWN_RE = re.compile(
    r"\b(?:paper|article|submission|manuscript|preprint|work|version)\s+(?:has\s+been|is|was)\s+withdrawn\b"
    r"|\bwithdrawn\s+by\s+the\s+authors?\b",
    re.IGNORECASE,
)


def says_withdrawn(comment: str | None) -> bool:
    """Whether an arXiv comment is a withdrawal notice ("This paper has been withdrawn by the author ...")."""
    return bool(comment and _WITHDRAWN_RE.search(comment))


def clean_text(text: str) -> str:
    """Collapse whitespace and LaTeX line breaks (``\\\\``, ``\\newline``) into single spaces."""
    text = re.sub(r"\\\\|\\newline\b", " ", text)
    return " ".join(text.split())


_WEB_URL_RE = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.I)


def web_url(value: str | None) -> str | None:
    """``value`` if it is an http(s) URL with a host, else None: links end up in hrefs of emails and pages, where
    a ``javascript:`` or ``data:`` URL from a source (e.g. Hugging Face's ``githubRepo``) would run."""
    if not value or not _WEB_URL_RE.fullmatch(value):
        return None
    try:
        return value if urlsplit(value).hostname else None
    except ValueError:
        return None


class Author(BaseModel):
    name: str
    affiliations: list[str] = Field(default_factory=list)


class HuggingFaceInfo(BaseModel):
    """What Hugging Face Daily Papers adds to a paper: community signal and AI summaries."""

    upvotes: int = 0
    ai_summary: str | None = None
    ai_keywords: list[str] = Field(default_factory=list)
    github_repo: str | None = None
    github_stars: int | None = None
    organization: str | None = None
    daily_date: date | None = None

    @field_validator("github_repo")
    @classmethod
    def _web_repo(cls, value: str | None) -> str | None:
        return web_url(value)


class Paper(BaseModel):
    id: str = Field(description="versionless arXiv id, e.g. 2401.01234 or hep-th/9901001")
    version: int | None = None
    title: str
    abstract: str = ""
    authors: list[Author] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list, description="primary category first")
    submitted: datetime | None = None
    updated: datetime | None = None
    announced: date | None = None
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    announce_type: AnnounceType | None = None
    withdrawn: bool = False
    """The authors withdrew this version (arXiv keeps the record, often with an empty last version): stored and
    shown, never sent as an alert."""
    hf: HuggingFaceInfo | None = None
    sources: list[SourceName] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _versionless(cls, value: str) -> str:
        return normalize_arxiv_id(value)

    @field_validator("links")
    @classmethod
    def _web_links(cls, value: dict[str, str]) -> dict[str, str]:
        """Only http(s) links are kept, whoever built the paper: every href (email, Slack, feed, page) reads here."""
        return {name: url for name, url in value.items() if web_url(url)}

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    @property
    def abs_url(self) -> str:
        return self.links.get("abs") or f"https://arxiv.org/abs/{self.id}"

    @property
    def pdf_url(self) -> str:
        return self.links.get("pdf") or f"https://arxiv.org/pdf/{self.id}"


PaperChange = Literal["new", "updated", "merged"]


def merge_change(known: Paper | None, new: Paper) -> tuple[Paper, PaperChange | None]:
    """``new`` merged into what is known, and what that is to subscribers: "new" (an unknown id), "updated" (a
    higher version), "merged" (new facts), or None when nothing new was learned (an identical repeat)."""
    if known is None:
        return new, "new"
    merged = merge_papers(known, new)
    if merged == known:
        return known, None
    # A paper known only from Hugging Face has no version yet: count it as v1, so arXiv's listing of that v1
    # adds facts ("merged") and a v2 is "updated".
    return merged, "updated" if (merged.version or 0) > (known.version or 1) else "merged"


VERSION_FACTS = ("comment", "withdrawn", "updated", "announced", "announce_type")
"""Facts of one version: a newer version never inherits them (v1's comment, its "new" announcement)."""


def merge_papers(known: Paper, new: Paper) -> Paper:
    """One paper seen from several sources: newest version wins the text, sources and HF data add up.

    At the same version the known record wins and only gains what it lacked (a second source of the
    same version must not wipe affiliations or dates the first one had), and a withdrawal either source saw
    stands (arXiv RSS carries no comment, so it cannot know); links add up. A newer version fills its gaps from
    the older one except for the ``VERSION_FACTS``.
    """
    same_version = (new.version or 0) == (known.version or 0)
    newer = new if (new.version or 0) > (known.version or 0) else known
    older = known if newer is new else new
    merged = newer.model_dump()
    for field, value in older.model_dump().items():
        if merged.get(field) in (None, "", [], {}) and (same_version or field not in VERSION_FACTS):
            merged[field] = value
    if same_version:
        merged["withdrawn"] = known.withdrawn or new.withdrawn
    merged["links"] = older.links | newer.links
    if (
        len(older.authors) == len(newer.authors)
        and any(a.affiliations for a in older.authors)
        and not any(a.affiliations for a in newer.authors)
    ):
        merged["authors"] = older.model_dump()["authors"]
    merged["sources"] = sorted(set(known.sources) | set(new.sources))
    hf_known, hf_new = known.hf, new.hf
    if hf_known and hf_new:
        # The latest Hugging Face reading wins: upvotes only move with time.
        merged["hf"] = hf_known.model_dump() | {k: v for k, v in hf_new.model_dump().items() if v not in (None, [], "")}
    return Paper.model_validate(merged)
