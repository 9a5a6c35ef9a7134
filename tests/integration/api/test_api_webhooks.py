"""Webhook endpoints against a real HTTP receiver on localhost, verified with the standardwebhooks library."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from standardwebhooks import Webhook

from services.api import webhooks
from shared.consumer import dead_letter
from shared.events import DeliveryResult, MatchFound, entry_body
from shared.paper import Paper
from shared.storage import DeliveryLog, SubscriptionStore
from shared.subscription import Channels, Subscription, WebhookEndpoint
from tests.integration.api.api_helpers import SPEC, fixture_papers, owner_token


class Receiver:
    def __init__(self, status: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(204)
    yield r
    r.server.shutdown()


async def test_register_test_event_attempts_and_reenable(
    api: httpx.AsyncClient, redis: aioredis.Redis, receiver: Receiver
) -> None:
    alice = await owner_token(redis, "alice")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    created = await api.post(f"/v1/subscriptions/{sid}/webhooks", json={"url": receiver.url}, headers=alice)
    assert created.status_code == 201, created.text
    secret, endpoint = created.json()["secret"], created.json()["endpoint"]
    assert secret.startswith("whsec_")
    # shown once: nowhere else
    for path in (f"/v1/subscriptions/{sid}", f"/v1/subscriptions/{sid}/webhooks", "/v1/subscriptions"):
        assert secret not in (await api.get(path, headers=alice)).text

    # the api's own SSRF guard: loopback is refused unless allow-listed (this app's list is empty)
    blocked = (await api.post(f"/v1/subscriptions/{sid}/webhooks/{endpoint['id']}/test", headers=alice)).json()
    assert blocked["ok"] is False and "not a public address" in blocked["error"] and receiver.requests == []

    api._transport.app.state.ctx.settings.webhook_allowed_networks.append("127.0.0.1/32")  # type: ignore[attr-defined]
    sent = (await api.post(f"/v1/subscriptions/{sid}/webhooks/{endpoint['id']}/test", headers=alice)).json()
    assert sent["ok"] is True and sent["status_code"] == 204
    [(headers, body)] = receiver.requests
    payload = Webhook(secret).verify(body, headers)  # raises when the signature is wrong
    assert payload["type"] == "paperwire.test" and payload["data"]["subscription_id"] == sid
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Webhook("whsec_" + "A" * 32).verify(body, headers)

    attempts = (await api.get(f"/v1/subscriptions/{sid}/webhooks/{endpoint['id']}/attempts", headers=alice)).json()
    assert [a["status_code"] for a in attempts] == [204, None]

    ops = api._transport.app.state.ctx.ops  # type: ignore[attr-defined]
    # what the notifier writes when an endpoint answers 410 after failures (worker._disable_endpoint)
    await ops.update_webhook("alice", sid, endpoint["id"], enabled=False, disabled_reason="410 Gone")
    await DeliveryLog(redis).set_state(
        endpoint["id"], state="disabled", disabled_reason="410 Gone", consecutive_failures="7"
    )
    listed = (await api.get(f"/v1/subscriptions/{sid}/webhooks", headers=alice)).json()
    assert listed[0]["endpoint"]["enabled"] is False and listed[0]["endpoint"]["disabled_reason"] == "410 Gone"
    assert listed[0]["state"] == {
        "state": "disabled",
        "consecutive_failures": 7,
        "last_status": None,
        "last_error": None,
        "last_attempt_at": None,
        "disabled_reason": "410 Gone",
        "disabled_at": None,
    }
    enabled = await api.post(f"/v1/subscriptions/{sid}/webhooks/{endpoint['id']}/enable", headers=alice)
    assert enabled.json()["enabled"] is True
    state = (await api.get(f"/v1/subscriptions/{sid}/webhooks", headers=alice)).json()[0]["state"]
    assert (state["state"], state["disabled_reason"], state["consecutive_failures"]) == ("active", None, 0)
    stored = await ops.get("alice", sid)
    assert stored.channels.webhooks[0].enabled is True and stored.channels.webhooks[0].secret == secret

    assert (await api.delete(f"/v1/subscriptions/{sid}/webhooks/{endpoint['id']}", headers=alice)).status_code == 204
    assert (await api.get(f"/v1/subscriptions/{sid}/webhooks", headers=alice)).json() == []
    bad = await api.post(f"/v1/subscriptions/{sid}/webhooks", json={"url": "ftp://example.org/x"}, headers=alice)
    assert bad.status_code == 422 and "url" in bad.json()["detail"]


async def _dead_match(redis: aioredis.Redis, url: str, sid: str, paper: Paper) -> None:
    """A `matches` entry the notifier gave up on, dead-lettered by the shared plumbing."""
    async with RedisBroker(url) as broker:
        await broker.publish(MatchFound(subscription_id=sid, owner="x", paper=paper, score=0.5), stream="matches")
    [(entry_id, fields)] = await redis.xrevrange("matches", count=1)
    await dead_letter(redis, "matches", "notifier", entry_id.decode(), fields, "SMTP 451", 5)


async def test_replay_dead_deliveries_only_for_the_owner(
    api: httpx.AsyncClient, redis: aioredis.Redis, clean_redis: str, fixtures_dir
) -> None:
    alice = await owner_token(redis, "alice")
    bob = await owner_token(redis, "bob")
    mine = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    theirs = (await api.post("/v1/subscriptions", json=SPEC, headers=bob)).json()["id"]
    paper = fixture_papers(fixtures_dir)[0]
    await _dead_match(redis, clean_redis, mine, paper)
    await _dead_match(redis, clean_redis, theirs, paper)
    assert await redis.xlen("matches") == 2 and await redis.xlen("matches.dead") == 2

    replayed = (await api.post(f"/v1/subscriptions/{mine}/deliveries/replay", headers=alice)).json()
    assert len(replayed["replayed"]) == 1
    assert await redis.xlen("matches.dead") == 1  # bob's stays dead
    [(_id, fields)] = await redis.xrevrange("matches", count=1)
    assert not any(k.startswith(b"dead.") for k in fields)
    assert entry_body(fields)["subscription_id"] == mine
    again = (await api.post(f"/v1/subscriptions/{mine}/deliveries/replay", headers=alice)).json()
    assert again["replayed"] == []


async def test_replay_hands_dead_deliveries_to_the_notifier(
    api: httpx.AsyncClient, redis: aioredis.Redis, clean_redis: str
) -> None:
    alice = await owner_token(redis, "alice")
    bob = await owner_token(redis, "bob")
    mine = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    theirs = (await api.post("/v1/subscriptions", json=SPEC, headers=bob)).json()["id"]
    async with RedisBroker(clean_redis) as broker:
        for sid, delivery_id in ((mine, "msg_mine"), (theirs, "msg_theirs")):
            dead = DeliveryResult(
                event_id=delivery_id,
                subscription_id=sid,
                paper_ids=["2605.05242"],
                channel="webhook",
                target="endpoint",
                status="dead",
                attempts=6,
                status_code=503,
            )
            await broker.publish(dead, stream="deliveries.failed")
    replayed = (await api.post(f"/v1/subscriptions/{mine}/deliveries/replay", headers=alice)).json()
    assert replayed["replayed"] == ["msg_mine"]
    [(_id, fields)] = await redis.xrange("deliveries.replay")
    request = entry_body(fields)
    assert request["subscription_id"] == mine and request["delivery_ids"] == ["msg_mine"]


async def test_same_url_in_two_subscriptions_are_two_endpoints(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """Endpoint ids key the delivery log and state: two owners of one URL must never share them."""
    alice = await owner_token(redis, "alice")
    bob = await owner_token(redis, "bob")
    url = "https://hooks.example.org/in"
    mine = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    ea = (await api.post(f"/v1/subscriptions/{mine}/webhooks", json={"url": url}, headers=alice)).json()["endpoint"]
    log = DeliveryLog(redis)
    await log.record_attempt(ea["id"], {"delivery_id": "d1", "subscription_id": mine, "status_code": 200})
    await log.set_state(ea["id"], state="disabled", disabled_reason="410")

    theirs = (await api.post("/v1/subscriptions", json=SPEC, headers=bob)).json()["id"]
    eb = (await api.post(f"/v1/subscriptions/{theirs}/webhooks", json={"url": url}, headers=bob)).json()["endpoint"]
    assert eb["id"] != ea["id"]
    assert (await api.get(f"/v1/subscriptions/{theirs}/webhooks/{eb['id']}/attempts", headers=bob)).json() == []
    assert (await api.get(f"/v1/subscriptions/{theirs}/webhooks/{ea['id']}/attempts", headers=bob)).status_code == 404
    assert (await api.post(f"/v1/subscriptions/{theirs}/webhooks/{eb['id']}/enable", headers=bob)).status_code == 200
    assert await log.state(ea["id"]) == {"state": "disabled", "disabled_reason": "410"}

    again = await api.post(f"/v1/subscriptions/{mine}/webhooks", json={"url": url}, headers=alice)
    assert again.status_code == 409 and url in again.json()["detail"]
    stored = (await api.get(f"/v1/subscriptions/{mine}", headers=alice)).json()["webhooks"]
    assert [w["id"] for w in stored] == [ea["id"]]  # kept as stored, not re-derived on reading
    await api.patch(f"/v1/subscriptions/{mine}", json={"name": "renamed"}, headers=alice)
    assert [w["id"] for w in (await api.get(f"/v1/subscriptions/{mine}", headers=alice)).json()["webhooks"]] == [
        ea["id"]
    ]


async def test_test_event_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers a public address for the check, then loopback; the request must go to the
    checked address (host name in Host and SNI), never to a second resolution."""
    answers = iter(["93.184.216.34"])

    async def rebinding_dns(self: object, host: str, port: object, *args: object, **kwargs: object) -> list:
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 443))]

    sent: list[httpx.Request] = []

    async def capture(self: httpx.AsyncClient, request: httpx.Request, **kwargs: object) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204, request=request)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", rebinding_dns)
    monkeypatch.setattr(httpx.AsyncClient, "send", capture)
    attempt = await webhooks.send_signed(
        "https://rebind.example/hook",
        "whsec_" + "A" * 32,
        webhooks.test_payload("s", "e"),
        timeout_s=1,
        allowed_networks=[],
    )
    assert attempt["ok"] is True
    [request] = sent
    assert request.url.host == "93.184.216.34"
    assert request.headers["host"] == "rebind.example"
    assert request.extensions["sni_hostname"] == "rebind.example"


async def test_test_event_to_a_name_that_does_not_resolve_says_so() -> None:
    """Reported as a connection failure, not as "BlockedAddress": nothing about the address was unsafe."""
    attempt = await webhooks.send_signed(
        "https://no-such-host.invalid/hook",  # RFC 2606: never resolves
        "whsec_" + "A" * 32,
        webhooks.test_payload("s", "e"),
        timeout_s=1,
        allowed_networks=[],
    )
    assert attempt["ok"] is False and attempt["error"].startswith("ConnectError: DNS: cannot resolve")


@pytest.mark.parametrize("proxy", [None, "http://127.0.0.1:9"], ids=["no proxy", "proxy in the environment"])
async def test_test_event_signs_with_an_unpadded_secret(
    api: httpx.AsyncClient, redis: aioredis.Redis, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    """A subscriptions file may give a secret without base64 padding (the model and the notifier take it): the
    api's test event must sign with it too, not answer 500. A proxy named in the environment is not used: it
    would resolve the name again, past the address that was checked."""
    if proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy)
    alice = await owner_token(redis, "alice")
    secret = ("whsec_" + base64.b64encode(bytes(range(22))).decode()).rstrip("=")
    endpoint = WebhookEndpoint(id="ep1", url=receiver.url, secret=secret)
    await SubscriptionStore(redis).put(
        Subscription(id="s1", owner="alice", name="n", interests=["x"], channels=Channels(webhooks=[endpoint]))
    )
    api._transport.app.state.ctx.settings.webhook_allowed_networks.append("127.0.0.1/32")  # type: ignore[attr-defined]
    sent = await api.post("/v1/subscriptions/s1/webhooks/ep1/test", headers=alice)
    assert sent.status_code == 200 and sent.json()["status_code"] == 204, sent.text
    [(headers, body)] = receiver.requests
    assert Webhook(secret).verify(body, headers)["type"] == "paperwire.test"


async def test_test_event_during_a_rotation_verifies_with_either_secret(
    api: httpx.AsyncClient, redis: aioredis.Redis, receiver: Receiver
) -> None:
    """Deliveries are signed with both secrets while a receiver may still hold the old one; the test event was
    signed with the new one only, so a receiver not yet updated saw the test fail and a delivery pass."""
    alice = await owner_token(redis, "alice")
    new, old = "whsec_" + base64.b64encode(b"n" * 24).decode(), "whsec_" + base64.b64encode(b"o" * 24).decode()
    endpoint = WebhookEndpoint(id="ep1", url=receiver.url, secret=new, previous_secret=old)
    await SubscriptionStore(redis).put(
        Subscription(id="s1", owner="alice", name="n", interests=["x"], channels=Channels(webhooks=[endpoint]))
    )
    api._transport.app.state.ctx.settings.webhook_allowed_networks.append("127.0.0.1/32")  # type: ignore[attr-defined]
    sent = await api.post("/v1/subscriptions/s1/webhooks/ep1/test", headers=alice)
    assert sent.status_code == 200 and sent.json()["ok"], sent.text
    [(headers, body)] = receiver.requests
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["type"] == "paperwire.test"
