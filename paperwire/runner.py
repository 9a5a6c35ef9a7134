"""Run every service in one process (the embedded single-machine mode): same routers as production."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence

import structlog
from faststream import FastStream

from shared.runtime import REGISTRY, ServiceDef, build_app

PIPELINE = ("fetcher", "parser", "embedder", "classifier", "notifier")

log = structlog.get_logger("paperwire.runner")


def load_services(names: Sequence[str] = PIPELINE) -> list[ServiceDef]:
    """Import ``services.<name>.app`` for each name; each registers itself through ``create_service_app``."""
    for name in names:
        importlib.import_module(f"services.{name}.app")
    # Settings are read again so the environment of this moment wins over the one at first import.
    return [
        ServiceDef(name, REGISTRY[name].build_router, type(REGISTRY[name].settings)(), REGISTRY[name].tasks)
        for name in names
    ]


def pipeline_app(redis_url: str, names: Sequence[str] = PIPELINE, log_level: str | None = None) -> FastStream:
    return build_app(load_services(names), redis_url, log_level)


def api_server(redis_url: str, host: str, port: int):
    """The api service's HTTP server for this event loop (uvicorn without its own signal handling)."""
    import uvicorn

    module = importlib.import_module("services.api.app")
    settings = module.ApiSettings().model_copy(update={"redis_url": redis_url})
    config = uvicorn.Config(module.create_api(settings), host=host, port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


async def run_forever(app: FastStream, *, redis_url: str, api: bool, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM (FastStream handles them), then stop the api server gracefully."""
    server = api_server(redis_url, host, port) if api else None
    api_task = asyncio.create_task(server.serve()) if server else None
    try:
        await app.run()
    finally:
        if server and api_task:
            server.should_exit = True
            await api_task
