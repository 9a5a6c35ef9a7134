"""Operators' commands act on the pipeline they run beside: REDIS_URL, else the embedded Redis of the data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_sync
from typer.testing import CliRunner

from paperwire.cli import app, main
from services.notifier.jobs import DeliveryJob
from services.notifier.queue import DEAD
from shared.redis_server import connect_or_start


def test_deliveries_dead_reads_the_embedded_redis_of_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    url, server = connect_or_start(tmp_path / "redis")  # what `paperwire run` started
    try:
        job = DeliveryJob(id="job-dead", subscription_id="sub", channel="email", target="a@example.org")
        redis_sync.Redis.from_url(url).hset(DEAD, job.id, job.model_dump_json())
        result = CliRunner().invoke(app, ["deliveries", "dead"])
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["job-dead"]
    finally:
        if server is not None:
            server.stop()


def test_dead_letter_commands_name_a_wrong_stream_or_id(monkeypatch: pytest.MonkeyPatch, clean_redis: str) -> None:
    monkeypatch.setenv("REDIS_URL", clean_redis)
    wrong = CliRunner().invoke(app, ["dead", "list", "papers.raw.dead"])
    assert wrong.exit_code == 2 and "give the source stream 'papers.raw'" in wrong.output
    missing = CliRunner().invoke(app, ["dead", "replay", "papers.raw", "--id", "123-0"])
    assert missing.exit_code == 1 and "not dead letters of papers.raw" in missing.output


def test_an_unreachable_redis_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr("sys.argv", ["paperwire", "status"])
    assert main() == 1
    assert "error: cannot reach Redis" in capsys.readouterr().err
