"""Notifier settings (``NOTIFIER_*``): SMTP, outbox, webhook retries and SSRF allow-list, pacing."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, UserUrlGuard


class NotifierSettings(ServiceSettings, UserUrlGuard):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    smtp_host: str | None = Field(default=None, description="unset: mails go to outbox_dir as .eml files")
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool | None = Field(default=None, description="None: STARTTLS when the server offers it")
    smtp_tls: bool = Field(default=False, description="implicit TLS (port 465)")
    smtp_timeout_s: float = 30.0
    mail_from: str = "paperwire <alerts@paperwire.localhost>"
    outbox_dir: Path = Path("data/outbox")

    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000],
        description="delay before each retry (all channels); after the last one the delivery is dead",
    )
    retry_jitter: float = Field(default=0.2, ge=0, le=1, description="+- fraction of each retry delay")
    webhook_concurrency_per_endpoint: int = Field(
        default=4, ge=1, description="requests at once per endpoint, across all notifier replicas (Redis)"
    )
    webhook_slot_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="lease of a shared endpoint slot, renewed every third of it; a crashed holder's frees after it",
    )
    webhook_tls_clients: int = Field(default=256, ge=1, description="HTTPS host names with their own pooled client")
    email_concurrency: int = Field(default=4, ge=1, description="SMTP sessions at once per process, all recipients")
    delivery_concurrency: int = Field(default=64, ge=1, description="deliveries in flight per process")

    slack_min_interval_s: float = Field(default=1.0, ge=0, description="Slack allows about 1 message/s per webhook")
    slack_max_inline_wait_s: float = Field(default=30.0, ge=0, description="longer Retry-After: reschedule instead")
    slack_inline_wait_budget_s: float = Field(
        default=60.0, ge=0, description="total 429 waiting inside one send; then the worker's backoff takes over"
    )
    slack_max_inline_retries: int = Field(default=5, ge=0, description="429s retried inside one send")

    worker_poll_s: float = Field(default=0.2, gt=0)
    lease_s: float = Field(default=60.0, gt=0, description="an in-flight delivery whose worker died is retried after")
    digest_poll_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float | None = Field(
        default=None, ge=0, description="in-flight sends may finish this long at shutdown; None: webhook_timeout_s"
    )

    @model_validator(mode="after")
    def _outbox_in_data_dir(self) -> NotifierSettings:
        """PAPERWIRE_DATA_DIR moves what the process writes, the outbox too, unless NOTIFIER_OUTBOX_DIR is set."""
        if "outbox_dir" not in self.model_fields_set:
            self.outbox_dir = self.data_dir / "outbox"
        return self

    def shutdown_grace(self) -> float:
        return self.webhook_timeout_s if self.shutdown_grace_s is None else self.shutdown_grace_s
