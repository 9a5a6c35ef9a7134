"""The ``paperwire`` command: run the pipeline, the demo, subscriptions, and each service's own commands."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import redis.asyncio as aioredis
import typer

from shared.cli_errors import RUNTIME, USAGE, fail
from shared.logs import configure_logging
from shared.redis_server import command_redis
from shared.settings import ServiceSettings

app = typer.Typer(help="paperwire: paper alerts from arXiv and Hugging Face.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions as configuration (YAML) and their listing.", no_args_is_help=True)
app.add_typer(subscriptions_app, name="subscriptions")

SERVICES_WITH_COMMANDS = ("fetcher", "parser", "embedder", "classifier", "notifier", "api")


@app.callback()
def _setup() -> None:
    """Logs go to stderr, so a command's output (a token, JSON lines) can be captured from stdout."""
    # the variable itself, not ServiceSettings(): that would validate every setting (and create the link secret)
    # before `--help` could print
    configure_logging(os.environ.get("PAPERWIRE_LOG_LEVEL", "INFO"))


GROUP_HELP = {
    "fetch": "The fetcher's shared per-source schedule and arXiv's announcement calendar.",
    "bench": "Benchmarks: parse, embed, score and deliver throughput (numbers, never asserted in tests).",
    "model": "Export the embedding model to ONNX (fp32, fp16, int8) with its manifest.",
    "eval": "Relevance against the baselines on labeled papers, seeds only and with feedback rounds.",
    "seeds": "Seed papers from a BibTeX or CSL-JSON export (Zotero) of a library.",
    "deliveries": "Notifications whose retries ran out: list them and queue them again.",
    "owners": "Owners of subscriptions (the api's accounts).",
    "tokens": "API tokens of an owner: create, list, revoke.",
}


def _mount_service_commands() -> None:
    """Each service lists its commands in ``services/<name>/cli.py`` as (group, name, function)."""
    groups: dict[str, typer.Typer] = {"subscriptions": subscriptions_app}
    for service in SERVICES_WITH_COMMANDS:
        try:
            module = importlib.import_module(f"services.{service}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{service}.cli":
                raise
            continue
        for group, name, function in getattr(module, "COMMANDS", []):
            if not group:
                app.command(name)(function)
                continue
            if group not in groups:
                groups[group] = typer.Typer(help=GROUP_HELP.get(group), no_args_is_help=True)
                app.add_typer(groups[group], name=group)
            groups[group].command(name)(function)


@app.command()
def run(
    services: Annotated[str, typer.Option(help="comma-separated services to run")] = (
        "fetcher,parser,embedder,classifier,notifier"
    ),
    api: Annotated[bool, typer.Option(help="also serve the HTTP api")] = True,
    host: Annotated[str | None, typer.Option(help="api host (default: API_HOST, else 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="api port (default: API_PORT, else 8000)")] = None,
) -> None:
    """Run the services in one process: live sources, REDIS_URL or the embedded Redis under ./data/."""
    from paperwire.runner import PIPELINE, pipeline_app, run_forever

    names = [n.strip() for n in services.split(",") if n.strip()]
    unknown = [n for n in names if n not in PIPELINE]
    if unknown:
        raise fail(f"--services: unknown service {unknown[0]!r} (choose from {', '.join(PIPELINE)})")
    if not names and not api:
        raise fail("nothing to run: --services is empty and --no-api was given")
    if api and (host is None or port is None):
        host, port = _api_address(host, port)
    if api and not 0 < port < 65536:
        raise fail(f"--port must be between 1 and 65535, got {port}")
    settings = ServiceSettings()
    configure_logging(settings.log_level)
    with command_redis() as redis_url:
        pipeline = pipeline_app(redis_url, names, settings.log_level)
        asyncio.run(run_forever(pipeline, redis_url=redis_url, api=api, host=host, port=port))


def _api_address(host: str | None, port: int | None) -> tuple[str, int]:
    """The api's own settings (API_HOST, API_PORT) where no option is given: a container sets API_HOST=0.0.0.0."""
    from services.api.settings import ApiSettings

    settings = ApiSettings()
    return (settings.host if host is None else host), (settings.port if port is None else port)


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 170.0,
) -> None:
    """Offline demo: replays real recorded arXiv and Hugging Face responses through the whole pipeline."""
    from paperwire.demo import run_demo

    if timeout <= 0:
        raise fail(f"--timeout must be more than 0 seconds, got {timeout}")
    raise typer.Exit(asyncio.run(run_demo(timeout_s=timeout)))


@subscriptions_app.command("load")
def subscriptions_load(file: Annotated[Path, typer.Argument(help="YAML file of subscriptions")]) -> None:
    """Validate a YAML file of subscriptions, store them and announce them to running services."""
    from paperwire.subscriptions_file import SubscriptionFileError, load_subscriptions, read_subscriptions

    try:
        subscriptions = read_subscriptions(file)
    except SubscriptionFileError as exc:
        raise fail(str(exc)) from None
    with command_redis() as redis_url:
        for line in asyncio.run(load_subscriptions(redis_url, subscriptions)):
            typer.echo(line)


@subscriptions_app.command("list")
def subscriptions_list(owner: Annotated[str | None, typer.Option(help="only this owner's")] = None) -> None:
    """One line per stored subscription."""
    from paperwire.subscriptions_file import list_subscriptions

    with command_redis() as redis_url:
        for s in asyncio.run(list_subscriptions(redis_url, owner)):
            state = "active" if s.active else "paused"
            channels = [
                c
                for c, on in (
                    ("email", s.channels.email),
                    ("slack", s.channels.slack_webhook_url),
                    ("webhook", s.channels.webhooks),
                )
                if on
            ]
            typer.echo(f"{s.id}\t{s.owner}\t{state}\t{s.schedule.mode}\t{','.join(channels) or '-'}\t{s.name}")


dead_app = typer.Typer(help="Dead-lettered events: inspect and replay.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")


@app.command()
def status() -> None:
    """Every stream and consumer group: entries, pending, caught up, dead letters."""
    from shared.status import pipeline_status

    async def rows():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await pipeline_status(client)
        finally:
            await client.aclose()

    with command_redis() as redis_url:
        found = asyncio.run(rows())
        width = max([len("stream"), *(len(r.stream) for r in found)])
        typer.echo(f"{'stream':<{width}} {'group':<11} {'entries':>7} {'pending':>7} {'caught up':>9} {'dead':>5}")
        for r in found:
            typer.echo(
                f"{r.stream:<{width}} {r.group:<11} {r.length:>7} {r.pending:>7} {str(r.caught_up):>9} {r.dead:>5}"
            )


def _source_stream(stream: str) -> str:
    """A stream of the contract (its dead letters live in ``<stream>.dead``), or a clear error."""
    from shared.events import Stream

    known = [str(s) for s in Stream if not str(s).endswith(".dead")]
    if stream in known:
        return stream
    hint = f"give the source stream {stream.removesuffix('.dead')!r}" if stream.endswith(".dead") else "one of"
    raise fail(f"{stream!r} is not a stream of the pipeline ({hint}: {', '.join(known)})")


@dead_app.command("list")
def dead_list(stream: Annotated[str, typer.Argument(help="the source stream, e.g. papers.raw")]) -> None:
    """The dead letters of STREAM with their errors."""
    stream = _source_stream(stream)

    async def entries():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await client.xrange(f"{stream}.dead")
        finally:
            await client.aclose()

    with command_redis() as redis_url:
        found = asyncio.run(entries())
        if not found:
            typer.echo(f"no dead letters on {stream}.dead", err=True)
        for entry_id, fields in found:
            meta = {k.decode(): v.decode(errors="replace") for k, v in fields.items() if k.startswith(b"dead.")}
            typer.echo(
                f"{entry_id.decode()}\t{meta.get('dead.group')}\tattempts={meta.get('dead.attempts')}\t"
                f"{meta.get('dead.error')}"
            )


@dead_app.command("replay")
def dead_replay(
    stream: Annotated[str, typer.Argument(help="the source stream, e.g. papers.raw")],
    ids: Annotated[list[str] | None, typer.Option("--id", help="only these dead-letter entry ids")] = None,
) -> None:
    """Put dead letters back on their stream, e.g. after fixing the cause."""
    from shared.consumer import replay_dead

    stream = _source_stream(stream)

    async def replay():
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await replay_dead(client, stream, ids)
        finally:
            await client.aclose()

    with command_redis() as redis_url:
        replayed = len(asyncio.run(replay()))
    typer.echo(f"replayed {replayed} entries onto {stream}")
    if ids and replayed < len(set(ids)):
        raise fail(f"{len(set(ids)) - replayed} of the given ids are not dead letters of {stream}", RUNTIME)


_mount_service_commands()


def main() -> int:
    """The ``paperwire`` command; an unreachable Redis, a REDIS_URL that cannot name one, or any setting the
    environment gets wrong is one line, not a traceback."""
    import redis.exceptions
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from shared.model_files import ModelError
    from shared.settings import environment_problem, settings_problem

    try:
        app()
    except ModelError as exc:  # the model directory does not fit the settings: the message says what to do
        fail(str(exc), RUNTIME)
        return RUNTIME
    except SettingsError as exc:
        fail(environment_problem(exc), USAGE)
        return USAGE
    except ValidationError as exc:
        problem = settings_problem(exc)
        if problem is None:
            raise
        fail(problem, USAGE)
        return USAGE
    except redis.exceptions.ConnectionError as exc:
        fail(f"cannot reach Redis ({exc}); set REDIS_URL, or leave it unset to use the embedded one", RUNTIME)
        return RUNTIME
    except redis.exceptions.ResponseError as exc:
        if "DB index is out of range" not in str(exc):
            raise
        fail(
            f"REDIS_URL names a database the Redis server does not have ({exc}): the number after the last '/' "
            "must be below the server's `databases` (16 by default)",
            RUNTIME,
        )
        return RUNTIME
    return 0


if __name__ == "__main__":
    sys.exit(main())
