"""Errors the parser raises: each carries a one-line reason a person can act on."""

from __future__ import annotations


class ParseError(ValueError):
    """A whole document was rejected (ill-formed, hostile, too large, wrong kind)."""


class DocumentTooLarge(ParseError):
    """The body is above the configured size limit: rejected before any parsing."""


class UnsafeDocument(ParseError):
    """Entity declarations, external references or other XML tricks we refuse to expand."""


class ArxivApiError(ParseError):
    """The arXiv API answered with its error feed (e.g. ``incorrect_id_format_for_abc``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"arXiv API error {code}: {message}")


class OaiError(ParseError):
    """An OAI-PMH ``<error code=...>`` response, kept by name so callers can branch on it."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"OAI-PMH error {code}: {message}")
