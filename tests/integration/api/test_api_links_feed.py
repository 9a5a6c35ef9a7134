"""Signed links, the personal Atom feed, the page (plain HTTP), matches, delivery history, AsyncAPI."""

from __future__ import annotations

import asyncio
import time

import feedparser
import httpx
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.notifier.email_render import Links
from services.notifier.jobs import DeliveryJob, MatchItem
from services.notifier.slack_blocks import build_messages
from shared.events import DeliveryResult, FeedbackGiven, MatchFound, SubscriptionChanged
from shared.links import sign_link
from shared.paper import Paper
from tests.integration.api.api_helpers import SPEC, fixture_papers, owner_token, stream_events

SECRET = "test-link-secret"


async def _subscription(api: httpx.AsyncClient, redis: aioredis.Redis) -> tuple[dict[str, str], str]:
    alice = await owner_token(redis, "alice")
    return alice, (await api.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]


async def _publish_matches(url: str, sid: str, papers: list, other_sid: str = "someoneelse") -> None:
    async with RedisBroker(url) as broker:
        for rank, paper in enumerate(papers):
            reasons = [f"close to your interest 'superfluid helium confined in nanopores' ({0.7 - rank / 100:.2f})"]
            await broker.publish(
                MatchFound(subscription_id=sid, owner="alice", paper=paper, score=0.7 - rank / 100, reasons=reasons),
                stream="matches",
            )
        await broker.publish(
            MatchFound(subscription_id=other_sid, owner="bob", paper=papers[0], score=0.9), stream="matches"
        )


async def test_feedback_link_confirms_on_get_and_records_on_post(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    _alice, sid = await _subscription(api, redis)
    token = sign_link(SECRET, "like", sid, "1201.4869")
    page = await api.get(f"/v1/feedback/{token}")
    assert page.status_code == 200 and "1201.4869" in page.text
    assert await redis.xlen("feedback") == 0  # a GET (a mail scanner's prefetch) changes nothing

    done = await api.post(f"/v1/feedback/{token}")
    assert done.status_code == 200 and "liked 1201.4869" in done.text
    [event] = [FeedbackGiven.model_validate(b) for b in await stream_events(redis, "feedback")]
    assert (event.subscription_id, event.paper_id, event.label, event.via) == (sid, "1201.4869", "like", "email")

    dislike = sign_link(SECRET, "dislike", sid, "1201.4869")
    assert (await api.post(f"/v1/feedback/{dislike}?via=slack")).status_code == 200
    stored = (await api.get(f"/v1/subscriptions/{sid}", headers=_alice)).json()
    assert stored["liked"] == [] and stored["disliked"] == ["1201.4869"]

    body, mac = token.split(".")
    tampered = sign_link(SECRET, "like", "another", "1201.4869").split(".")[0] + "." + mac
    expired = sign_link(SECRET, "like", sid, "1201.4869", ttl_s=-10)
    wrong_key = sign_link("not-the-secret", "like", sid, "1201.4869")
    for bad, reason in ((tampered, "signature"), (expired, "expired"), (wrong_key, "signature"), ("abc.def", "")):
        refused = await api.post(f"/v1/feedback/{bad}")
        assert refused.status_code == 403 and reason in refused.json()["detail"], refused.text
    unsubscribe_as_feedback = sign_link(SECRET, "unsubscribe", sid)
    assert (await api.post(f"/v1/feedback/{unsubscribe_as_feedback}")).status_code == 403
    assert await redis.xlen("feedback") == 2


async def test_slack_buttons_record_feedback_as_slack(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    """The notifier's Slack buttons open the same kind of link as the e-mail's; the rating must say it came from
    Slack. The confirmation page's form posts back to its own URL, query string included."""
    alice, sid = await _subscription(api, redis)
    sub = await api._transport.app.state.ctx.ops.get("alice", sid)  # type: ignore[attr-defined]
    item = MatchItem(paper=Paper(id="1201.4869", title="t", abstract="a"), score=0.9)
    job = DeliveryJob(id="j", subscription_id=sid, channel="slack", target="slack-x", items=[item])
    [message] = build_messages(job, sub, Links("http://testserver", SECRET))
    buttons = {e["action_id"]: e["url"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}
    for action in ("dislike", "like"):
        path = buttons[f"{action}-1201.4869"].removeprefix("http://testserver")
        assert (await api.get(path)).status_code == 200
        assert (await api.post(path)).status_code == 200
    events = [FeedbackGiven.model_validate(b) for b in await stream_events(redis, "feedback")]
    assert [(e.label, e.via) for e in events] == [("dislike", "slack"), ("like", "slack")]
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["liked"] == ["1201.4869"]


async def test_one_click_unsubscribe(api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    alice, sid = await _subscription(api, redis)
    token = sign_link(SECRET, "unsubscribe", sid)
    assert "Unsubscribe" in (await api.get(f"/v1/unsubscribe/{token}")).text
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["active"] is True
    # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click as a form, no cookies, no confirmation
    response = await api.post(
        f"/v1/unsubscribe/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["active"] is False
    events = [SubscriptionChanged.model_validate(b) for b in await stream_events(redis, "subscriptions")]
    assert [e.action for e in events] == ["created", "paused"]


async def test_personal_atom_feed_is_valid_and_private(
    api: httpx.AsyncClient, redis: aioredis.Redis, clean_redis: str, fixtures_dir
) -> None:
    alice, sid = await _subscription(api, redis)
    papers = fixture_papers(fixtures_dir)[:3]
    await _publish_matches(clean_redis, sid, papers)
    links = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()
    path = links["feed_url"].removeprefix("http://testserver")
    response = await api.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/atom+xml")

    feed = feedparser.parse(response.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "paperwire: helium in nanopores"
    # newest first; the other subscription's match is not in this feed
    assert [e.title for e in feed.entries] == [
        "From stripe to checkerboard order on the square lattice in the presence of quenched disorder",
        "Thermal melting of density waves on the square lattice",
        "A Luttinger Liquid Core Inside Helium-4 Filled Nanopores",
    ]
    assert feed.entries[2].link == "https://arxiv.org/abs/1201.4869"
    assert "superfluid helium confined in nanopores" in feed.entries[2].summary
    assert "Adrian Del Maestro" in [a.name for a in feed.entries[2].authors]

    assert (await api.get("/v1/feeds/not-the-secret")).status_code == 404
    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=alice)).status_code == 204
    assert (await api.get(path)).status_code == 404  # deleting the subscription kills its feed


async def test_matches_and_page_render_reasons(
    api: httpx.AsyncClient, redis: aioredis.Redis, clean_redis: str, fixtures_dir
) -> None:
    alice, sid = await _subscription(api, redis)
    papers = fixture_papers(fixtures_dir)[:2]
    await _publish_matches(clean_redis, sid, papers)
    matches = (await api.get(f"/v1/subscriptions/{sid}/matches", headers=alice)).json()
    assert [m["paper"]["id"] for m in matches] == ["cond-mat/0412498", "1201.4869"]

    page_url = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    path = page_url.removeprefix("http://testserver")
    page = await api.get(path)
    assert page.status_code == 200
    assert "A Luttinger Liquid Core Inside Helium-4 Filled Nanopores" in page.text
    assert "close to your interest" in page.text

    form = {"form": "1", "interests": "helium\nnanopores", "categories": "cond-mat.stat-mech cond-mat.str-el"}
    saved = await api.post(path, data=form)
    assert saved.status_code == 303
    stored = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()
    assert stored["spec"]["interests"] == ["helium", "nanopores"]
    assert stored["spec"]["categories"] == ["cond-mat.stat-mech", "cond-mat.str-el"]
    assert stored["active"] is False  # the checkbox was not sent: unticked

    bad = await api.post(path, data={"categories": "cs.NOPE"})
    assert bad.status_code == 422 and "categories" in bad.text
    rated = await api.post(f"{path}/rate", data={"paper_id": "1201.4869", "label": "like"})
    assert rated.status_code == 303
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["liked"] == ["1201.4869"]
    assert (await api.get("/web/" + sign_link(SECRET, "like", sid, "1201.4869"))).status_code == 403


async def test_delivery_results_are_kept_per_subscription(
    api: httpx.AsyncClient, redis: aioredis.Redis, clean_redis: str
) -> None:
    alice, sid = await _subscription(api, redis)
    async with RedisBroker(clean_redis) as broker:
        result = DeliveryResult(
            subscription_id=sid, paper_ids=["1201.4869"], channel="webhook", target="x", status="delivered"
        )
        await broker.publish(result, stream="deliveries")
    deadline = time.monotonic() + 10
    while not (history := (await api.get(f"/v1/subscriptions/{sid}/deliveries", headers=alice)).json()):
        assert time.monotonic() < deadline, "delivery result not recorded"
        await asyncio.sleep(0.05)
    assert history[0]["status"] == "delivered" and history[0]["paper_ids"] == ["1201.4869"]
    deadline = time.monotonic() + 10
    while (await redis.xpending("deliveries", "api"))["pending"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_health_openapi_and_asyncapi(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready"}
    assert "/v1/subscriptions" in (await api.get("/openapi.json")).json()["paths"]
    document = (await api.get("/asyncapi.json")).json()
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"papers.raw", "matches", "subscriptions", "feedback", "deliveries"} <= addresses
    schemas = document["components"]["schemas"]
    assert "subscription_id" in schemas["MatchFound"]["properties"]
    assert "asyncapi: 3.0.0" in (await api.get("/asyncapi.yaml")).text
