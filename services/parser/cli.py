"""Parser commands mounted by ``paperwire``: ``parse`` and ``bench parse``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from services.parser.bench import CASES, bench
from services.parser.errors import ParseError
from services.parser.parse import SOURCES, parse_document, unwrap_recording
from shared.cli_errors import RUNTIME, existing_folder, fail, read_bytes

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def parse(
    file: Annotated[Path, typer.Argument(help="a fetched response (XML or JSON); arxiv.py JSON recordings too")],
    source: Annotated[str, typer.Option("--source", help=f"one of: {', '.join(SOURCES)}")] = "arxiv-api",
) -> None:
    """Parse one fetched response and print its papers as JSON lines; a response that does not parse exits 1
    with the reason, a missing file or an unknown --source exits 2."""
    if source not in SOURCES:
        raise fail(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    raw = read_bytes(file)
    try:
        result = parse_document(source, unwrap_recording(raw))
    except ParseError as exc:
        raise fail(f"{file.name}: {exc}".splitlines()[0], RUNTIME) from None
    for paper in result.papers:
        sys.stdout.write(paper.model_dump_json(exclude_none=True) + "\n")
    for error in result.errors:
        typer.echo(f"skipped item {error.index} ({error.ident}): {error.reason}", err=True)
    if result.no_announcement:
        typer.echo(f"no announcement: {result.no_announcement}", err=True)
    facts = {
        k: v
        for k, v in (
            ("total_results", result.total_results),
            ("start_index", result.start_index),
            ("resumption_token", result.resumption_token),
            ("complete_list_size", result.complete_list_size),
        )
        if v is not None
    }
    if facts:
        typer.echo(json.dumps(facts), err=True)


def bench_parse(
    fixtures: Annotated[Path, typer.Option(help="the tests/fixtures folder")] = DEFAULT_FIXTURES,
    seconds: Annotated[float, typer.Option(help="minimum time per case")] = 2.0,
) -> None:
    """Parse throughput in papers/s on the 387-record OAI file and one file of each other source."""
    if seconds <= 0:
        raise fail(f"--seconds must be more than 0, got {seconds}")
    existing_folder(fixtures, "--fixtures")
    missing = [relative for _, relative in CASES if not (fixtures / relative).is_file()]
    if missing:
        raise fail(f"--fixtures: {fixtures} has no {missing[0]} (give the repository's tests/fixtures folder)")
    for row in bench(fixtures, seconds):
        typer.echo(
            f"{row.source:10} {row.papers:4d} papers x {row.repeats:5d} in {row.seconds:6.2f}s: "
            f"{row.papers_per_s:10,.0f} papers/s {row.mb_per_s:7.1f} MB/s  {row.file}"
        )


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("", "parse", parse),
    ("bench", "parse", bench_parse),
]
