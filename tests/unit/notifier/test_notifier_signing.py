"""Standard Webhooks signatures (checked with the standardwebhooks package) and the SSRF address check."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.notifier.jobs import DeliveryJob
from services.notifier.senders import WebhookSender
from services.notifier.settings import NotifierSettings
from shared.ssrf import UnsafeURL, check_address, parse_networks, resolve_safe
from shared.subscription import STORED, Subscription, WebhookEndpoint
from shared.webhook_signing import webhook_headers
from tests.unit.notifier.notifier_papers import OLD_SECRET, SECRET, subscription

BODY = b'{"type":"paper.matched","version":1}'


def test_signature_verifies_with_the_reference_library() -> None:
    now = int(datetime.now(UTC).timestamp())
    headers = webhook_headers(SECRET, None, "msg_abc", now, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {"type": "paper.matched", "version": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers)


def test_rotation_signs_with_both_secrets() -> None:
    now = int(datetime.now(UTC).timestamp())
    headers = webhook_headers(SECRET, OLD_SECRET, "msg_rot", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OLD_SECRET).verify(BODY, headers)


def test_unpadded_secrets_sign_like_the_reference_library_and_weak_ones_are_refused() -> None:
    """The model, the notifier and the api's test event share one reading of ``whsec_`` secrets: base64 with or
    without padding, at least 16 bytes; anything else is refused when the endpoint is configured, not at send."""
    padded = "whsec_" + base64.b64encode(bytes(range(22))).decode()
    unpadded = padded.rstrip("=")
    assert padded.endswith("==") and WebhookEndpoint(url="https://example.org/h", secret=unpadded)
    now = int(datetime.now(UTC).timestamp())
    headers = webhook_headers(unpadded, None, "msg_unpadded", now, BODY)
    Webhook(unpadded).verify(BODY, headers)
    Webhook(padded).verify(BODY, headers)
    for weak in ("whsec_" + "A" * 17, "whsec_" + "A" * 20, "whsec_" + "A" * 19 + "=", "whsec_" + "A" * 21 + "!"):
        with pytest.raises(ValidationError, match="secret"):
            WebhookEndpoint(url="https://example.org/h", secret=SECRET, previous_secret=weak)
        with pytest.raises(ValidationError, match="secret"):
            WebhookEndpoint(url="https://example.org/h", secret=weak)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254 (cloud metadata)
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "fec0::1",  # site-local
        "224.0.0.1",
        "240.0.0.1",
    ],
)
def test_special_addresses_are_refused(address: str) -> None:
    with pytest.raises(UnsafeURL):
        check_address(ipaddress.ip_address(address), [])


def test_public_and_allow_listed_addresses_pass() -> None:
    check_address(ipaddress.ip_address("93.184.215.14"), [])
    check_address(ipaddress.ip_address("2606:4700::6810:84e5"), [])
    check_address(ipaddress.ip_address("2002:5db8:d70e::1"), [])  # 6to4 of a public address
    check_address(ipaddress.ip_address("127.0.0.1"), parse_networks(["127.0.0.1/32"]))
    with pytest.raises(UnsafeURL):
        check_address(ipaddress.ip_address("127.0.0.2"), parse_networks(["127.0.0.1/32"]))


async def test_resolution_happens_before_the_check() -> None:
    # "localhost" is a name: it must be resolved and refused as loopback, not passed because it is not an IP
    with pytest.raises(UnsafeURL):
        await resolve_safe("http://localhost:8080/hook", [])
    pinned = await resolve_safe("http://localhost:8080/hook?x=1", parse_networks(["127.0.0.1/32", "::1/128"]))
    assert pinned.address in ("127.0.0.1", "::1")
    assert pinned.host == "localhost:8080"
    assert pinned.url.endswith(":8080/hook?x=1") and "localhost" not in pinned.url
    with pytest.raises(UnsafeURL):
        await resolve_safe("ftp://example.org/", [])


async def test_an_endpoint_stored_with_a_secret_that_cannot_sign_is_refused_not_crashed() -> None:
    """A 15-byte secret an older release stored: the record still reads (its owner can replace the endpoint), and
    a delivery to it is refused with the reason instead of crashing on every attempt."""
    data = subscription().model_dump(mode="json")
    data["channels"]["webhooks"] = [{"id": "e1", "url": "https://hooks.example.org/x", "secret": "whsec_" + "A" * 20}]
    with pytest.raises(ValidationError):
        Subscription.model_validate(data)
    stored = Subscription.model_validate(data, context=STORED)
    job = DeliveryJob(id="d1", subscription_id=stored.id, channel="webhook", target="e1")
    outcome = await WebhookSender(NotifierSettings(), poster=None).send(job, stored)  # type: ignore[arg-type]
    assert outcome.kind == "refused" and "cannot sign" in (outcome.error or "")
