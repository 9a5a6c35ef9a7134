"""Api settings (env prefix ``API_``)."""

from __future__ import annotations

import os

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, UserUrlGuard


class ApiSettings(ServiceSettings, UserUrlGuard):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="larger request bodies get 413")
    seeds_max_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="largest library export the seed import takes (413 above)"
    )
    auth_fail_limit: int = Field(default=10, ge=1, description="failed token checks per client and window")
    auth_fail_window_s: int = Field(default=60, ge=1)
    matches_scan: int = Field(default=5000, ge=10, description="newest entries of `matches` read for a page or feed")
    feed_size: int = Field(default=50, ge=1, le=500)
    view_link_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    consume_deliveries: bool = Field(default=True, description="keep per-subscription delivery history")

    @model_validator(mode="after")
    def _no_host_allow_list(self) -> ApiSettings:
        """The api's own host-name allow-list was replaced by the notifier's CIDRs: ignoring it in silence would
        turn an operator's working test events into refusals."""
        if os.environ.get("API_WEBHOOK_ALLOW_HOSTS"):
            raise ValueError(
                "API_WEBHOOK_ALLOW_HOSTS is gone: list the addresses in PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS (CIDRs, "
                "the notifier's list too)"
            )
        return self
