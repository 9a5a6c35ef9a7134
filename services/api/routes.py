"""The JSON API under /v1: subscriptions, webhook endpoints, deliveries, matches. Every route is owner-scoped."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field, HttpUrl

from services.api.deps import ApiContext, context, current_owner, error_responses
from services.api.seeds import REQUEST_BODY, SeedFormat, read_export, upload_from_request
from services.api.store import DeliveryHistory, FeedSecrets
from services.api.streams import dead_delivery_ids, recent_matches
from services.api.subscriptions import (
    SubscriptionView,
    WebhookView,
    subscription_view,
    webhook_view,
)
from services.api.webhooks import send_signed, test_payload
from shared.consumer import replay_dead
from shared.events import MatchFound, ReplayRequested, Stream
from shared.links import sign_link
from shared.paper import InvalidArxivId, normalize_arxiv_id
from shared.storage import DeliveryLog
from shared.subscription import SubscriptionSpec

router = APIRouter(prefix="/v1", tags=["api"], responses=error_responses(400, 401, 404, 409, 413, 422, 429))

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SEEDS_IMPORT_PATH = r"/v1/subscriptions/[^/]+/seeds/import"  # the body size limit of uploads applies here
SubscriptionId = Annotated[str, Path(pattern=SLUG, description="subscription id")]
EndpointId = Annotated[str, Path(pattern=SLUG, description="webhook endpoint id")]
Owner = Annotated[str, Depends(current_owner)]
Ctx = Annotated[ApiContext, Depends(context)]


class Me(BaseModel):
    owner: str


class WebhookIn(BaseModel):
    model_config = {"extra": "forbid"}
    url: HttpUrl


class WebhookCreated(BaseModel):
    endpoint: WebhookView
    secret: str


class EndpointState(BaseModel):
    """The notifier's record of an endpoint's deliveries (a Redis hash of strings, ``DeliveryLog``), typed."""

    state: str = "active"
    consecutive_failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: str | None = None
    disabled_reason: str | None = None
    disabled_at: str | None = None

    @classmethod
    def stored(cls, raw: dict[str, str]) -> EndpointState:
        """Empty strings are how the hash says "none"."""
        return cls.model_validate({k: v for k, v in raw.items() if v != "" and k in cls.model_fields})


class WebhookStatus(BaseModel):
    endpoint: WebhookView
    state: EndpointState
    attempts: list[dict[str, Any]]


class Attempt(BaseModel):
    id: str
    status_code: int | None
    ok: bool
    error: str | None = None


class FeedbackIn(BaseModel):
    model_config = {"extra": "forbid"}
    paper_id: str
    label: Literal["like", "dislike"]


class Links(BaseModel):
    feed_url: str
    page_url: str


class Replayed(BaseModel):
    replayed: list[str]


class SeedsImported(BaseModel):
    format: SeedFormat
    added: list[str] = Field(description="arXiv ids added to the seed papers, in the export's order")
    already_present: list[str] = Field(description="arXiv ids of the export that were seed papers already")
    no_arxiv_id: list[str] = Field(description="entries without an arXiv id, as 'citation key: title'")
    subscription: SubscriptionView


@router.get("/me", response_model=Me)
async def me(owner: Owner) -> Me:
    return Me(owner=owner)


@router.post("/subscriptions", status_code=201, response_model=SubscriptionView)
async def create_subscription(owner: Owner, ctx: Ctx, spec: SubscriptionSpec) -> SubscriptionView:
    return subscription_view(await ctx.ops.create(owner, spec))


@router.get("/subscriptions", response_model=list[SubscriptionView])
async def list_subscriptions(owner: Owner, ctx: Ctx) -> list[SubscriptionView]:
    return [subscription_view(s) for s in await ctx.ops.list(owner)]


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionView)
async def get_subscription(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> SubscriptionView:
    return subscription_view(await ctx.ops.get(owner, subscription_id))


@router.put("/subscriptions/{subscription_id}", response_model=SubscriptionView)
async def replace_subscription(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, spec: SubscriptionSpec
) -> SubscriptionView:
    return subscription_view(await ctx.ops.replace(owner, subscription_id, spec))


@router.patch("/subscriptions/{subscription_id}", response_model=SubscriptionView)
async def patch_subscription(
    owner: Owner,
    ctx: Ctx,
    subscription_id: SubscriptionId,
    changes: Annotated[dict[str, Any], Body(description="fields of the subscription spec to change")],
) -> SubscriptionView:
    return subscription_view(await ctx.ops.patch(owner, subscription_id, changes))


@router.post("/subscriptions/{subscription_id}/pause", response_model=SubscriptionView)
async def pause_subscription(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> SubscriptionView:
    return subscription_view(await ctx.ops.set_active(owner, subscription_id, False))


@router.post("/subscriptions/{subscription_id}/resume", response_model=SubscriptionView)
async def resume_subscription(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> SubscriptionView:
    return subscription_view(await ctx.ops.set_active(owner, subscription_id, True))


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> Response:
    await ctx.ops.delete(owner, subscription_id)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/seeds/import",
    response_model=SeedsImported,
    openapi_extra=REQUEST_BODY,
)
async def import_seed_papers(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, request: Request
) -> SeedsImported:
    """Add the arXiv ids of a BibTeX or CSL-JSON library export (Zotero exports both) to the seed papers.

    Ids already there are reported, not repeated; entries without an arXiv id are listed by citation key and
    title. Like any edit it publishes SubscriptionChanged, so seeds the system has not seen yet are fetched.
    A file that is neither format: 422 saying why; larger than ``API_SEEDS_MAX_BYTES``: 413."""
    await ctx.ops.get(owner, subscription_id)  # a missing or foreign subscription is 404 before the upload is read
    export = read_export(await upload_from_request(request))
    subscription, added, present = await ctx.ops.add_seeds(owner, subscription_id, export.found.ids)
    return SeedsImported(
        format=export.format,
        added=added,
        already_present=present,
        no_arxiv_id=export.found.skipped,
        subscription=subscription_view(subscription),
    )


@router.get("/subscriptions/{subscription_id}/matches", response_model=list[MatchFound])
async def list_matches(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[MatchFound]:
    subscription = await ctx.ops.get(owner, subscription_id)
    return await recent_matches(ctx.redis, subscription.id, limit=limit, scan=ctx.settings.matches_scan)


@router.post("/subscriptions/{subscription_id}/feedback", response_model=SubscriptionView)
async def give_feedback(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, feedback: FeedbackIn
) -> SubscriptionView:
    subscription = await ctx.ops.get(owner, subscription_id)
    try:
        paper_id = normalize_arxiv_id(feedback.paper_id)
    except InvalidArxivId as exc:
        raise HTTPException(422, f"paper_id: {exc}") from exc
    return subscription_view(await ctx.ops.rate(subscription.id, paper_id, feedback.label, "api"))


@router.get("/subscriptions/{subscription_id}/links", response_model=Links)
async def personal_links(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> Links:
    """The personal Atom feed and the web page of a subscription (anyone holding them can use them)."""
    subscription = await ctx.ops.get(owner, subscription_id)
    base = ctx.settings.public_url.rstrip("/")
    secret = await FeedSecrets(ctx.redis).get_or_create(subscription.id)
    token = sign_link(ctx.settings.link_secret, "view", subscription.id, ttl_s=ctx.settings.view_link_ttl_s)
    return Links(feed_url=f"{base}/v1/feeds/{secret}", page_url=f"{base}/web/{token}")


@router.post("/subscriptions/{subscription_id}/webhooks", status_code=201, response_model=WebhookCreated)
async def add_webhook(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, body: WebhookIn) -> WebhookCreated:
    """Register an endpoint; its ``whsec_`` secret is in this answer and never shown again."""
    endpoint = await ctx.ops.add_webhook(owner, subscription_id, body.url)
    return WebhookCreated(endpoint=webhook_view(endpoint), secret=endpoint.secret)


@router.get("/subscriptions/{subscription_id}/webhooks", response_model=list[WebhookStatus])
async def list_webhooks(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> list[WebhookStatus]:
    subscription = await ctx.ops.get(owner, subscription_id)
    log = DeliveryLog(ctx.redis)
    return [
        WebhookStatus(
            endpoint=webhook_view(w),
            state=EndpointState.stored(await log.state(w.id)),
            attempts=await log.recent_attempts(w.id),
        )
        for w in subscription.channels.webhooks
    ]


@router.delete("/subscriptions/{subscription_id}/webhooks/{endpoint_id}", status_code=204)
async def remove_webhook(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, endpoint_id: EndpointId) -> Response:
    await ctx.ops.remove_webhook(owner, subscription_id, endpoint_id)
    return Response(status_code=204)


@router.get("/subscriptions/{subscription_id}/webhooks/{endpoint_id}/attempts", response_model=list[dict[str, Any]])
async def webhook_attempts(
    owner: Owner,
    ctx: Ctx,
    subscription_id: SubscriptionId,
    endpoint_id: EndpointId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    """Recent delivery attempts, newest first, with their HTTP status codes."""
    ctx.ops.endpoint(await ctx.ops.get(owner, subscription_id), endpoint_id)
    return await DeliveryLog(ctx.redis).recent_attempts(endpoint_id, limit)


@router.post("/subscriptions/{subscription_id}/webhooks/{endpoint_id}/test", response_model=Attempt)
async def test_webhook(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, endpoint_id: EndpointId) -> Attempt:
    """Send a signed ``paperwire.test`` event now and record the attempt."""
    endpoint = ctx.ops.endpoint(await ctx.ops.get(owner, subscription_id), endpoint_id)
    attempt = await send_signed(
        str(endpoint.url),
        endpoint.secret,
        test_payload(subscription_id, endpoint_id),
        timeout_s=ctx.settings.webhook_timeout_s,
        allowed_networks=ctx.settings.webhook_allowed_networks,
        previous_secret=endpoint.previous_secret,
    )
    await DeliveryLog(ctx.redis).record_attempt(endpoint_id, attempt)
    return Attempt(**attempt)


@router.post("/subscriptions/{subscription_id}/webhooks/{endpoint_id}/enable", response_model=WebhookView)
async def enable_webhook(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, endpoint_id: EndpointId
) -> WebhookView:
    """Re-enable an endpoint the notifier disabled (410, too many failures).

    Its DeliveryLog state is reset with the field names the notifier writes (``worker._endpoint_state``,
    ``worker._disable_endpoint``), so the listing no longer shows it disabled with its old failure count."""
    endpoint = await ctx.ops.update_webhook(owner, subscription_id, endpoint_id, enabled=True, disabled_reason=None)
    await DeliveryLog(ctx.redis).set_state(
        endpoint_id, state="active", disabled_reason="", disabled_at="", consecutive_failures="0"
    )
    return webhook_view(endpoint)


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=list[dict[str, Any]])
async def delivery_history(
    owner: Owner, ctx: Ctx, subscription_id: SubscriptionId, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[dict[str, Any]]:
    subscription = await ctx.ops.get(owner, subscription_id)
    return await DeliveryHistory(ctx.redis).recent(subscription.id, limit)


@router.post("/subscriptions/{subscription_id}/deliveries/replay", response_model=Replayed)
async def replay_deliveries(owner: Owner, ctx: Ctx, subscription_id: SubscriptionId) -> Replayed:
    """Try this subscription's dead deliveries again: matches the notifier could not take are put back on
    ``matches``; deliveries whose retries ran out are handed to the notifier with a ReplayRequested event."""
    subscription = await ctx.ops.get(owner, subscription_id)
    matches = await replay_dead(
        ctx.redis, Stream.MATCHES, only=lambda body: body.get("subscription_id") == subscription.id
    )
    delivery_ids = await dead_delivery_ids(ctx.redis, subscription.id)
    if delivery_ids:
        event = ReplayRequested(subscription_id=subscription.id, delivery_ids=delivery_ids, requested_by=owner)
        await ctx.ops.publish(Stream.DELIVERIES_REPLAY, event)
    return Replayed(replayed=matches + delivery_ids)
