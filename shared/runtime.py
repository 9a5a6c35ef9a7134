"""Turning a service's router into something that runs: alone (``faststream run``) or all in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from faststream import FastStream
from faststream.redis import RedisBroker, RedisRouter

from shared.consumer import ensure_groups
from shared.events import CONSUMER_GROUPS
from shared.logs import configure_logging
from shared.retention import trim_forever
from shared.settings import ServiceSettings
from shared.tasks import cancel_and_wait

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

Task = Callable[[Any], Awaitable[None]]
_OPENED: ContextVar[list[aioredis.Redis] | None] = ContextVar("paperwire_service_clients", default=None)


_NOT_SET_BY_CLI = logging.DEBUG - 1  # a level `faststream run -l` cannot give: tells whether it gave one


def make_broker(redis_url: str, per_message_level: int = logging.DEBUG, **options: Any) -> RedisBroker:
    """Every paperwire broker: FastStream's own lines go through our JSON logging, and its per-message
    "Received" / "Processed" lines are DEBUG (thousands a day; the services log what each batch did). Errors stay
    errors."""
    return RedisBroker(
        redis_url, logger=structlog.get_logger("paperwire.faststream"), log_level=per_message_level, **options
    )


def service_redis(settings: ServiceSettings) -> aioredis.Redis:
    """The Redis client a service's router keeps for its own reads and writes (the store, claims, dead letters).

    Opened while an app builds its routers, it belongs to that app, which closes it once its broker has stopped
    (in-flight handlers done); a router built outside an app (a test) owns its client itself."""
    client = aioredis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL)
    opened = _OPENED.get()
    if opened is not None:
        opened.append(client)
    return client


@dataclass
class ServiceDef:
    """What it takes to run one service: its router factory, its settings, its background loops."""

    name: str
    build_router: Callable[[Any], RedisRouter]
    settings: ServiceSettings
    tasks: Sequence[Task] = field(default_factory=tuple)

    def with_redis(self, url: str) -> ServiceDef:
        return ServiceDef(self.name, self.build_router, self.settings.model_copy(update={"redis_url": url}), self.tasks)

    @property
    def consumed_streams(self) -> list[str]:
        return [str(s) for s, groups in CONSUMER_GROUPS.items() if self.name in groups]


REGISTRY: dict[str, ServiceDef] = {}


def create_service_app(
    service: str,
    build_router: Callable[[Any], RedisRouter],
    settings: ServiceSettings,
    tasks: Sequence[Task] = (),
) -> FastStream:
    """The app ``faststream run services.<name>.app:app`` runs; also registers the service for ``paperwire run``."""
    definition = ServiceDef(service, build_router, settings, tuple(tasks))
    REGISTRY[service] = definition
    return build_app([definition], settings.redis_url or DEFAULT_REDIS_URL)


def build_app(services: Sequence[ServiceDef], redis_url: str, log_level: str | None = None) -> FastStream:
    """One broker carrying the routers of ``services``; groups ensured and publishers ready before any subscriber
    reads, loops started after."""
    level = log_level or services[0].settings.log_level
    broker = make_broker(redis_url, per_message_level=_NOT_SET_BY_CLI)
    app = FastStream(broker, logger=structlog.get_logger("paperwire"))
    running: list[asyncio.Task[None]] = []
    clients: list[aioredis.Redis] = []

    @app.on_startup
    async def _prepare() -> None:
        """Routers are built here, not at import: a service that cannot start (say, a model that does not
        match its manifest) refuses at start with its reason, and importing its module never fails.

        The publishers are started here too: ``broker.start()`` starts every subscriber, each reading at once, before
        any publisher, and a publisher has no producer until started, so an entry waiting at start-up would be
        handled by a handler whose publish fails."""
        cli_level = broker.config.logger.log_level  # `faststream run -l X` sets it, before this hook runs
        configure_logging(logging.getLevelName(cli_level) if cli_level != _NOT_SET_BY_CLI else level)
        broker.config.logger.set_level(logging.DEBUG)  # per-message lines stay DEBUG, whatever -l says
        opening = _OPENED.set(clients)
        try:
            for definition in services:
                settings = definition.with_redis(redis_url).settings
                broker.include_router(definition.build_router(settings))
        finally:
            _OPENED.reset(opening)
        client = aioredis.Redis.from_url(redis_url)
        try:
            await ensure_groups(client)
        finally:
            await client.aclose()
        await broker.connect()
        for publisher in broker.publishers:
            await publisher.start()

    @app.after_startup
    async def _start_loops() -> None:
        for definition in services:
            settings = definition.with_redis(redis_url).settings
            for task in definition.tasks:
                running.append(asyncio.create_task(task(settings), name=f"{definition.name}:{task.__name__}"))
            if definition.consumed_streams:
                running.append(
                    asyncio.create_task(trim_forever(redis_url, definition.consumed_streams, settings.retention_hours))
                )

    @app.on_shutdown
    async def _stop_loops() -> None:
        await cancel_and_wait(*running)

    @app.after_shutdown
    async def _close_clients() -> None:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
        clients.clear()

    return app
