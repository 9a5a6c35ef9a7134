"""Webhook sends as DNS and TLS see them: a resolver failure is retried, and every host name gets a TLS
connection verified for that name even when names share one address (a CDN, a shared host)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from services.notifier.jobs import DeliveryJob, alert_jobs
from services.notifier.senders import HostClients, PinnedPoster, WebhookSender
from services.notifier.settings import NotifierSettings
from shared.paper import Paper
from shared.subscription import Channels, Subscription
from tests.unit.notifier.notifier_papers import endpoint, items, subscription


def webhook_job(url: str) -> tuple[DeliveryJob, Subscription]:
    sub = subscription(channels=Channels(webhooks=[endpoint(url)]))
    (job,) = alert_jobs(sub, items([Paper(id="2401.00001", title="T", abstract="A")])[0])
    return job, sub


@pytest.fixture
async def resolve_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | BaseException], None]:
    """Make every host name resolve as ``answer`` says (an address, or an exception to raise)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    def install(answer: str | BaseException) -> None:
        async def fake(host, port, *args, **kwargs):
            if isinstance(answer, BaseException):
                raise answer
            return await real(answer, port, *args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", fake)

    return install


async def test_dns_failure_is_retried_and_only_unsafe_addresses_are_refused(resolve_to) -> None:
    settings = NotifierSettings()
    job, sub = webhook_job("https://hooks.example.com/x")
    async with httpx.AsyncClient(trust_env=False) as client:
        sender = WebhookSender(settings, PinnedPoster(settings, client))
        resolve_to(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
        outcome = await sender.send(job, sub)
        assert outcome.kind == "retry" and outcome.throttle
        assert "Temporary failure in name resolution" in (outcome.error or "")
        resolve_to("10.1.2.3")
        refused = await sender.send(job, sub)
        assert refused.kind == "refused" and "not a public address" in (refused.error or "")


@pytest.fixture(scope="module")
def a_test_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate valid for ``a.test`` only."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "a.crt", folder / "a.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=a.test"]
        + ["-addext", "subjectAltName=DNS:a.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_server(a_test_cert: tuple[Path, Path]) -> AsyncIterator[tuple[int, list[tuple[str, str]]]]:
    """HTTPS on 127.0.0.1 with the ``a.test`` certificate, keep-alive; records (Host, TLS SNI) per request."""
    seen: list[tuple[str, str]] = []
    names: dict[int, str] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sni = names.get(id(writer.get_extra_info("ssl_object")), "")
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
                fields = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
                await reader.readexactly(int(fields.get("content-length", "0")))
                seen.append((fields["host"], sni))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*a_test_cert)
    context.sni_callback = lambda tls, name, _: names.__setitem__(id(tls), str(name))  # type: ignore[assignment]
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def test_each_host_name_gets_its_own_verified_tls_connection(
    resolve_to, tls_server, a_test_cert: tuple[Path, Path]
) -> None:
    port, seen = tls_server
    resolve_to("127.0.0.1")  # a.test and b.test share one address; only a.test's certificate is served there
    settings = NotifierSettings(webhook_allowed_networks=["127.0.0.1/32"], webhook_timeout_s=10.0)
    trust_a = ssl.create_default_context(cafile=str(a_test_cert[0]))
    async with httpx.AsyncClient(verify=trust_a, trust_env=False) as client:
        poster = PinnedPoster(settings, client, verify=trust_a)
        sender = WebhookSender(settings, poster)
        outcomes = {}
        for host in ("a.test", "b.test", "a.test"):
            job, sub = webhook_job(f"https://{host}:{port}/hook")
            outcome = await sender.send(job, sub)
            outcomes.setdefault(host, []).append((outcome.kind, outcome.error or ""))
        await poster.aclose()
    assert [kind for kind, _ in outcomes["a.test"]] == ["delivered", "delivered"]
    ((kind, error),) = outcomes["b.test"]
    assert kind == "retry" and "certificate" in error.lower()
    assert seen == [(f"a.test:{port}", "a.test")] * 2  # nothing reached the server as b.test


async def test_host_clients_close_the_least_recently_used_when_idle() -> None:
    made: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient())
        return made[-1]

    clients = HostClients(2, make)
    async with clients.use("a:443") as first:
        async with clients.use("b:443"), clients.use("c:443"):
            assert len(clients) == 2 and not first.is_closed  # still sending: closed by its last user
        assert not first.is_closed
    assert first.is_closed
    async with clients.use("b:443") as again:
        assert again is made[1]
    await clients.aclose()
    assert all(c.is_closed for c in made)
