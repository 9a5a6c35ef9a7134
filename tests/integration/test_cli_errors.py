"""Operators' commands refuse predictable bad input with one ``error: ...`` line and exit 2 (usage) or 1 (runtime).

Every case here used to print a traceback, a boxed usage message, or to run anyway (a bench of 0 deliveries,
a backfill from after its end). All are refused before any work or any write starts, so they are fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paperwire.cli import app, main
from shared.cli_errors import RUNTIME, USAGE

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "tests" / "fixtures" / "labeled" / "daily_arxiv_ai_enhanced"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Bad inputs an operator can give: a folder, a non-UTF-8 file, broken YAML, a plain file where a folder goes."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00not text")
    (tmp_path / "broken.yaml").write_text("a: [1\n")
    (tmp_path / "plain.txt").write_text("a file\n")
    return tmp_path


@pytest.fixture(autouse=True)
def _redis(clean_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused command must not reach Redis; if one did, it uses the test database, never ./data."""
    monkeypatch.setenv("REDIS_URL", clean_redis)


# (arguments, with {tmp} for the files fixture; exit code; text of the error line)
CASES: list[tuple[list[str], int, str]] = [
    (["subscriptions", "load", "{tmp}/missing.yaml"], 2, "no such file: {tmp}/missing.yaml"),
    (["subscriptions", "load", "{tmp}/folder"], 2, "{tmp}/folder is a folder, not a file"),
    (["subscriptions", "load", "{tmp}/binary.yaml"], 2, "{tmp}/binary.yaml is not UTF-8 text"),
    (["subscriptions", "load", "{tmp}/broken.yaml"], 2, "{tmp}/broken.yaml: not valid YAML (line 2, column 1)"),
    (["subscriptions", "create", "{tmp}/missing.yaml", "--owner", "bob"], 2, "no such file: {tmp}/missing.yaml"),
    (["subscriptions", "create", "{tmp}/folder", "--owner", "bob"], 2, "{tmp}/folder is a folder, not a file"),
    (["subscriptions", "create", "{tmp}/binary.yaml", "--owner", "bob"], 2, "is not UTF-8 text"),
    (["subscriptions", "create", "{tmp}/broken.yaml", "--owner", "bob"], 2, "not valid YAML (line 2, column 1)"),
    (["parse", "{tmp}/missing.xml"], 2, "no such file: {tmp}/missing.xml"),
    (["parse", "--source", "bogus", "{tmp}/plain.txt"], 2, "--source must be one of arxiv-api"),
    (["seeds", "import", "{tmp}/missing.bib"], 2, "no such file: {tmp}/missing.bib"),
    (["seeds", "import", "{tmp}/folder"], 2, "{tmp}/folder is a folder, not a file"),
    (["seeds", "import", "{tmp}/binary.yaml"], 2, "{tmp}/binary.yaml is not UTF-8 text"),
    (["eval", "relevance", "--dataset", "{tmp}/missing"], 2, "--dataset: no such file or folder: {tmp}/missing"),
    (["eval", "relevance", "--dataset", "{tmp}/binary.yaml"], 2, "a file is not UTF-8 text"),
    (["eval", "relevance", "--dataset", str(DATASET), "--cache", "{tmp}/folder"], 2, "--cache: {tmp}/folder is a"),
    (["model", "export", "--model-dir", "{tmp}/missing", "--out", "{tmp}/out"], 2, "--model-dir: no such folder"),
    (["model", "export", "--model-dir", "{tmp}/empty", "--out", "{tmp}/out"], 2, "(no config.json)"),
    (["model", "export", "--out", "{tmp}/plain.txt"], 2, "--out: {tmp}/plain.txt is a file, not a folder"),
    (["model", "export", "--precision", ",", "--out", "{tmp}/out"], 2, "--precision must name at least one"),
    (["model", "pack-fp16", "--model-dir", "{tmp}/empty", "--out", "{tmp}/out"], 2, "(no model.safetensors)"),
    (["model", "pack-fp16", "--out", "{tmp}/plain.txt"], 2, "--out: {tmp}/plain.txt is a file, not a folder"),
    (["bench", "score", "--subscriptions", "0"], 2, "--subscriptions must be at least 1, got 0"),
    (["bench", "score", "--subscriptions", "-5"], 2, "--subscriptions must be at least 1, got -5"),
    (["bench", "score", "--subscriptions", "10,abc"], 2, "--subscriptions must be comma-separated whole numbers"),
    (["bench", "score", "--papers", "0"], 2, "--papers must be at least 1, got 0"),
    (["bench", "score", "--vectors", "0"], 2, "--vectors must be at least 1, got 0"),
    (["bench", "deliver", "--n", "0"], 2, "--n must be at least --endpoints (8), got 0"),
    (["bench", "deliver", "--n", "-3", "--endpoints", "1"], 2, "--n must be at least --endpoints (1), got -3"),
    (["bench", "deliver", "--endpoints", "0"], 2, "--endpoints must be at least 1, got 0"),
    (["bench", "deliver", "--n", "100000"], 2, "--n must be at most 80000"),
    (["bench", "parse", "--fixtures", "{tmp}/missing"], 2, "--fixtures: no such folder: {tmp}/missing"),
    (["bench", "parse", "--fixtures", "{tmp}/empty"], 2, "--fixtures: {tmp}/empty has no arxiv_oai/"),
    (["bench", "parse", "--seconds", "0"], 2, "--seconds must be more than 0, got 0.0"),
    (["bench", "embed", "--n", "0"], 2, "--n must be at least 1, got 0"),
    (["bench", "embed", "--n", "-1"], 2, "--n must be at least 1, got -1"),
    (["bench", "embed", "--repeats", "0"], 2, "--repeats must be at least 1, got 0"),
    (["bench", "embed", "--workers", "-2"], 2, "--workers must be at least 0, got -2"),
    (["bench", "embed", "--precision", "fp7"], 2, "--precision must be auto or one of fp32, fp16, int8, got 'fp7'"),
    (["bench", "embed", "--model-dir", "{tmp}/plain.txt"], 2, "--model-dir: {tmp}/plain.txt is a file"),
    (["backfill", "--from", "2024-01-05", "--until", "2024-01-01"], 2, "--from 2024-01-05 is after --until 2024-01-01"),
    (["backfill", "--from", "2024-01-01", "--until", "2024-01-02", "--max-pages", "0"], 2, "--max-pages must be at"),
    (["backfill", "--from", "2024-01-01", "--until", "2024-01-02", "--prefix", "oai_dc"], 2, "--prefix must be one"),
    (["demo", "--timeout", "0"], 2, "--timeout must be more than 0 seconds, got 0.0"),
    (["run", "--services", "bogus", "--no-api"], 2, "--services: unknown service 'bogus'"),
    (["run", "--services", ",", "--no-api"], 2, "nothing to run"),
    (["run", "--port", "70000"], 2, "--port must be between 1 and 65535, got 70000"),
    (["deliveries", "replay"], 2, "give --id ID (repeatable) or --all"),
    (["deliveries", "replay", "--id", "nope"], 1, "1 of the given ids are not dead deliveries: nope"),
]


@pytest.mark.parametrize(("args", "code", "text"), CASES, ids=[" ".join(a) for a, _, _ in CASES])
def test_bad_input_is_one_error_line(files: Path, args: list[str], code: int, text: str) -> None:
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(files)) for a in args])
    expected = text.replace("{tmp}", str(files))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()  # one line, nothing else on stderr
    assert line.startswith("error: ") and expected in line, line


def test_bench_score_runs_on_a_day_smaller_than_its_single_paper_calls() -> None:
    """A day of 5 papers is possible (it used to crash timing 20 single-paper calls)."""
    result = CliRunner().invoke(app, ["bench", "score", "--subscriptions", "3", "--papers", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert '"papers": 5' in result.stdout


def test_eval_dataset_that_cannot_be_read_stays_one_line(files: Path) -> None:
    """Already one line before: an empty folder and a malformed JSON line (kept so they stay that way)."""
    (files / "bad.jsonl").write_text('{"id": "1", "date": "2024-01-01", "title": "t"}\n{broken\n')
    for dataset, text in ((files / "empty", "no .jsonl files in"), (files / "bad.jsonl", "bad.jsonl:2: ")):
        result = CliRunner().invoke(app, ["eval", "relevance", "--dataset", str(dataset)])
        assert result.exit_code == 2 and text in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["subscriptions", "load", "missing.yaml"], "error: no such file: missing.yaml\n"),
        (["bench", "score", "--subscriptions", "abc"], "error: --subscriptions must be comma-separated whole numbers"),
    ],
)
def test_the_installed_command_prints_no_traceback(tmp_path: Path, args: list[str], line: str) -> None:
    """The console script as operators run it: stderr is the error line alone."""
    env = {**os.environ, "REDIS_URL": os.environ.get("PAPERWIRE_TEST_REDIS_URL", "redis://127.0.0.1:1/0")}
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "paperwire"), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr


def test_python_dash_m_runs_the_commands_and_an_empty_dead_list_says_so(tmp_path: Path, clean_redis: str) -> None:
    """``python -m paperwire`` is the fallback without the console script; an empty listing is not silence."""
    env = {**os.environ, "REDIS_URL": clean_redis}
    done = subprocess.run(
        [sys.executable, "-m", "paperwire", "dead", "list", "papers.raw"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "no dead letters on papers.raw.dead\n"


@pytest.mark.parametrize(
    ("url", "code", "text"),
    [
        ("127.0.0.1:6379", USAGE, "REDIS_URL '127.0.0.1:6379' is not a Redis URL (Redis URL must specify one of"),
        ("redis://127.0.0.1:notaport/1", USAGE, "REDIS_URL 'redis://127.0.0.1:notaport/1' is not a Redis URL (Port"),
        ("redis://127.0.0.1:6379/abc", USAGE, "REDIS_URL 'redis://127.0.0.1:6379/abc': the database after the last"),
        ("{server}/99999", RUNTIME, "REDIS_URL names a database the Redis server does not have"),
    ],
    ids=["no scheme", "port", "database name", "database out of range"],
)
def test_a_wrong_redis_url_is_one_line_naming_it(
    clean_redis: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    code: int,
    text: str,
) -> None:
    """Common operator mistakes in REDIS_URL: one line naming it (``/abc`` was read as database 0 in silence)."""
    monkeypatch.setenv("REDIS_URL", url.replace("{server}", clean_redis.rsplit("/", 1)[0]))
    monkeypatch.setattr("sys.argv", ["paperwire", "subscriptions", "list"])
    assert main() == code
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {text}"), line


@pytest.mark.parametrize(
    ("variable", "value", "text"),
    [
        ("API_PORT", "70000", "API_PORT: Input should be less than or equal to 65535, got '70000'"),
        (
            "PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS",
            "127.0.0.1/32",
            "PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS is not JSON (Extra data: line 1 column 6 (char 5)): '127.0.0.1/32'",
        ),
        (
            "PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS",
            '["hooks.internal"]',
            "API_WEBHOOK_ALLOWED_NETWORKS: 'hooks.internal' is not a network: give addresses in CIDR form",
        ),
        (  # pydantic-settings cannot decode it at all: its error names the field, ours the variable
            "API_WEBHOOK_ALLOWED_NETWORKS",
            "10.0.0.0/8",
            "API_WEBHOOK_ALLOWED_NETWORKS: not valid JSON (Extra data: line 1 column 5 (char 4)); lists are given "
            """as JSON, e.g. API_WEBHOOK_ALLOWED_NETWORKS='["first", "second"]'""",
        ),
    ],
    ids=["port", "networks not JSON", "networks not CIDRs", "a service's list not JSON"],
)
def test_a_bad_api_setting_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, text: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr("sys.argv", ["paperwire", "run", "--services", ","])
    assert main() == USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {text}"), line


def test_help_reads_no_settings_and_writes_nothing(tmp_path: Path) -> None:
    """``--help`` in an empty folder: it created ./data/link_secret (and refused a bad setting before helping)."""
    env = {**os.environ, "REDIS_URL": "not a url"}
    env.pop("PAPERWIRE_DATA_DIR", None)
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "paperwire"), "model", "export", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "--model-dir" in done.stdout
    assert list(tmp_path.iterdir()) == []
