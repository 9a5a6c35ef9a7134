"""Settings: one pydantic-settings class per service, each with its own env prefix, all sharing REDIS_URL."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from shared.model_files import DEFAULT_MODEL_ID, default_model_dir

LINK_SECRET_FILE = "link_secret"
# Read as PAPERWIRE_<NAME> by every service, and as <SERVICE>_<NAME> for one service (which wins).
SHARED_ENV_FIELDS = (
    "max_attempts",
    "claim_idle_ms",
    "claim_poll_ms",
    "read_block_ms",
    "retention_hours",
    "webhook_allowed_networks",
)
JSON_ENV_FIELDS = {"webhook_allowed_networks"}  # lists: JSON in the environment, as pydantic-settings reads them


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` (``FETCHER_``, ``PARSER_``, ...)."""

    model_config = SettingsConfigDict(env_prefix="PAPERWIRE_", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL"),
        description="unset: `paperwire run` starts the embedded Redis",
    )
    data_dir: Path = Field(default=Path("data"), validation_alias=AliasChoices("PAPERWIRE_DATA_DIR"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("PAPERWIRE_LOG_LEVEL"))
    consumer_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PAPERWIRE_CONSUMER_NAME"),
        description="stable per process; default host-pid",
    )
    public_url: str = Field(
        default="http://localhost:8000",
        validation_alias=AliasChoices("PAPERWIRE_PUBLIC_URL"),
        description="where the api is reached: base of feedback, unsubscribe and feed links",
    )
    link_secret: str = Field(
        default="",
        validation_alias=AliasChoices("PAPERWIRE_LINK_SECRET"),
        description="HMAC key of signed links; unset: a random one kept in <data_dir>/link_secret",
    )
    max_attempts: int = Field(default=5, ge=1, description="deliveries before an event is dead-lettered")
    claim_idle_ms: int = Field(default=30_000, ge=100, description="pending longer than this is claimed")
    claim_poll_ms: int = Field(default=1_000, ge=10)
    read_block_ms: int = Field(default=1_000, ge=10)
    retention_hours: float = Field(default=72.0, gt=0, description="consumed entries older than this are trimmed")

    @field_validator("redis_url")
    @classmethod
    def _a_redis_url(cls, url: str | None) -> str | None:
        """Refused here, with its name, rather than as a traceback from redis-py at the first command; and
        ``/abc``, which redis-py quietly reads as database 0."""
        if url:
            check_redis_url(url)
        return url

    @model_validator(mode="before")
    @classmethod
    def _shared_env(cls, data: object) -> object:
        """``PAPERWIRE_MAX_ATTEMPTS`` and the other reliability settings apply to every service: a subclass's own
        prefix (``PARSER_MAX_ATTEMPTS``) would otherwise be the only name read. The service's own name wins."""
        if isinstance(data, dict):
            for name in SHARED_ENV_FIELDS:
                value = os.environ.get(f"PAPERWIRE_{name.upper()}")
                if value is None or name in data or name not in cls.model_fields:
                    continue
                try:
                    data[name] = json.loads(value) if name in JSON_ENV_FIELDS else value
                except ValueError as exc:
                    raise ValueError(f"PAPERWIRE_{name.upper()} is not JSON ({exc}): {value!r}") from exc
        return data

    @model_validator(mode="after")
    def _link_secret(self) -> ServiceSettings:
        """Never a known constant: anyone could sign view/unsubscribe/feedback links with it. Unset, every process
        started with the same data directory (``paperwire run``, the api next to it, the demo) shares one random
        secret."""
        if not self.link_secret:
            self.link_secret = local_link_secret(self.data_dir)
        return self


class ModelServiceSettings(ServiceSettings):
    """Settings of the services that use the embedding model: the embedder embeds papers with it, the parser
    tokenizes for it, the classifier embeds interest texts with it. One model for all, named once:
    ``PAPERWIRE_MODEL_ID``; each refuses to start when the export it finds holds another model."""

    model_id: str = Field(
        default=DEFAULT_MODEL_ID,
        validation_alias=AliasChoices("PAPERWIRE_MODEL_ID"),
        description="the embedding model (any sentence-transformers BERT model exported by `paperwire model export`)",
    )
    model_dir: Path | None = Field(
        default=None,
        description="this service's copy of the export (default: PAPERWIRE_MODEL_DIR, else <data_dir>/models/<id>)",
    )

    def resolved_model_dir(self) -> Path:
        return self.model_dir or default_model_dir(self.model_id, self.data_dir)


class UserUrlGuard(BaseModel):
    """The SSRF allow-list of the services that send to URLs users give (the notifier's deliveries, the api's
    test events): one setting, ``PAPERWIRE_WEBHOOK_ALLOWED_NETWORKS``, for both."""

    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description='CIDRs exempt from the SSRF check of user-given URLs (webhooks, Slack), e.g. ["127.0.0.1/32"]',
    )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        """Parsed here as the senders parse them (``parse_networks``), so a bad entry stops the start, not a send."""
        from shared.ssrf import parse_networks

        for network in networks:
            try:
                parse_networks([network])
            except ValueError:
                raise ValueError(
                    f"{network!r} is not a network: give addresses in CIDR form, e.g. 10.0.0.0/8 or 127.0.0.1/32"
                ) from None
        return networks


def settings_problem(exc: ValidationError) -> str | None:
    """One line naming the environment variables a settings class refused (``REDIS_URL: ...``), or None when
    ``exc`` is not about settings."""
    classes = {c.__name__: c for c in _subclasses(ServiceSettings)}
    settings_class = classes.get(exc.title)
    if settings_class is None:
        return None
    prefix = settings_class.model_config.get("env_prefix", "")
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a model-level check names its variable itself
            problems.append(message)
            continue
        name = str(error["loc"][0])
        env = name if name.isupper() else f"{prefix}{name.upper()}"
        problems.append(message if message.startswith(env) else f"{env}: {message}, got {error['input']!r}")
    return "; ".join(problems)


def environment_problem(exc: SettingsError) -> str:
    """One line for a value pydantic-settings could not even decode (a list setting that is not JSON): its error
    names the field, so the variable set in the environment is looked up by that field across the services."""
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return str(exc)
    field = match.group(1)
    names = sorted(
        {
            f"{cls.model_config.get('env_prefix', '')}{field}".upper()
            for cls in _subclasses(ServiceSettings)
            if field in cls.model_fields
        }
        & set(os.environ)
    ) or [field]
    cause = f" ({exc.__cause__})" if exc.__cause__ else ""
    return (
        f'{" / ".join(names)}: not valid JSON{cause}; lists are given as JSON, e.g. {names[0]}=\'["first", "second"]\''
    )


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]


def check_redis_url(url: str) -> None:
    from redis.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        raise ValueError(f"REDIS_URL {url!r} is not a Redis URL ({exc}), e.g. redis://localhost:6379/0") from None
    parts = urlsplit(url)
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError(f"REDIS_URL {url!r}: the database after the last '/' must be a number, e.g. /0")


def local_link_secret(data_dir: Path) -> str:
    """The secret in ``data_dir/link_secret`` (mode 0600), created at random the first time.

    Created under another name and linked into place, so processes starting together all read one complete
    secret."""
    path = Path(data_dir) / LINK_SECRET_FILE
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{LINK_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(32))
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        secret = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"PAPERWIRE_LINK_SECRET is unset and {path} cannot be read or created: {exc}") from exc
    if not secret:
        raise ValueError(f"{path} is empty: delete it or set PAPERWIRE_LINK_SECRET")
    return secret
