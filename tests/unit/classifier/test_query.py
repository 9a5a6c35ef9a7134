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


def test_andnot_is_and_not() -> None:
    """arXiv's own search syntax writes ANDNOT; it must not be read as the word 'andnot'."""
    assert parse_query("helium ANDNOT nanopore") == parse_query("helium AND NOT nanopore")
    assert run("helium ANDNOT nanopore", "Superfluid helium films")
    assert not run("helium ANDNOT nanopore", "Helium in a nanopore")
    with pytest.raises(QueryError, match="ANDNOT where a term was expected"):
        parse_query("ANDNOT nanopore")


@pytest.mark.parametrize("query", ["helium AND (NOT nanopore)", "helium AND (NOT a OR NOT b)", "a (-b)"])
def test_exclusion_inside_a_group_is_fine_when_the_query_needs_a_term(query: str) -> None:
    parse_query(query)


@pytest.mark.parametrize("query", ["NOT x", "(NOT x)", "a OR -b", "(NOT a) AND (NOT b)", "NOT (a AND b)"])
def test_query_that_matches_papers_without_its_terms_is_refused(query: str) -> None:
    with pytest.raises(QueryError, match="a query cannot only exclude"):
        parse_query(query)


def test_lower_case_operators_are_words() -> None:
    assert run("helium and not neon", "Helium and not neon")
    assert not run("helium and not neon", "Helium without neon")
