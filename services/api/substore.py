"""SubscriptionStore with its id index moved off the key ``subscriptions``.

``shared.storage.SubscriptionStore`` keeps its id set at ``subscriptions``, which is also the name of the
``subscriptions`` stream (``Stream.SUBSCRIPTIONS``) that ``ensure_groups`` creates: every SADD/SMEMBERS then
fails with WRONGTYPE. Until ``shared/storage.py`` moves the set (proposed: ``subscriptions:ids``, what this
class uses), the api uses this. Delete this module once shared is fixed.
"""

from __future__ import annotations

from shared.storage import SubscriptionStore
from shared.subscription import Subscription

INDEX_KEY = "subscriptions:ids"


class ApiSubscriptionStore(SubscriptionStore):
    async def put(self, subscription: Subscription) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"subscription:{subscription.id}", subscription.model_dump_json())
            pipe.sadd(INDEX_KEY, subscription.id)
            pipe.sadd(f"owner:{subscription.owner}:subscriptions", subscription.id)
            await pipe.execute()

    async def delete(self, subscription_id: str) -> bool:
        subscription = await self.get(subscription_id)
        if subscription is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"subscription:{subscription_id}")
            pipe.srem(INDEX_KEY, subscription_id)
            pipe.srem(f"owner:{subscription.owner}:subscriptions", subscription_id)
            await pipe.execute()
        return True

    async def list(self, owner: str | None = None) -> list[Subscription]:
        key = f"owner:{owner}:subscriptions" if owner else INDEX_KEY
        ids = sorted(m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(key))
        if not ids:
            return []
        raws = await self.redis.mget([f"subscription:{i}" for i in ids])
        return [Subscription.model_validate_json(raw) for raw in raws if raw]
