"""Commands mounted by the lead's CLI: `paperwire eval relevance`, `paperwire bench score`, `paperwire seeds import`."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from shared.cli_errors import RUNTIME, at_least, fail, read_text


def eval_relevance(
    dataset: Annotated[Path, typer.Option("--dataset", help="JSON Lines file or folder of them")],
    k: Annotated[int, typer.Option("--k", min=2, help="seed papers per simulated subscriber")] = 10,
    draws: Annotated[int, typer.Option("--draws", min=1, help="random seed draws per category")] = 5,
    eval_days: Annotated[int, typer.Option("--eval-days", min=1, help="last days treated as new papers")] = 2,
    folds: Annotated[
        str, typer.Option("--folds", help="'last': the last --eval-days are new; 'rotate': each day in turn is new")
    ] = "last",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    rounds: Annotated[int, typer.Option("--feedback-rounds", min=0, help="simulated rating rounds")] = 3,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="embedding cache (SQLite); default: the classifier's, under PAPERWIRE_DATA_DIR"),
    ] = None,
) -> None:
    """Rank new papers for simulated subscribers ("category as interest"): paperwire vs known recipes."""
    from services.classifier.dataset import DatasetError
    from services.classifier.evaluate import evaluate, format_table
    from services.classifier.settings import ClassifierSettings

    cache = cache or ClassifierSettings().cache_path

    if not dataset.exists():
        raise fail(f"--dataset: no such file or folder: {dataset}")
    if cache.is_dir():
        raise fail(f"--cache: {cache} is a folder; give the SQLite file to use")
    try:
        result = evaluate(
            dataset,
            k=k,
            draws=draws,
            eval_days=eval_days,
            folds=folds,
            seed=seed,
            feedback_rounds=rounds,
            cache=cache,
            progress=None if as_json else (lambda msg: print(msg, file=sys.stderr)),
        )
    except UnicodeDecodeError as exc:
        raise fail(f"--dataset {dataset}: a file is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (DatasetError, ValueError) as exc:
        raise fail(str(exc)) from None
    except sqlite3.Error as exc:
        raise fail(f"--cache {cache}: cannot use the embedding cache: {exc}", RUNTIME) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_table(result))


def bench_score(
    subscriptions: Annotated[str, typer.Option("--subscriptions", help="comma-separated counts")] = "10000,100000",
    papers: Annotated[int, typer.Option("--papers", help="papers in the batch (a day)")] = 2000,
    vectors_per_subscription: Annotated[int, typer.Option("--vectors", help="positive vectors each")] = 3,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Time and memory of scoring a day of papers against N subscriptions (synthetic vectors, real matches)."""
    from services.classifier.bench import run_bench

    counts = _counts("--subscriptions", subscriptions)
    at_least("--papers", papers, 1)
    at_least("--vectors", vectors_per_subscription, 1)
    rows = [run_bench(n, papers, vectors_per_subscription) for n in counts]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(
            f"{row['subscriptions']:>8} subs x {row['papers']} papers: {row['seconds']:.2f} s in one batch, "
            f"{row['pairs_per_s'] / 1e6:.1f} M pairs/s, peak RSS {row['peak_rss_mb']:.0f} MB, "
            f"{row['matches']} matches ({row['matches_per_subscription']} per subscription, with reasons); "
            f"compile {row['compile_s']:.2f} s; one paper at a time {row['one_paper_ms']:.1f} ms "
            f"({row['day_one_paper_at_a_time_s']:.0f} s for the day); one paper after a subscription was added "
            f"and another removed {row['add_and_remove_then_one_paper_ms']:.0f} ms"
        )


def _counts(option: str, value: str) -> list[int]:
    """Comma-separated positive counts; a typo or a 0 is a usage error before minutes of benchmarking."""
    counts = []
    for item in value.split(","):
        try:
            count = int(item.strip())
        except ValueError:
            raise fail(f"{option} must be comma-separated whole numbers, got {item.strip()!r} in {value!r}") from None
        at_least(option, count, 1)
        counts.append(count)
    return counts


def seeds_import(
    path: Annotated[Path, typer.Argument(help="BibTeX (.bib) or CSL-JSON (.json) export, e.g. from Zotero")],
    as_json: Annotated[bool, typer.Option("--json", help="print {ids, skipped}")] = False,
) -> None:
    """arXiv ids of a reference manager export, ready for a subscription's seed_papers."""
    from shared.seeds_import import SeedImportError, import_seeds

    text = read_text(path)
    try:
        result = import_seeds(text)
    except SeedImportError as exc:
        raise fail(f"{path}: {exc}") from None
    if as_json:
        typer.echo(json.dumps({"ids": result.ids, "skipped": result.skipped}, indent=2))
        return
    for arxiv_id in result.ids:
        typer.echo(arxiv_id)
    for entry in result.skipped:
        typer.echo(f"skipped (no arXiv id): {entry}", err=True)


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("eval", "relevance", eval_relevance),
    ("seeds", "import", seeds_import),
    ("bench", "score", bench_score),
]
