from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.classifier.cli import COMMANDS
from tests.unit.classifier.conftest import DATASET, oai_labeled_set


def make_app() -> typer.Typer:
    app = typer.Typer()
    groups: dict[str, typer.Typer] = {}
    for group, name, fn in COMMANDS:
        if group not in groups:
            groups[group] = typer.Typer()
            app.add_typer(groups[group], name=group)
        groups[group].command(name)(fn)
    return app


def test_eval_relevance_on_a_real_slice(tmp_path: Path, labeled_slice) -> None:
    _, _, cache = labeled_slice
    data = tmp_path / "data"
    data.mkdir()
    # A real slice: the first 60 lines of three days, file names carry the dates.
    for src in sorted(DATASET.glob("*.jsonl"))[:3]:
        lines = src.read_text().splitlines()[:60]
        (data / src.name).write_text("\n".join(lines) + "\n")
    shutil.copy(cache, tmp_path / "cache.sqlite")
    result = CliRunner().invoke(
        make_app(),
        [
            "eval",
            "relevance",
            "--dataset",
            str(data),
            "--k",
            "5",
            "--draws",
            "2",
            "--eval-days",
            "1",
            "--json",
            "--cache",
            str(tmp_path / "cache.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for method in ("random", "tfidf_svm", "embedding_centroid", "embedding_logreg", "paperwire"):
        assert 0.0 <= out[method]["ndcg@10"] <= 1.0
    assert out["paperwire"]["ndcg@10"] > out["random"]["ndcg@10"]
    assert [r["round"] for r in out["feedback_rounds"]] == [0, 1, 2, 3]


def test_eval_relevance_rotating_folds_on_a_real_slice(tmp_path: Path, labeled_slice) -> None:
    """Each of the three days is the new day once; categories are counted per fold (day/category)."""
    _, _, cache = labeled_slice
    data = tmp_path / "data"
    data.mkdir()
    for src in sorted(DATASET.glob("*.jsonl"))[:3]:
        (data / src.name).write_text("\n".join(src.read_text().splitlines()[:60]) + "\n")
    shutil.copy(cache, tmp_path / "cache.sqlite")
    args = ["eval", "relevance", "--dataset", str(data), "--k", "5", "--draws", "1", "--folds", "rotate"]
    args += ["--feedback-rounds", "0", "--json", "--cache", str(tmp_path / "cache.sqlite")]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["setup"]["folds"] == "rotate"
    assert out["setup"]["best_baseline"] in ("tfidf_svm", "embedding_centroid", "embedding_logreg")
    assert out["paperwire"]["ndcg@10"] > out["random"]["ndcg@10"]
    text = CliRunner().invoke(make_app(), [a for a in args if a != "--json"]).output
    assert "rotating folds (each day new once)" in text
    bad = CliRunner().invoke(make_app(), [*args[:4], "--folds", "sideways"])
    assert bad.exit_code == 2 and "--folds must be 'last' or 'rotate'" in bad.output


def test_eval_relevance_reports_bad_dataset(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"id": "1", "title": "t", "categories": "cs.CL"}\n')
    result = CliRunner().invoke(make_app(), ["eval", "relevance", "--dataset", str(bad)])
    assert result.exit_code == 2
    assert "no `date` field" in result.output


def test_eval_relevance_on_a_listing_from_other_fields(tmp_path: Path) -> None:
    """The same command on physics, maths and statistics (387 real papers, two days, embedded by the real model):
    every fold-category with five seeds is ranked, and every embedding method is far above chance."""
    data = oai_labeled_set(tmp_path / "oai")
    args = ["eval", "relevance", "--dataset", str(data), "--k", "5", "--draws", "1", "--eval-days", "1"]
    args += ["--folds", "rotate", "--feedback-rounds", "0", "--json", "--cache", str(tmp_path / "cache.sqlite")]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["setup"]["categories"] >= 10 and out["setup"]["history_papers"] > 150
    for method in ("embedding_centroid", "embedding_logreg", "paperwire"):
        assert out[method]["ndcg@10"] > out["random"]["ndcg@10"] + 0.3, (method, out)


def test_eval_relevance_refuses_numbers_that_make_no_protocol(tmp_path: Path) -> None:
    for option, value in (("--k", "0"), ("--draws", "0"), ("--eval-days", "-1"), ("--feedback-rounds", "-1")):
        result = CliRunner().invoke(
            make_app(), ["eval", "relevance", "--dataset", str(DATASET), option, value, "--cache", str(tmp_path / "c")]
        )
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, option


def test_eval_relevance_caches_where_the_classifier_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --cache the eval shares the classifier's embedding cache, under PAPERWIRE_DATA_DIR (it used
    ./data/cache whatever the data directory)."""
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    (tmp_path / "cache" / "embeddings.sqlite").mkdir(parents=True)  # a folder: refused before any embedding
    result = CliRunner().invoke(make_app(), ["eval", "relevance", "--dataset", str(DATASET)])
    assert result.exit_code == 2
    assert f"--cache: {tmp_path / 'cache' / 'embeddings.sqlite'} is a folder" in result.output
