"""The notifier's commands through typer, as the lead mounts them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis as redis_sync
from typer.testing import CliRunner

from paperwire.cli import app as paperwire_cli
from services.notifier.jobs import DeliveryJob, alert_jobs
from services.notifier.queue import DEAD, JOBS
from tests.unit.notifier.notifier_papers import hf_papers, items, subscription


def test_dead_deliveries_are_listed_and_replayed(
    clean_redis: str, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", clean_redis)
    redis = redis_sync.Redis.from_url(clean_redis)
    sub = subscription()
    jobs = [j for item in items(hf_papers(fixtures_dir)[:2]) for j in alert_jobs(sub, item)]
    for job in jobs:
        job.attempts, job.last_status, job.last_error = 7, 503, "HTTP 503: down"
        redis.hset(DEAD, job.id, job.model_dump_json())
    runner = CliRunner()
    listed = runner.invoke(paperwire_cli, ["deliveries", "dead"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(j.id for j in jobs) and rows[0]["last_status"] == 503
    assert runner.invoke(paperwire_cli, ["deliveries", "replay"]).exit_code != 0  # needs --id or --all
    replayed = runner.invoke(paperwire_cli, ["deliveries", "replay", "--id", jobs[0].id])
    assert replayed.exit_code == 0 and replayed.output.splitlines() == ["replayed 1 deliveries", jobs[0].id]
    assert redis.hlen(JOBS) == 1 and redis.hlen(DEAD) == 1
    queued = DeliveryJob.model_validate_json(redis.hget(JOBS, jobs[0].id))
    assert queued.attempts == 0 and queued.last_error is None  # a fresh retry budget
    assert redis.zscore(f"notifier:q:{jobs[0].target_key}", jobs[0].id) <= time.time()
    assert runner.invoke(paperwire_cli, ["deliveries", "replay", "--all"]).output.startswith("replayed 1 deliveries")
    assert redis.hlen(DEAD) == 0 and redis.hlen(JOBS) == 2
    redis.close()


def test_bench_deliver_reports_throughput_and_isolation() -> None:
    result = CliRunner().invoke(paperwire_cli, ["bench", "deliver", "--n", "40", "--endpoints", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert report["deliveries"] == 40 and report["deliveries_per_s"] > 0
    assert 0 < report["isolation_s"] < report["webhook_timeout_s"]
