"""Leadership: one lease in Redis, with a fencing token.

``SET lease <instance>:<token> NX PX ttl`` takes it, where the token comes from ``INCR
fence``; a compare-and-``PEXPIRE`` script renews it, a compare-and-``DEL`` releases it
(Redis docs, distributed locks). A lease alone does not stop a leader that stalled past its
TTL from writing: so every append to the log checks the lease value inside the same script
(log.py), and the log itself is the resource the token fences.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from .keys import Keys

__all__ = ["Lease"]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """This instance's attempts to hold the lease. ``holder`` is the value while it does."""

    def __init__(self, redis: Redis, keys: Keys, ttl: float) -> None:
        self.instance = secrets.token_hex(6)
        self.ttl = ttl
        self.holder: str | None = None
        self.token = 0
        self._redis = redis
        self._keys = keys
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. Raises redis errors."""
        if await self._redis.exists(self._keys.lease):
            return False
        token = int(await self._redis.incr(self._keys.fence))
        holder = f"{self.instance}:{token}"
        if not await self._redis.set(self._keys.lease, holder, nx=True, px=self.ttl_ms):
            return False
        self.holder, self.token = holder, token
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when it is not ours any more. Raises redis errors."""
        if self.holder is None:
            return False
        return bool(await self._renew(keys=[self._keys.lease], args=[self.holder, self.ttl_ms]))

    async def release(self) -> None:
        """Give it up (so another instance takes over at once). Raises redis errors."""
        holder, self.holder = self.holder, None
        if holder is not None:
            await self._release(keys=[self._keys.lease], args=[holder])

    async def leader(self) -> str | None:
        """The current holder's value, or None."""
        value = await self._redis.get(self._keys.lease)
        return str(value) if value is not None else None
