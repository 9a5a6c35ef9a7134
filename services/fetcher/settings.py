"""Fetcher settings (env prefix ``FETCHER_``): source URLs, politeness, schedule."""

from __future__ import annotations

from datetime import date

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

PLACEHOLDER_CONTACT = "mailto:ops@example.org"


class FetcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FETCHER_", extra="ignore")

    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_rss_url: str = "https://rss.arxiv.org"
    oai_url: str = "https://oaipmh.arxiv.org/oai"
    hf_url: str = "https://huggingface.co/api/daily_papers"

    arxiv_queries: list[str] = Field(default_factory=list, description="search_query strings polled each cycle")
    rss_categories: list[str] = Field(default_factory=lambda: ["cs.CL", "cs.LG", "cs.AI"], description="[] disables")
    rss_format: str = Field(default="rss", pattern="^(rss|atom)$")
    oai_enabled: bool = False
    oai_set: str = "cs"
    oai_catchup_days: int = Field(
        default=7, ge=1, description="after an outage the daily harvest reaches back this far at most"
    )
    oai_metadata_prefix: str = Field(default="arXivRaw", pattern="^(arXivRaw|arXiv)$")
    hf_enabled: bool = True
    hf_date: date | None = Field(default=None, description="fixed Daily Papers date; default today (UTC)")
    hf_days: int = Field(
        default=2,
        ge=1,
        le=14,
        description="Daily Papers dates polled each cycle, counting back from hf_date (or today): the default 2 is "
        "today and yesterday, whose lists keep collecting upvotes",
    )

    max_results: int = Field(default=100, ge=1, le=30_000, description="papers per query per poll")
    page_size: int = Field(default=100, ge=1, le=2_000, description="arXiv allows at most 2,000 per page")
    short_page_retries: int = Field(
        default=3, ge=0, le=10, description="asks again for a page arXiv answered short although more results exist"
    )
    poll_on_start: bool = Field(
        default=True,
        description="look at the shared schedule at start and poll what is due; false: first look one interval later",
    )
    poll_interval_s: float = Field(default=3600.0, gt=0)
    retry_failed_after_s: float = Field(default=120.0, gt=0, description="a failed source is polled again sooner")
    poll_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="a poller's claim on a source (fetcher:poll:<source>), renewed every third of it while it polls; "
        "a crashed poller's claim expires after this",
    )

    arxiv_min_interval_s: float = Field(default=3.0, ge=0, description="shared by every fetcher process")
    arxiv_lock_ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="the lease on the arXiv slot (ratelimit:arxiv:lock), renewed every third of it while its holder's "
        "request runs: a crashed holder's slot frees after this; raised to 1.5 x arxiv_min_interval_s, so the "
        "spacing holds after a crash too",
    )
    user_agent: str = f"paperwire/0.1 (+https://github.com/paperwire; {PLACEHOLDER_CONTACT})"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_retries: int = Field(default=4, ge=0)
    backoff_base_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    holidays: list[date] = Field(default_factory=list, description="dates with no arXiv announcement")

    def contact_problem(self) -> str | None:
        """What is wrong with the User-Agent's contact, if anything: arXiv asks every client for a real one."""
        if "@example." in self.user_agent:  # the default, or an address copied from the docs
            return (
                f"the User-Agent {self.user_agent!r} names a placeholder contact: set FETCHER_USER_AGENT to your "
                "service and a real e-mail address, as arXiv's API terms ask"
            )
        return None
