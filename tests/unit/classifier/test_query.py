from __future__ import annotations

import numpy as np
import pytest

from shared.query import QueryError, normalize_text, parse_query


def run(query: str, title: str, abstract: str = "") -> bool:
    node = parse_query(query)
    t, a = normalize_text(title), normalize_text(abstract)
    return bool(node.evaluate({term: np.array([term.matches(t, a)]) for term in node.terms()})[0])


def test_phrase_needs_adjacent_words() -> None:
    assert run('"language model"', "A Language Model for Code")
    assert not run('"language model"', "A model of language")


def test_exclusion_and_or() -> None:
    assert run('"language model" -vision', "Language model for text")
    assert not run('"language model" -vision', "Language model for vision")
    assert run("diffusion OR gan", "A GAN for faces")
    assert not run("ti:diffusion", "Image synthesis", "diffusion models")
    assert run("abs:diffusion", "Image synthesis", "diffusion models")


def test_wildcard_and_parentheses() -> None:
    assert run("transform*", "Transformers are RNNs")
    assert run("(llm OR agent) AND NOT survey", "An LLM agent")
    assert not run("(llm OR agent) AND NOT survey", "A survey of LLM agents")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty query"),
        ('"open', "unbalanced quote"),
        ("(a OR b", "missing closing parenthesis"),
        ("NOT x", "cannot only exclude"),
        ("foo:bar", "unknown field"),
        ("a OR", "ends where a term"),
        ("x*", "at least 3 letters"),
    ],
)
def test_bad_queries_say_why(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(query)
