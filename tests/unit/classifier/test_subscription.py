"""Subscription validation: every bad field gets a message that names the problem."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.subscription import Subscription, SubscriptionSpec


def _error(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        SubscriptionSpec(**{"name": "s", **fields})  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"interests": []}, "needs interests, seed papers, keywords, authors or trending"),
        ({"interests": ["  "]}, "must not be blank"),
        ({"categories": ["cs.XX", "cs.CL"]}, "unknown arXiv categories: cs.XX"),
        ({"interests": ["x"], "exclude_categories": ["physics.magic"]}, "unknown arXiv categories: physics.magic"),
        ({"seed_papers": ["2401.01234", "not-an-id"]}, "malformed arXiv ids: 'not-an-id'"),
        ({"keywords": ['"unclosed phrase']}, "unbalanced quote"),
        ({"keywords": ["(llm OR"]}, "bad keyword queries: '(llm OR': query ends where a term was expected"),
        ({"keywords": ["-diffusion"]}, "a query cannot only exclude"),
        ({"keywords": ["ab*"]}, "needs at least 3 letters before the *"),
        ({"interests": ["x"], "threshold": 1.5}, "less than or equal to 1"),
        ({"interests": ["x"], "top_k": 0}, "greater than or equal to 1"),
        ({"trending": {"window": "month"}}, "'day' or 'week'"),
        ({"trending": {"top": 0}}, "greater than or equal to 1"),
        ({"interests": ["x"], "channels": {"email": "nobody"}}, "not an email address"),
        ({"interests": ["x"], "channels": {"email": "a@b.co\n"}}, "not an email address"),
        ({"interests": ["x"], "schedule": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"interests": ["x"], "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_field_says_why(fields: dict[str, object], message: str) -> None:
    assert message in _error(**fields)


def test_good_spec_normalises_ids_and_keeps_queries() -> None:
    spec = SubscriptionSpec(
        name="ok",
        seed_papers=["arXiv:2401.01234v2", "https://arxiv.org/abs/2401.01234", "hep-th/9711200"],
        keywords=['ti:"language model" -survey', "diffusion OR flow*"],
        trending={"window": "week", "top": 5, "narrow": True},
    )
    assert spec.seed_papers == ["2401.01234", "hep-th/9711200"]
    assert spec.keywords == ['ti:"language model" -survey', "diffusion OR flow*"]
    assert Subscription(**spec.model_dump()).trending.top == 5  # type: ignore[union-attr]


def _configured(subscription_id: str, *urls: str) -> dict[str, object]:
    hooks = [{"url": url, "secret": "whsec_" + "A" * 24} for url in urls]
    return {"id": subscription_id, "name": "s", "keywords": ["x"], "channels": {"webhooks": hooks}}


def test_configured_webhook_ids_are_per_subscription_and_stable() -> None:
    """A subscriptions file lists endpoints without ids: loading it again keeps them, and two subscriptions with
    the same URL never share an id (it keys the endpoint's delivery log and state)."""
    first = Subscription.model_validate(_configured("a", "https://hooks.example.org/in"))
    reloaded = Subscription.model_validate(_configured("a", "https://hooks.example.org/in"))
    other = Subscription.model_validate(_configured("b", "https://hooks.example.org/in"))
    [endpoint] = first.channels.webhooks
    assert endpoint.id == reloaded.channels.webhooks[0].id != other.channels.webhooks[0].id
    assert Subscription.model_validate_json(first.model_dump_json()).channels.webhooks[0].id == endpoint.id
    with pytest.raises(ValidationError, match="listed twice"):
        Subscription.model_validate(_configured("a", "https://hooks.example.org/in", "https://hooks.example.org/in"))


@pytest.mark.parametrize("field", ["id", "owner"])
def test_ids_with_a_trailing_newline_are_refused(field: str) -> None:
    """Ids and owners name Redis keys: ``$`` would let ``abc\\n`` through as a second spelling."""
    with pytest.raises(ValidationError, match="use 1-64 letters"):
        Subscription(name="s", keywords=["x"], **{field: "abc\n"})
