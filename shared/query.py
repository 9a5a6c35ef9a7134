"""Boolean keyword queries over title and abstract: words, "phrases", AND/OR/NOT, -exclusion, ti:/abs:.

Grammar (case-insensitive words, operators in capitals)::

    query  := or
    or     := and ("OR" and)*
    and    := unary (["AND"] unary | "ANDNOT" unary)*      adjacent terms mean AND; ANDNOT (arXiv's) is AND NOT
    unary  := ("NOT" | "-") unary | atom
    atom   := "(" or ")" | [field ":"] (word | "phrase")     field: ti, title, abs, abstract
    word   := letters/digits, a trailing * matches any word starting with it

A query must need some term to be present (``NOT x`` or ``a OR -b`` would match almost every paper); that
is checked on the whole query, so ``helium AND (NOT nanopore)`` is fine. Lower-case and/or/not are words.

Queries compile to a tree whose leaves are (field, term) pairs; the scorer evaluates each distinct
leaf once per paper batch, so thousands of subscriptions share the text work.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np

Field = Literal["any", "title", "abstract"]
_FIELDS: dict[str, Field] = {"ti": "title", "title": "title", "abs": "abstract", "abstract": "abstract"}
_TOKEN_RE = re.compile(r'\s*(?:(\()|(\))|(-)(?=[\w"(])|(?:(\w+):)?"([^"]*)"|(?:(\w+):)?([\w*.+#-]+)|(\S))')


class QueryError(ValueError):
    """A keyword query that does not parse; the message says where and why."""


# arXiv keeps TeX in titles, abstracts and author names: accents (B\'ela Bollob\'as, Schr\"odinger, R\'{e}nyi,
# Erd\H{o}s) and Greek letters ($\alpha$). Left as they are, the backslashes and quotes split the words.
_TEX_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    '"': "\u0308",
    "^": "\u0302",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "H": "\u030b",
    "v": "\u030c",
    "u": "\u0306",
    "c": "\u0327",
    "k": "\u0328",
}
_TEX_ACCENT_RE = re.compile(r"\\(['`\"^~=.]|[Hvuck](?![A-Za-z]))\s*(?:\{\s*(\\?[A-Za-z])\s*\}|(\\?[A-Za-z]))")
_TEX_LETTERS = {
    "ss": "ß",
    "aa": "å",
    "AA": "Å",
    "o": "ø",
    "O": "Ø",
    "l": "ł",
    "L": "Ł",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "i": "i",
    "j": "j",
}
_TEX_LETTER_RE = re.compile(r"\\(" + "|".join(sorted(_TEX_LETTERS, key=len, reverse=True)) + r")(?![A-Za-z])\s?")
_GREEK = {
    unicodedata.lookup(f"GREEK SMALL LETTER {name}"): name.lower()
    for name in (
        "ALPHA",
        "BETA",
        "GAMMA",
        "DELTA",
        "EPSILON",
        "ZETA",
        "ETA",
        "THETA",
        "IOTA",
        "KAPPA",
        "LAMDA",
        "MU",
        "NU",
        "XI",
        "OMICRON",
        "PI",
        "RHO",
        "SIGMA",
        "TAU",
        "UPSILON",
        "PHI",
        "CHI",
        "PSI",
        "OMEGA",
    )
}
_GREEK["λ"] = "lambda"
_GREEK["ς"] = "sigma"
_SYMBOL_WORDS = re.compile(r"(?<![a-z0-9])(c\+\+|c#|f#)(?![a-z0-9+#])")
_SYMBOL_NAMES = {"c++": "cplusplus", "c#": "csharp", "f#": "fsharp"}
# Greek letters by name; ø, ł, æ, œ, ß do not decompose under NFKD: spelled as the ASCII a reader would type.
_SPELLED = str.maketrans(
    {ch: f" {name} " for ch, name in _GREEK.items()}
    | {"ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ı": "i", "þ": "th"}
)


def detex(text: str) -> str:
    """TeX accents and letters as Unicode (\\'{e} -> é, {\\o} -> ø), and \\alpha-style Greek letter names as words."""
    if "\\" not in text:
        return text
    text = _TEX_ACCENT_RE.sub(lambda m: (m.group(2) or m.group(3)).lstrip("\\") + _TEX_ACCENTS[m.group(1)], text)
    text = _TEX_LETTER_RE.sub(lambda m: _TEX_LETTERS[m.group(1)], text)
    return re.sub(r"\\([A-Za-z]+)", r" \1 ", text).replace("{", "").replace("}", "")


def normalize_text(text: str) -> str:
    """Lower-case, TeX and accents resolved (Schr\\"odinger, Schrödinger and Schrodinger are one word), Greek
    letters spelled out (α and $\\alpha$ are "alpha"), C++/C#/F# kept as words, every other run of
    non-alphanumerics one space, padded with spaces."""
    text = unicodedata.normalize("NFKD", detex(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.translate(_SPELLED)
    text = _SYMBOL_WORDS.sub(lambda m: f" {_SYMBOL_NAMES[m.group(1)]} ", text)
    return " " + " ".join(re.findall(r"[a-z0-9]+", text)) + " "


@dataclass(frozen=True)
class Term:
    field: Field
    text: str  # normalized words joined by one space
    prefix: bool = False

    def describe(self) -> str:
        shown = f'"{self.text}"' if " " in self.text else self.text + ("*" if self.prefix else "")
        return shown if self.field == "any" else f"{self.field}:{shown}"

    def matches(self, title: str, abstract: str) -> bool:
        """``title``/``abstract`` already passed through :func:`normalize_text`."""
        needle = " " + self.text + ("" if self.prefix else " ")
        if self.field == "title":
            return needle in title
        if self.field == "abstract":
            return needle in abstract
        return needle in title or needle in abstract


@dataclass(frozen=True)
class Node:
    op: Literal["and", "or", "not", "term"]
    children: tuple[Node, ...] = ()
    term: Term | None = None

    def terms(self) -> list[Term]:
        if self.term is not None:
            return [self.term]
        return [t for child in self.children for t in child.terms()]

    def matched_terms(self, present: dict[Term, bool]) -> list[Term] | None:
        """For one paper: the terms whose presence made the query true (what a reason should name), or None when it
        is false. A term under a false OR branch, or under a NOT, is not named."""
        if self.op == "term":
            return [self.term] if present[self.term] else None  # type: ignore[index,list-item]
        if self.op == "not":
            return [] if self.children[0].matched_terms(present) is None else None
        parts = [c.matched_terms(present) for c in self.children]
        if self.op == "and":
            return None if any(p is None for p in parts) else [t for p in parts for t in p]  # type: ignore[union-attr]
        true = [p for p in parts if p is not None]
        return [t for p in true for t in p] if true else None

    def evaluate(self, columns: dict[Term, np.ndarray]) -> np.ndarray:
        """Vectorised over papers: ``columns[term]`` is a boolean array, one entry per paper."""
        if self.op == "term":
            return columns[self.term]  # type: ignore[index]
        if self.op == "not":
            return ~self.children[0].evaluate(columns)
        values = [c.evaluate(columns) for c in self.children]
        out = values[0].copy()
        for v in values[1:]:
            out = (out & v) if self.op == "and" else (out | v)
        return out


def _tokens(query: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    pos = 0
    query = query.strip()
    while pos < len(query):
        m = _TOKEN_RE.match(query, pos)
        if not m or m.end() == pos:
            break
        lpar, rpar, minus, pfield, phrase, wfield, word, other = m.groups()
        pos = m.end()
        if lpar:
            out.append(("(", None))
        elif rpar:
            out.append((")", None))
        elif minus:
            out.append(("NOT", None))
        elif phrase is not None:
            out.append(("TERM", f"{pfield or ''}\x00{phrase}\x00phrase"))
        elif word is not None:
            if word in ("AND", "OR", "NOT", "ANDNOT") and not wfield:
                out.append((word, None))
            else:
                out.append(("TERM", f"{wfield or ''}\x00{word}\x00word"))
        elif other:
            raise QueryError(f"unexpected character {other!r} at position {m.start(8) + 1}")
        if query[pos:].strip() == "":
            break
    return out


def _make_term(raw: str) -> Term:
    field_name, text, kind = raw.split("\x00")
    if field_name and field_name.lower() not in _FIELDS:
        raise QueryError(f"unknown field {field_name + ':'!r}; use ti:, title:, abs: or abstract:")
    field: Field = _FIELDS[field_name.lower()] if field_name else "any"
    prefix = text.endswith("*")  # a phrase's last word may be a prefix too: "graph neural network*"
    words = normalize_text(text.rstrip("*")).split()
    if not words:
        raise QueryError(f"empty {'phrase' if kind == 'phrase' else 'term'} {text!r}")
    if prefix and len(words[-1]) < 3:
        raise QueryError(f"wildcard {text!r} needs at least 3 letters before the *")
    return Term(field, " ".join(words), prefix)


def parse_query(query: str) -> Node:
    """Parse one keyword query; raises :class:`QueryError` with a plain-words message."""
    if not query.strip():
        raise QueryError("empty query")
    if query.count('"') % 2:
        raise QueryError('unbalanced quote: every " needs a closing "')
    tokens = _tokens(query)
    pos = 0

    def peek() -> str | None:
        return tokens[pos][0] if pos < len(tokens) else None

    def take() -> tuple[str, str | None]:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Node:
        items = [parse_and()]
        while peek() == "OR":
            take()
            items.append(parse_and())
        return items[0] if len(items) == 1 else Node("or", tuple(items))

    def parse_and() -> Node:
        items = [parse_unary()]
        while peek() in ("AND", "ANDNOT", "NOT", "TERM", "("):
            if peek() == "ANDNOT":
                take()
                items.append(Node("not", (parse_unary(),)))
                continue
            if peek() == "AND":
                take()
            items.append(parse_unary())
        return items[0] if len(items) == 1 else Node("and", tuple(items))

    def parse_unary() -> Node:
        kind = peek()
        if kind == "NOT":
            take()
            return Node("not", (parse_unary(),))
        if kind == "(":
            take()
            inner = parse_or()
            if peek() != ")":
                raise QueryError("missing closing parenthesis")
            take()
            return inner
        if kind == "TERM":
            return Node("term", term=_make_term(take()[1] or ""))
        if kind is None:
            raise QueryError("query ends where a term was expected")
        raise QueryError(f"{kind} where a term was expected")

    node = parse_or()
    if pos != len(tokens):
        raise QueryError(f"unexpected {tokens[pos][0]!r} (unbalanced parenthesis?)")
    if _true_without_terms(node):
        raise QueryError(
            "a query cannot only exclude: add a term to look for (it matches papers without any of its terms)"
        )
    return node


def _true_without_terms(node: Node) -> bool:
    """Whether the query matches a paper that contains none of its terms."""
    if node.op == "term":
        return False
    if node.op == "not":
        return not _true_without_terms(node.children[0])
    values = [_true_without_terms(c) for c in node.children]
    return all(values) if node.op == "and" else any(values)
