"""No-login surfaces: signed feedback and unsubscribe links, the personal Atom feed, and the web page.

GET on a link only shows a confirmation page (mail scanners prefetch links); POST performs the action.
RFC 8058 one-click unsubscribe is a POST with ``List-Unsubscribe=One-Click`` to the same URL.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api.atom import build_feed
from services.api.deps import ApiContext, context, error_responses
from services.api.forms import error_messages, form_to_changes, form_values, parse_form
from services.api.seeds import REQUEST_BODY, SeedUploadError, read_export, upload_from_request
from services.api.store import DeliveryHistory, FeedSecrets
from services.api.streams import recent_matches
from services.api.subscriptions import NotFound, webhook_view
from shared.links import BadLink, verify_link
from shared.paper import InvalidArxivId, normalize_arxiv_id
from shared.storage import DeliveryLog
from shared.subscription import Subscription

router = APIRouter(tags=["links"], responses=error_responses(400, 403, 404, 413, 422))
templates = Jinja2Templates(directory=str(FsPath(__file__).parent / "templates"))
HTML: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {"schema": {"type": "string"}}}}}
Ctx = Annotated[ApiContext, Depends(context)]
Token = Annotated[str, Path(max_length=1000, pattern=r"^[A-Za-z0-9_.=-]+$", description="signed link token")]
FeedSecret = Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9_-]+$", description="feed secret")]
SEEDS_UPLOAD_PATH = r"/web/[^/]+/seeds"  # the body size limit of uploads applies here


def _verify(ctx: ApiContext, token: str, *actions: str) -> dict[str, Any]:
    try:
        link = verify_link(ctx.settings.link_secret, token)
    except BadLink as exc:
        raise HTTPException(403, f"link: {exc}") from exc
    if link["action"] not in actions:
        raise HTTPException(403, "link: not valid for this action")
    return link


PAGE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """The page's URL is a credential: no Referer to the sites it links to, no copy in a shared cache."""
    return templates.TemplateResponse(request, name, values, status_code=status_code, headers=PAGE_HEADERS)


@router.get("/v1/feedback/{token}", responses=HTML)
async def feedback_confirm(request: Request, ctx: Ctx, token: Token) -> HTMLResponse:
    link = _verify(ctx, token, "like", "dislike")
    subscription = await ctx.ops.get(None, link["subscription_id"])
    return _page(request, "confirm.html", action=link["action"], paper_id=link["paper_id"], subscription=subscription)


@router.post("/v1/feedback/{token}", responses=HTML)
async def feedback_apply(request: Request, ctx: Ctx, token: Token) -> HTMLResponse:
    link = _verify(ctx, token, "like", "dislike")
    via = "slack" if request.query_params.get("via") == "slack" else "email"
    subscription = await ctx.ops.rate(link["subscription_id"], link["paper_id"], link["action"], via)
    return _page(
        request, "done.html", message=f"Recorded: you {link['action']}d {link['paper_id']}.", subscription=subscription
    )


@router.get("/v1/unsubscribe/{token}", responses=HTML)
async def unsubscribe_confirm(request: Request, ctx: Ctx, token: Token) -> HTMLResponse:
    link = _verify(ctx, token, "unsubscribe")
    subscription = await ctx.ops.get(None, link["subscription_id"])
    return _page(request, "confirm.html", action="unsubscribe", paper_id=None, subscription=subscription)


@router.post("/v1/unsubscribe/{token}", responses=HTML)
async def unsubscribe_apply(request: Request, ctx: Ctx, token: Token) -> HTMLResponse:
    """Both the confirmation form and RFC 8058 one-click (body ``List-Unsubscribe=One-Click``) land here."""
    link = _verify(ctx, token, "unsubscribe")
    subscription = await ctx.ops.set_active(None, link["subscription_id"], False)
    return _page(request, "done.html", message="You are unsubscribed: no more messages.", subscription=subscription)


@router.get("/v1/feeds/{secret}", response_class=Response, responses={200: {"content": {"application/atom+xml": {}}}})
async def atom_feed(request: Request, ctx: Ctx, secret: FeedSecret) -> Response:
    subscription_id = await FeedSecrets(ctx.redis).subscription_for(secret)
    if subscription_id is None:
        raise HTTPException(404, "feed not found")
    subscription = await ctx.ops.get(None, subscription_id)
    matches = await recent_matches(
        ctx.redis, subscription.id, limit=ctx.settings.feed_size, scan=ctx.settings.matches_scan
    )
    feed_url = f"{ctx.settings.public_url.rstrip('/')}/v1/feeds/{secret}"
    return Response(build_feed(subscription, matches, feed_url, None), media_type="application/atom+xml")


async def _render(
    request: Request,
    ctx: ApiContext,
    token: str,
    subscription: Subscription,
    *,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
    saved: bool = False,
    imported: dict[str, Any] | None = None,
) -> HTMLResponse:
    matches = await recent_matches(ctx.redis, subscription.id, limit=50, scan=ctx.settings.matches_scan)
    log = DeliveryLog(ctx.redis)
    webhooks = [
        {"view": webhook_view(w), "state": await log.state(w.id), "attempts": await log.recent_attempts(w.id, 5)}
        for w in subscription.channels.webhooks
    ]
    return _page(
        request,
        "page.html",
        status_code=422 if errors else 200,
        token=token,
        subscription=subscription,
        form=values or form_values(subscription),
        matches=matches,
        webhooks=webhooks,
        deliveries=await DeliveryHistory(ctx.redis).recent(subscription.id, 10),
        errors=errors or [],
        saved=saved,
        imported=imported,
    )


async def _subscription_for_view(ctx: ApiContext, token: str) -> Subscription:
    link = _verify(ctx, token, "view")
    try:
        return await ctx.ops.get(None, link["subscription_id"])
    except NotFound as exc:
        raise HTTPException(404, "subscription not found") from exc


@router.get("/web/{token}", responses=HTML)
async def web_page(request: Request, ctx: Ctx, token: Token) -> HTMLResponse:
    subscription = await _subscription_for_view(ctx, token)
    return await _render(request, ctx, token, subscription, saved=request.query_params.get("saved") == "1")


@router.post("/web/{token}", responses=HTML)
async def web_save(request: Request, ctx: Ctx, token: Token) -> Response:
    subscription = await _subscription_for_view(ctx, token)
    form = parse_form(await request.body())
    try:
        await ctx.ops.patch(None, subscription.id, form_to_changes(form))
    except ValidationError as exc:
        return await _render(request, ctx, token, subscription, errors=error_messages(exc), values=form)
    return RedirectResponse(f"/web/{token}?saved=1", status_code=303)


@router.post("/web/{token}/rate", responses=HTML)
async def web_rate(request: Request, ctx: Ctx, token: Token) -> Response:
    subscription = await _subscription_for_view(ctx, token)
    form = parse_form(await request.body())
    label = form.get("label")
    try:
        paper_id = normalize_arxiv_id(form.get("paper_id", ""))
    except InvalidArxivId:
        return await _render(request, ctx, token, subscription, errors=["paper_id: not an arXiv id"])
    if label not in ("like", "dislike"):
        return await _render(request, ctx, token, subscription, errors=["label: must be like or dislike"])
    await ctx.ops.rate(subscription.id, paper_id, label, "web")
    return RedirectResponse(f"/web/{token}", status_code=303)


@router.post("/web/{token}/seeds", responses=HTML, openapi_extra=REQUEST_BODY)
async def web_import_seeds(request: Request, ctx: Ctx, token: Token) -> Response:
    """The page's file input: a BibTeX or CSL-JSON export's arXiv ids added to the seed papers."""
    subscription = await _subscription_for_view(ctx, token)
    try:
        export = read_export(await upload_from_request(request))
        subscription, added, present = await ctx.ops.add_seeds(None, subscription.id, export.found.ids)
    except SeedUploadError as exc:
        return await _render(request, ctx, token, subscription, errors=[str(exc)])
    except ValidationError as exc:
        return await _render(request, ctx, token, subscription, errors=error_messages(exc))
    imported = {"format": export.format, "added": added, "present": present, "skipped": export.found.skipped}
    return await _render(request, ctx, token, subscription, imported=imported)
