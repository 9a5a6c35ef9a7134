"""Subscriptions over HTTP against a real Redis: CRUD with events, ownership, tokens, validation, limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import redis.asyncio as aioredis

from services.api.store import TokenStore
from shared.events import SubscriptionChanged
from tests.integration.api.api_helpers import SPEC, owner_token, stream_events


async def test_crud_publishes_subscription_events(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    alice = await owner_token(redis, "alice")
    created = await api.post("/v1/subscriptions", json=SPEC, headers=alice)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert created.json()["owner"] == "alice"
    assert created.json()["spec"]["categories"] == ["cond-mat.stat-mech"]

    got = await api.get(f"/v1/subscriptions/{sid}", headers=alice)
    assert got.json()["spec"]["schedule"]["timezone"] == "Europe/Berlin"

    patched = await api.patch(f"/v1/subscriptions/{sid}", json={"keywords": ["helium AND nanopore"]}, headers=alice)
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["keywords"] == ["helium AND nanopore"]
    assert patched.json()["spec"]["interests"] == SPEC["interests"]  # untouched fields stay

    replaced = await api.put(f"/v1/subscriptions/{sid}", json={**SPEC, "name": "renamed"}, headers=alice)
    assert replaced.json()["spec"]["name"] == "renamed"
    assert replaced.json()["spec"]["keywords"] == []

    paused = await api.post(f"/v1/subscriptions/{sid}/pause", headers=alice)
    assert paused.json()["active"] is False
    listed = await api.get("/v1/subscriptions", headers=alice)
    assert [s["id"] for s in listed.json()] == [sid]

    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 204
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 404

    events = [SubscriptionChanged.model_validate(b) for b in await stream_events(redis, "subscriptions")]
    assert [e.action for e in events] == ["created", "updated", "updated", "paused", "deleted"]
    assert {e.subscription_id for e in events} == {sid}
    assert events[1].subscription is not None and events[1].subscription.keywords == ["helium AND nanopore"]
    assert events[-1].subscription is None


async def test_one_owner_never_reads_or_changes_anothers(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    alice = await owner_token(redis, "alice")
    mallory = await owner_token(redis, "mallory")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]

    attempts = [
        api.get(f"/v1/subscriptions/{sid}", headers=mallory),
        api.put(f"/v1/subscriptions/{sid}", json=SPEC, headers=mallory),
        api.patch(f"/v1/subscriptions/{sid}", json={"name": "mine"}, headers=mallory),
        api.post(f"/v1/subscriptions/{sid}/pause", headers=mallory),
        api.delete(f"/v1/subscriptions/{sid}", headers=mallory),
        api.post(f"/v1/subscriptions/{sid}/webhooks", json={"url": "https://example.org/hook"}, headers=mallory),
        api.get(f"/v1/subscriptions/{sid}/webhooks", headers=mallory),
        api.get(f"/v1/subscriptions/{sid}/matches", headers=mallory),
        api.get(f"/v1/subscriptions/{sid}/links", headers=mallory),
        api.post(f"/v1/subscriptions/{sid}/deliveries/replay", headers=mallory),
        api.post(f"/v1/subscriptions/{sid}/feedback", json={"paper_id": "1201.4869", "label": "like"}, headers=mallory),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 404, (response.request.method, response.request.url, response.text)
    assert (await api.get("/v1/subscriptions", headers=mallory)).json() == []
    unchanged = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()
    assert unchanged["spec"]["name"] == SPEC["name"] and unchanged["active"] is True and unchanged["webhooks"] == []
    assert unchanged["liked"] == []


async def test_tokens_are_hashed_revocable_and_failures_rate_limited(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    alice = await owner_token(redis, "alice")
    token = alice["Authorization"].removeprefix("Bearer ")
    assert (await api.get("/v1/me", headers=alice)).json() == {"owner": "alice"}
    stored = b"".join([await redis.get(k) for k in await redis.keys("api:token:*")])
    assert token.encode() not in stored and token.split("_", 2)[2].encode() not in stored

    assert (await api.get("/v1/me")).status_code == 401
    token_id = token.split("_")[1]
    assert await TokenStore(redis).revoke(token_id)
    assert (await api.get("/v1/me", headers=alice)).status_code == 401  # failure 1 (revoked)

    bad = {"Authorization": "Bearer pw_abc123_" + "x" * 40}
    for _ in range(4):  # failures 2..5: the limit (5) is reached
        assert (await api.get("/v1/me", headers=bad)).status_code == 401
    blocked = await api.get("/v1/me", headers=bad)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    # the token is checked first: a valid one passes even from a blocked address, only failures wait
    fresh = await owner_token(redis, "bob")
    assert (await api.get("/v1/me", headers=fresh)).json() == {"owner": "bob"}
    assert (await api.get("/v1/me", headers=bad)).status_code == 429
    assert 0 < await redis.ttl("api:authfail:127.0.0.1") <= 60


async def test_junk_tokens_behind_one_address_do_not_lock_out_valid_users(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    """Behind a proxy or NAT every client has the proxy's address: someone's junk tokens must not 429 the rest."""
    alice = await owner_token(redis, "alice")
    junk = {"Authorization": "Bearer pw_abc123_" + "y" * 40}
    statuses = [(await api.get("/v1/me", headers=junk)).status_code for _ in range(10)]
    assert statuses == [401] * 5 + [429] * 5
    for _ in range(3):
        assert (await api.get("/v1/me", headers=alice)).json() == {"owner": "alice"}
    assert (await api.get("/v1/me")).status_code == 401  # no header is not a guess: never 429


async def test_bad_input_is_refused_with_the_field_named(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    alice = await owner_token(redis, "alice")
    cases = {
        "categories": {**SPEC, "categories": ["cs.NOPE"]},
        "seed_papers": {**SPEC, "seed_papers": ["not-an-id"]},
        "schedule.timezone": {**SPEC, "schedule": {"timezone": "Mars/Olympus"}},
        "colour": {**SPEC, "colour": "blue"},
        "channels.email": {**SPEC, "channels": {"email": "no-at-sign"}},
        "channels.webhooks": {
            **SPEC,
            "channels": {"webhooks": [{"url": "https://e.org", "secret": "whsec_" + "A" * 20}]},
        },
    }
    for field, body in cases.items():
        response = await api.post("/v1/subscriptions", json=body, headers=alice)
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["detail"], (field, response.json())
    empty = await api.post("/v1/subscriptions", json={"name": "nothing"}, headers=alice)
    assert empty.status_code == 422 and "interests" in empty.json()["detail"]

    huge = {**SPEC, "interests": ["x" * 1000] * 100}
    too_large = await api.post("/v1/subscriptions", json=huge, headers=alice)
    assert too_large.status_code == 413 and "body" in too_large.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts what arrives
        body = json.dumps(huge).encode()
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    chunked = await api.post(
        "/v1/subscriptions", content=chunks(), headers={**alice, "content-type": "application/json"}
    )
    assert chunked.status_code == 413 and "body" in chunked.json()["detail"]
    assert (await api.get("/v1/subscriptions/..%2F..", headers=alice)).status_code in (404, 422)
    assert await redis.keys("subscription:*") == []


async def test_email_with_a_trailing_newline_is_refused(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """``$`` matches before a final newline: the address would end the notifier's To header early."""
    alice = await owner_token(redis, "alice")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    for email in ("a@b.co\n", "a@b.co\nBcc: x@y.org", "a@b.co\r\n"):
        refused = await api.patch(f"/v1/subscriptions/{sid}", json={"channels": {"email": email}}, headers=alice)
        assert refused.status_code == 422 and "channels.email" in refused.text, refused.text
    accepted = await api.patch(f"/v1/subscriptions/{sid}", json={"channels": {"email": "a@b.co"}}, headers=alice)
    assert accepted.status_code == 200 and accepted.json()["spec"]["channels"]["email"] == "a@b.co"


async def test_time_zone_folders_and_overlong_names_are_refused(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """``ZoneInfo("America")`` fails as a directory and a 300-character name as a file name: both are OSError,
    which the validator must turn into the usual 422, in the JSON API and on the web page."""
    alice = await owner_token(redis, "alice")
    for zone in ("America", "a" * 300):
        created = await api.post(
            "/v1/subscriptions", json={**SPEC, "schedule": {"mode": "daily", "timezone": zone}}, headers=alice
        )
        assert created.status_code == 422 and "schedule.timezone" in created.text, created.text
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    patched = await api.patch(f"/v1/subscriptions/{sid}", json={"schedule": {"timezone": "Europe"}}, headers=alice)
    assert patched.status_code == 422 and "schedule.timezone" in patched.text, patched.text
    page = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    form = await api.post(page.removeprefix("http://testserver"), data={"form": "1", "schedule_timezone": "America"})
    assert form.status_code == 422 and "schedule.timezone" in form.text
    stored = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()
    assert stored["spec"]["schedule"]["timezone"] == "Europe/Berlin"


async def test_patch_merges_schedule_and_trending_fields(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """Changing the digest time must not turn a weekly digest into instant alerts (the other fields' defaults)."""
    alice = await owner_token(redis, "alice")
    weekly = {"mode": "weekly", "weekday": 4, "at": "08:00", "timezone": "Europe/Paris", "heartbeat": True}
    spec = {**SPEC, "schedule": weekly, "trending": {"window": "week", "top": 5}}
    sid = (await api.post("/v1/subscriptions", json=spec, headers=alice)).json()["id"]
    patched = await api.patch(
        f"/v1/subscriptions/{sid}", json={"schedule": {"at": "09:30"}, "trending": {"narrow": True}}, headers=alice
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["schedule"] == {**weekly, "at": "09:30:00"}
    assert patched.json()["spec"]["trending"] == {"window": "week", "top": 5, "narrow": True}
    dropped = await api.patch(f"/v1/subscriptions/{sid}", json={"trending": None}, headers=alice)
    assert dropped.json()["spec"]["trending"] is None
    added = await api.patch(f"/v1/subscriptions/{sid}", json={"trending": {"top": 3}}, headers=alice)
    assert added.json()["spec"]["trending"] == {"window": "day", "top": 3, "narrow": False}
    page = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    form = await api.post(page.removeprefix("http://testserver"), data={"form": "1", "schedule_at": "07:15"})
    assert form.status_code == 303
    stored = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["schedule"]
    assert stored == {**weekly, "at": "07:15:00"}


async def test_email_with_address_specials_is_refused(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """A comment, group or quoted part makes the notifier's To header (and the SMTP envelope) name someone else:
    ``x:victim@example.org`` is a group sending to victim@example.org, ``a(b@example.org`` a mail to ``a``."""
    alice = await owner_token(redis, "alice")
    sid = (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
    for email in ("a(b@example.org", "x:victim@example.org", "a\\b@example.org", "[a]@example.org", '"a b"@x.org'):
        refused = await api.patch(f"/v1/subscriptions/{sid}", json={"channels": {"email": email}}, headers=alice)
        assert refused.status_code == 422 and "channels.email" in refused.text, (email, refused.text)
    for email in ("o'brien+papers@mail.example.co.uk", "jörg@bücher.de"):
        accepted = await api.patch(f"/v1/subscriptions/{sid}", json={"channels": {"email": email}}, headers=alice)
        assert accepted.status_code == 200 and accepted.json()["spec"]["channels"]["email"] == email


async def test_a_record_stored_under_older_rules_can_still_be_fixed_and_deleted(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    """An address an older release accepted and today's rules refuse: the owner reads the record, a PATCH that
    changes something else names the address to fix, one that fixes it works, and DELETE works."""
    alice = await owner_token(redis, "alice")
    created = await api.post("/v1/subscriptions", json=SPEC, headers=alice)
    subscription_id = created.json()["id"]
    stored = json.loads(await redis.get(f"subscription:{subscription_id}"))
    stored["channels"]["email"] = "alice@my_host.example.org"  # what the older rule let through
    await redis.set(f"subscription:{subscription_id}", json.dumps(stored))
    url = f"/v1/subscriptions/{subscription_id}"
    assert (await api.get(url, headers=alice)).status_code == 200
    other = await api.patch(url, json={"name": "renamed"}, headers=alice)
    assert other.status_code == 422 and "alice@my_host.example.org" in other.text
    fixed = await api.patch(url, json={"channels": {"email": "alice@example.org"}}, headers=alice)
    assert fixed.status_code == 200 and fixed.json()["spec"]["channels"]["email"] == "alice@example.org"
    await redis.set(f"subscription:{subscription_id}", json.dumps(stored))
    assert (await api.delete(url, headers=alice)).status_code == 204
