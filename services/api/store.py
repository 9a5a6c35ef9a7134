"""The api's own Redis keys (all prefixed ``api:``): owners, hashed tokens, feed secrets, failed-auth counters.

- ``api:owners``                   set of owner names
- ``api:owner:{owner}:tokens``     set of token ids
- ``api:token:{token_id}``         JSON {owner, hash, created_at}: the token itself is never stored
- ``api:feed:{subscription_id}``   the subscription's feed secret; ``api:feedsecret:{secret}`` -> subscription id
- ``api:authfail:{client}``        failed token checks in the current window
- ``api:deliveries:{subscription_id}`` recent DeliveryResult JSON, newest first
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import WatchError

_OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOKEN_PREFIX = "pw"


class InvalidOwner(ValueError):
    pass


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def hash_secret(secret: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``pw_<id>_<secret>`` -> (id, secret); None when the shape is wrong."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1].isalnum() or len(parts[2]) < 20:
        return None
    return parts[1], parts[2]


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    owner: str
    created_at: str


class OwnerStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def create(self, owner: str) -> bool:
        """False when the owner already existed."""
        if not _OWNER_RE.fullmatch(owner):
            raise InvalidOwner("owner: use 1-64 letters, digits, '_', '.' or '-'")
        return bool(await self.redis.sadd("api:owners", owner))

    async def exists(self, owner: str) -> bool:
        return bool(await self.redis.sismember("api:owners", owner))

    async def list(self) -> list[str]:
        return sorted(_text(m) or "" for m in await self.redis.smembers("api:owners"))


class TokenStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def create(self, owner: str) -> tuple[str, TokenInfo]:
        """Return the token (shown once) and what is stored about it."""
        if not await OwnerStore(self.redis).exists(owner):
            raise InvalidOwner(f"owner {owner!r} does not exist: create it first")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = TokenInfo(token_id, owner, datetime.now(UTC).isoformat())
        record = {"owner": owner, "hash": hash_secret(secret), "created_at": info.created_at}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"api:token:{token_id}", json.dumps(record))
            pipe.sadd(f"api:owner:{owner}:tokens", token_id)
            await pipe.execute()
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", info

    async def verify(self, token: str) -> str | None:
        """The owner of a valid, unrevoked token; None otherwise."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        raw = await self.redis.get(f"api:token:{token_id}")
        if not raw:
            return None
        record = json.loads(raw)
        if not hmac.compare_digest(record["hash"], hash_secret(secret)):
            return None
        return record["owner"]

    async def revoke(self, token_id: str) -> bool:
        raw = await self.redis.get(f"api:token:{token_id}")
        if not raw:
            return False
        owner = json.loads(raw)["owner"]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"api:token:{token_id}")
            pipe.srem(f"api:owner:{owner}:tokens", token_id)
            await pipe.execute()
        return True

    async def list(self, owner: str) -> list[TokenInfo]:
        ids = sorted(_text(m) or "" for m in await self.redis.smembers(f"api:owner:{owner}:tokens"))
        out = []
        for token_id in ids:
            raw = await self.redis.get(f"api:token:{token_id}")
            if raw:
                out.append(TokenInfo(token_id, owner, json.loads(raw)["created_at"]))
        return out


class FeedSecrets:
    """One unguessable secret per subscription: the personal Atom feed's URL carries it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def get_or_create(self, subscription_id: str) -> str:
        """Both keys are written in one MULTI, so no crash leaves a feed URL without its reverse key; one
        written by an older version without it is repaired here."""
        feed_key = f"api:feed:{subscription_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(feed_key)
                    secret = _text(await pipe.get(feed_key))
                    pipe.multi()
                    if secret:
                        pipe.set(f"api:feedsecret:{secret}", subscription_id, nx=True)
                    else:
                        secret = secrets.token_urlsafe(24)
                        pipe.set(feed_key, secret)
                        pipe.set(f"api:feedsecret:{secret}", subscription_id)
                    await pipe.execute()
                    return secret
                except WatchError:
                    continue

    async def subscription_for(self, secret: str) -> str | None:
        return _text(await self.redis.get(f"api:feedsecret:{secret}"))

    async def forget(self, subscription_id: str) -> None:
        secret = _text(await self.redis.get(f"api:feed:{subscription_id}"))
        if secret:
            await self.redis.delete(f"api:feedsecret:{secret}", f"api:feed:{subscription_id}")


_COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class AuthLimiter:
    """Fixed-window counter of failed token checks per client: a brute force gets 429 instead of answers."""

    def __init__(self, redis: aioredis.Redis, limit: int, window_s: int) -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s

    async def failed(self, client: str) -> int | None:
        """Count a failed check; the seconds ``client`` must wait once it is over the limit, else None."""
        count, ttl = await self.redis.eval(_COUNT_FAILURE, 1, f"api:authfail:{client}", self.window_s)
        return max(int(ttl), 1) if int(count) > self.limit else None


class DeliveryHistory:
    """Recent DeliveryResult events per subscription, kept by the api's consumer of ``deliveries``."""

    keep = 200

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def record(self, subscription_id: str, event_json: str) -> None:
        key = f"api:deliveries:{subscription_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, event_json)
            pipe.ltrim(key, 0, self.keep - 1)
            await pipe.execute()

    async def recent(self, subscription_id: str, limit: int = 20) -> list[dict]:
        return [json.loads(r) for r in await self.redis.lrange(f"api:deliveries:{subscription_id}", 0, limit - 1)]
