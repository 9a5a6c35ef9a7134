"""Api wiring: FastAPI app, its Redis and FastStream broker (publisher, plus the `deliveries` history consumer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from faststream.redis import RedisRouter
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.api import routes, web
from services.api.access_log import install_access_log_redaction
from services.api.asyncapi import asyncapi_document
from services.api.deps import ApiContext
from services.api.forms import error_messages
from services.api.limits import BodySizeLimit
from services.api.metrics import gather, render
from services.api.seeds import SeedUploadError
from services.api.settings import ApiSettings
from services.api.store import DeliveryHistory, InvalidOwner
from services.api.subscriptions import Conflict, NotFound, WebhooksNotAccepted
from shared.consumer import ensure_groups, make_router, subscriber
from shared.events import DeliveryResult, Event, Stream
from shared.logs import configure_logging
from shared.retention import trim_forever
from shared.runtime import DEFAULT_REDIS_URL, make_broker
from shared.tasks import cancel_and_wait

SERVICE = "api"


def consumed_streams(settings: ApiSettings) -> list[str]:
    """The streams this api reads as a consumer group, which it must also trim (retention)."""
    return [str(Stream.DELIVERIES)] if settings.consume_deliveries else []


def build_router(settings: ApiSettings) -> RedisRouter:
    """The api's one consumer: it keeps each subscription's recent delivery results for the page and the API."""
    router = make_router(SERVICE, settings)
    history = DeliveryHistory(aioredis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL))

    @subscriber(router, Stream.DELIVERIES, service=SERVICE, settings=settings)
    async def on_delivery(event: DeliveryResult) -> None:
        await history.record(event.subscription_id, event.model_dump_json())

    return router


class Health(BaseModel):
    status: str


def _errors(exc: RequestValidationError | ValidationError) -> list[str]:
    if isinstance(exc, ValidationError):
        return error_messages(exc)
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


def create_api(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    redis_url = settings.redis_url or DEFAULT_REDIS_URL

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = aioredis.Redis.from_url(redis_url)
        await ensure_groups(redis)
        broker = make_broker(redis_url)
        if settings.consume_deliveries:
            broker.include_router(build_router(settings))
        await broker.start()

        async def publish(stream: Stream, event: Event) -> Any:
            return await broker.publish(event, stream=str(stream))

        app.state.ctx = ApiContext(settings=settings, redis=redis, publish=publish)
        streams = consumed_streams(settings)
        trimmer = asyncio.create_task(trim_forever(redis_url, streams, settings.retention_hours)) if streams else None
        try:
            yield
        finally:
            if trimmer is not None:
                await cancel_and_wait(trimmer)
            await broker.stop()
            await redis.aclose()

    app = FastAPI(
        title="paperwire",
        version="1",
        description="Subscriptions, webhook endpoints, feedback links and personal feeds of paperwire.",
        lifespan=lifespan,
    )
    uploads = {routes.SEEDS_IMPORT_PATH: settings.seeds_max_bytes, web.SEEDS_UPLOAD_PATH: settings.seeds_max_bytes}
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, per_path=uploads)
    app.include_router(routes.router)
    app.include_router(web.router)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: Any) -> JSONResponse:
        messages = _errors(exc)
        return JSONResponse({"detail": "; ".join(messages), "errors": messages}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; a path served by several routes has more.
            methods: set[str] = set()
            for route in request.app.routes:
                if route.matches(request.scope)[0] != Match.NONE:
                    methods |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(WebhooksNotAccepted)
    @app.exception_handler(InvalidOwner)
    @app.exception_handler(SeedUploadError)
    async def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
    async def readyz(request: Request) -> Any:
        try:
            await request.app.state.ctx.redis.ping()
        except Exception:
            return JSONResponse({"status": "redis unreachable"}, status_code=503)
        return Health(status="ready")

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format (OpenMetrics when the Accept header asks for it)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            503: {"description": "Redis unreachable", "content": {"text/plain": {"schema": {"type": "string"}}}},
        },
    )
    async def metrics(request: Request) -> Response:
        """Streams, consumer groups, dead letters and the fetcher's counters, read from Redis at each scrape."""
        try:
            snapshot = await gather(request.app.state.ctx.redis)
        except (RedisError, OSError):
            return PlainTextResponse("redis unreachable\n", status_code=503)
        body, content_type = render(snapshot, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/asyncapi.json", tags=["ops"])
    async def asyncapi_json() -> dict[str, Any]:
        return asyncapi_document(redis_url)

    @app.get("/asyncapi.yaml", tags=["ops"], response_class=PlainTextResponse)
    async def asyncapi_yaml() -> str:
        import yaml

        return yaml.safe_dump(asyncapi_document(redis_url), sort_keys=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _local_times(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    configure_logging(settings.log_level)
    install_access_log_redaction()
    return app


def _local_times(schema: dict[str, Any]) -> None:
    """``Schedule.at`` is a wall-clock time in ``Schedule.timezone``: JSON Schema's ``format: time`` demands an
    offset (RFC 3339), which the fuzzer showed our answers never carry. Describe it as what it is."""
    at = schema.get("components", {}).get("schemas", {}).get("Schedule", {}).get("properties", {}).get("at")
    if at and at.get("format") == "time":
        at.pop("format")
        at["pattern"] = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
        at["description"] = "local time HH:MM[:SS] in the schedule's time zone"


app = create_api()
