"""Operators' commands act on the pipeline they run beside: REDIS_URL, else the embedded Redis of the data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_sync
from typer.testing import CliRunner

from paperwire.cli import app
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
