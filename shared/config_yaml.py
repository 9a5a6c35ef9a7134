"""YAML as people write configuration by hand: what ``subscriptions load`` and ``subscriptions create`` read."""

from __future__ import annotations

import re

import yaml


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 reads an unquoted ``at: 10:30`` as the base-60 integer 630, which then fails as a time with a
    UTC offset; here integers are decimal, octal, hex or binary only, so 10:30 stays the string "10:30"."""


_INT_TAG = "tag:yaml.org,2002:int"
_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, _INT if tag == _INT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> object:
    """Safe YAML, without YAML 1.1's base-60 integers (see ``ConfigLoader``)."""
    return yaml.load(text, Loader=ConfigLoader)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error on one line with where it is, not PyYAML's multi-line excerpt of the text."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
