"""The api's commands, mounted by ``paperwire/cli.py``: owners, tokens, subscriptions."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError

from services.api import admin
from services.api.forms import error_messages
from services.api.store import InvalidOwner
from services.api.subscriptions import NotFound
from shared.cli_errors import fail, read_text
from shared.config_yaml import yaml_problem
from shared.redis_server import command_redis


def owners_create(owner: Annotated[str, typer.Argument(help="owner name: letters, digits, '_', '.', '-'")]) -> None:
    """Create an owner: subscriptions and tokens belong to one."""
    with command_redis() as url:
        try:
            created = asyncio.run(admin.create_owner(url, owner))
        except InvalidOwner as exc:
            raise fail(str(exc)) from None
    typer.echo(f"{'created' if created else 'exists'} {owner}")


def tokens_create(owner: Annotated[str, typer.Option(help="the token acts as this owner")]) -> None:
    """Make an API token; it is printed once and stored only hashed."""
    with command_redis() as url:
        try:
            token, info = asyncio.run(admin.create_token(url, owner))
        except InvalidOwner as exc:
            raise fail(str(exc)) from None
    typer.echo(f"token id {info.token_id} for {owner} (shown once, keep it):", err=True)
    typer.echo(token)


def tokens_revoke(token_id: Annotated[str, typer.Argument(help="the id printed by `tokens create`")]) -> None:
    """Revoke a token at once."""
    with command_redis() as url:
        if not asyncio.run(admin.revoke_token(url, token_id)):
            raise fail(f"no token {token_id!r}", 1)
    typer.echo(f"revoked {token_id}")


def tokens_list(owner: Annotated[str, typer.Option(help="whose tokens")]) -> None:
    """Token ids and creation times (the tokens themselves are not stored)."""
    with command_redis() as url:
        for info in asyncio.run(admin.list_tokens(url, owner)):
            typer.echo(f"{info.token_id}\t{info.created_at}")


def subscriptions_create(
    file: Annotated[Path, typer.Argument(help="one subscription spec, YAML or JSON; '-' reads stdin")],
    owner: Annotated[str, typer.Option(help="who owns it")],
    subscription_id: Annotated[str | None, typer.Option("--id", help="choose the id (default: generated)")] = None,
) -> None:
    """Validate a spec, store it for OWNER and announce it to running services."""
    text = sys.stdin.read() if str(file) == "-" else read_text(file)
    try:
        spec = admin.read_spec(text)
    except ValidationError as exc:
        raise fail("; ".join(error_messages(exc))) from None
    except yaml.YAMLError as exc:
        raise fail(f"{file}: {yaml_problem(exc)}") from None
    except Exception as exc:  # a spec that is not a mapping, and the like
        raise fail(f"{file}: {exc}") from None
    with command_redis() as url:
        try:
            subscription = asyncio.run(admin.create_subscription(url, owner, spec, subscription_id))
        except (LookupError, ValueError) as exc:
            raise fail(str(exc)) from None
    typer.echo(f"created {subscription.id} ({subscription.name}) for {owner}")


def subscriptions_show(subscription_id: Annotated[str, typer.Argument()]) -> None:
    """One subscription as JSON (webhook secrets hidden)."""
    with command_redis() as url:
        try:
            view = asyncio.run(admin.show_subscription(url, subscription_id))
        except NotFound as exc:
            raise fail(str(exc), 1) from None
    typer.echo(json.dumps(view, indent=2))


def subscriptions_export(
    owner: Annotated[str | None, typer.Option(help="only this owner's")] = None,
    with_secrets: Annotated[bool, typer.Option(help="include webhook endpoints and their secrets")] = False,
) -> None:
    """YAML for configuration as code (`paperwire subscriptions load` reads it back)."""
    with command_redis() as url:
        typer.echo(asyncio.run(admin.export_subscriptions(url, owner, with_secrets)), nl=False)


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("owners", "create", owners_create),
    ("tokens", "create", tokens_create),
    ("tokens", "revoke", tokens_revoke),
    ("tokens", "list", tokens_list),
    ("subscriptions", "create", subscriptions_create),
    ("subscriptions", "show", subscriptions_show),
    ("subscriptions", "export", subscriptions_export),
]
