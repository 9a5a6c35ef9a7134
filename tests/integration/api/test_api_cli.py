"""The api's CLI commands through typer's runner, on a real Redis."""

from __future__ import annotations

import asyncio
import json

import redis as redis_sync
import redis.asyncio as aioredis
import yaml
from typer.testing import CliRunner

from paperwire.cli import app as paperwire_cli
from services.api.store import TokenStore
from shared.subscription import Subscription


def verify(url: str, token: str) -> str | None:
    async def check() -> str | None:
        client = aioredis.Redis.from_url(url)
        try:
            return await TokenStore(client).verify(token)
        finally:
            await client.aclose()

    return asyncio.run(check())


def test_owner_token_subscription_export_cycle(clean_redis: str, tmp_path) -> None:
    """Sync on purpose: the commands run their own event loop, as they do from a shell."""
    runner = CliRunner()
    env = {"REDIS_URL": clean_redis}
    app = paperwire_cli

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), env=env, input=input)

    assert run("owners", "create", "alice").output.strip() == "created alice"
    assert run("owners", "create", "bad name!").exit_code == 2
    made = run("tokens", "create", "--owner", "alice")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert verify(clean_redis, token) == "alice"
    assert run("tokens", "create", "--owner", "nobody").exit_code == 2

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: helium\ninterests: [superfluid helium in nanopores]\ncategories: [cond-mat.stat-mech]\n")
    created = run("subscriptions", "create", str(spec), "--owner", "alice", "--id", "helium")
    assert created.exit_code == 0, created.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninterests: [a]\ncategories: [cs.NOPE]\n")
    refused = run("subscriptions", "create", str(bad), "--owner", "alice")
    assert refused.exit_code == 2 and "categories" in refused.output

    shown = json.loads(run("subscriptions", "show", "helium").stdout)
    assert shown["owner"] == "alice" and shown["spec"]["categories"] == ["cond-mat.stat-mech"]
    exported = yaml.safe_load(run("subscriptions", "export", "--owner", "alice").stdout)
    [entry] = exported["subscriptions"]
    assert Subscription.model_validate(entry).interests == ["superfluid helium in nanopores"]

    token_id = token.split("_")[1]
    assert run("tokens", "revoke", token_id).exit_code == 0
    assert verify(clean_redis, token) is None
    assert run("tokens", "revoke", token_id).exit_code == 1
    events = redis_sync.Redis.from_url(clean_redis).xlen("subscriptions")
    assert events == 1


def test_run_serves_the_api_where_api_host_and_api_port_say(clean_redis: str, monkeypatch) -> None:
    """A container sets API_HOST=0.0.0.0: without it `paperwire run` listens on 127.0.0.1, unreachable."""
    import paperwire.runner

    served: dict[str, object] = {}

    async def run_forever(app, **kwargs) -> None:  # noqa: ANN001 - records where the api would listen
        served.update(kwargs)

    monkeypatch.setattr(paperwire.runner, "pipeline_app", lambda *args: None)
    monkeypatch.setattr(paperwire.runner, "run_forever", run_forever)
    env = {"REDIS_URL": clean_redis, "API_HOST": "0.0.0.0", "API_PORT": "8123"}
    result = CliRunner().invoke(paperwire_cli, ["run", "--services", ","], env=env)
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("0.0.0.0", 8123)
    result = CliRunner().invoke(paperwire_cli, ["run", "--services", ",", "--port", "9000"], env=env)
    assert (served["host"], served["port"]) == ("0.0.0.0", 9000), "an option given wins"
