"""What every route needs: the shared context and the owner behind a bearer token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.api.settings import ApiSettings
from services.api.store import AuthLimiter, TokenStore
from services.api.subscriptions import Publish, SubscriptionOps


@dataclass
class ApiContext:
    settings: ApiSettings
    redis: aioredis.Redis
    publish: Publish

    @property
    def ops(self) -> SubscriptionOps:
        return SubscriptionOps(self.redis, self.publish)


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


class ApiError(BaseModel):
    """Every 4xx: ``detail`` names the field or the reason; ``errors`` lists each validation problem."""

    detail: str
    errors: list[str] | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ApiError} for code in codes}


_bearer = HTTPBearer(auto_error=False, description="an API token made with `paperwire tokens create`")


def client_key(request: Request) -> str:
    """The peer address; behind a proxy it is the proxy's unless uvicorn runs with ``--proxy-headers``."""
    return request.client.host if request.client else "unknown"


async def current_owner(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ctx: ApiContext = Depends(context),
) -> str:
    """The owner of the bearer token. The token is checked first, so a valid one always passes: only failures
    are counted, and a client's failures past the limit are answered 429 (others behind the same address are not
    locked out)."""
    owner = await TokenStore(ctx.redis).verify(credentials.credentials) if credentials else None
    if owner is not None:
        return owner
    if credentials:
        limiter = AuthLimiter(ctx.redis, ctx.settings.auth_fail_limit, ctx.settings.auth_fail_window_s)
        wait = await limiter.failed(client_key(request))
        if wait is not None:
            raise HTTPException(
                429, "too many failed token checks: try again later", headers={"Retry-After": str(wait)}
            )
    raise HTTPException(
        401,
        "authorization: a valid bearer token is required" if credentials else "authorization: header missing",
        headers={"WWW-Authenticate": "Bearer"},
    )
