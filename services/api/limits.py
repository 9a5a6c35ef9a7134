"""Request body size limit as plain ASGI middleware: refuses early on Content-Length, and counts when chunked."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

Scope = dict[str, Any]


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """``max_bytes`` everywhere except the paths matching a pattern of ``per_path`` (uploads), which get theirs."""

    def __init__(self, app: Any, max_bytes: int, per_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = [(re.compile(pattern), limit) for pattern, limit in (per_path or {}).items()]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.per_path:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def _refuse(self, send: Any, max_bytes: int) -> None:
        body = json.dumps({"detail": f"body: larger than {max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > max_bytes
                except ValueError:
                    too_large = True
                if too_large:
                    await self._refuse(send, max_bytes)
                    return
        seen = 0
        started = exceeded = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if exceeded:  # FastAPI turns the error into its own 400 ("error parsing the body"): ours goes instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, max_bytes)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, max_bytes)
