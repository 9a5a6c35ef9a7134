"""A small local HTTP receiver (uvicorn): the webhook and Slack peer of the notifier's tests.

It records every request and answers with what ``respond`` says, so it can play a healthy endpoint, one that
fails a few times, one that is gone (410), one that hangs, or Slack returning 429.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


Reply = tuple[int, dict[str, str], bytes]
Responder = Callable[["Received", int], Awaitable[Reply] | Reply]


def always(status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None) -> Responder:
    def respond(request: Received, index: int) -> Reply:
        return status, headers or {}, body

    return respond


@dataclass
class Receiver:
    respond: Responder = field(default_factory=always)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self, path: str | None = None, status: int | None = None) -> list[Received]:
        return [r for r in self.requests if (path is None or r.path == path) and (status is None or r.status == status)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(scope["path"], headers, b"".join(chunks), 0, asyncio.get_running_loop().time())
        index = len([r for r in self.requests if r.path == request.path])
        reply = self.respond(request, index)
        status, extra, body = await reply if asyncio.iscoroutine(reply) else reply  # type: ignore[misc]
        request.status = status
        self.requests.append(request)
        out = [(b"content-type", b"text/plain")] + [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Run the receiver on 127.0.0.1 on a free port for the duration of the block."""
    config = uvicorn.Config(
        receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    receiver.port = server.servers[0].sockets[0].getsockname()[1]
    receiver._server = server
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
