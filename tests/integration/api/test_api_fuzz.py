"""Schemathesis fuzzes the api from its own OpenAPI schema, over real HTTP, against a real Redis (bounded)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from services.api.app import create_api
from tests.integration.api.api_helpers import SPEC, LiveServer, api_settings, owner_token

# Left out: positive_data_acceptance (a subscription needs at least one of interests, keywords, ...: a rule
# across fields that the JSON Schema does not carry) and negative_data_rejection (pydantic's lax mode takes
# 0/1 for booleans on purpose). Everything else schemathesis checks by default stays on.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
    unsupported_method,
    missing_required_header,
]

# The seed import takes a BibTeX file as its body: fuzz it as the text it is.
schemathesis.serializer.alias("application/x-bibtex", "text/plain")
schema = schemathesis.openapi.from_dict(create_api().openapi())


@pytest.fixture(scope="module")
def fuzz_target(redis_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    async def prepare() -> dict[str, str]:
        client = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
        try:
            await client.flushdb()
            return await owner_token(client, "fuzzer")
        finally:
            await client.aclose()

    headers = asyncio.run(prepare())
    # a generous limit: the fuzzer sends bad tokens on purpose and must not lock itself out
    app = create_api(api_settings(redis_url.rsplit("/", 1)[0] + "/3", auth_fail_limit=10_000))
    with LiveServer(app) as server:
        import httpx

        httpx.post(f"{server.url}/v1/subscriptions", json={**SPEC, "name": "fuzzed"}, headers=headers)
        yield server.url, headers


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_survives_fuzzing(case: schemathesis.Case, fuzz_target: tuple[str, dict[str, str]]) -> None:
    base_url, headers = fuzz_target
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
