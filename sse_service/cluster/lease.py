"""Leadership: one lease in Redis, with a fencing token.

``SET lease <instance>:<token> NX PX ttl`` takes it, where the token comes from ``INCR
fence``; a compare-and-``PEXPIRE`` script renews it, a compare-and-``DEL`` releases it
(Redis docs, distributed locks). A lease alone does not stop a leader that stalled past its
TTL from writing: so every append to the log checks the lease value inside the same script
(log.py), and the log itself is the resource the token fences.
"""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis

from .keys import Keys

__all__ = ["Lease"]

# Every call of an instance that follows or leads is also its heartbeat in the members set:
# one round trip per tick, whatever the role.
# KEYS: lease, fence, members. ARGV: instance, ttl ms, now, members older than this go.
# Returns {1 if taken now, the holder (or false), members}.
_ACQUIRE = """
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
local members = redis.call('ZCARD', KEYS[3])
local holder = redis.call('GET', KEYS[1])
if holder then
    return {0, holder, members}
end
holder = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], holder, 'PX', ARGV[2])
return {1, holder, members}
"""

# KEYS: lease, members, meta. ARGV: holder, ttl ms, instance, now, members older than this go.
# Returns {1 if renewed else 0, members, the log's epoch (or false)}.
_RENEW = """
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local members = redis.call('ZCARD', KEYS[2])
local renewed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
    renewed = redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {renewed, members, redis.call('HGET', KEYS[3], 'epoch')}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """This instance's attempts to hold the lease. ``holder`` is the value while it does.

    ``acquire`` and ``renew`` also tell what they saw: ``seen`` (the holder), ``members``
    (instances whose heartbeat is younger than three TTLs) and, when renewing, ``log_epoch``.
    """

    def __init__(self, redis: Redis, keys: Keys, ttl: float) -> None:
        self.instance = secrets.token_hex(6)
        self.ttl = ttl
        self.holder: str | None = None
        self.token = 0
        self.seen: str | None = None
        self.members = 1
        self.log_epoch: str | None = None
        self._redis = redis
        self._keys = keys
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def _heartbeat(self, now: float | None) -> tuple[float, float]:
        now = time.time() if now is None else now
        return now, now - 3 * self.ttl

    async def acquire(self, now: float | None = None) -> bool:
        """Take the lease if nobody holds it. Raises redis errors."""
        keys = [self._keys.lease, self._keys.fence, self._keys.members]
        taken, holder, members = await self._acquire(
            keys=keys, args=[self.instance, self.ttl_ms, *self._heartbeat(now)]
        )
        self.seen = str(holder) if holder else None
        self.members = max(1, int(members))
        if not taken:
            return False
        self.holder = str(holder)
        self.token = int(self.holder.rpartition(":")[2])
        return True

    async def renew(self, now: float | None = None) -> bool:
        """Extend the lease; False when it is not ours any more. Raises redis errors."""
        if self.holder is None:
            return False
        keys = [self._keys.lease, self._keys.members, self._keys.meta]
        args: list[str | int | float] = [self.holder, self.ttl_ms, self.instance, *self._heartbeat(now)]
        renewed, members, epoch = await self._renew(keys=keys, args=args)
        self.members = max(1, int(members))
        self.log_epoch = str(epoch) if epoch else None
        return bool(renewed)

    async def release(self) -> None:
        """Give it up (so another instance takes over at once). Raises redis errors."""
        holder, self.holder = self.holder, None
        if holder is not None:
            await self._release(keys=[self._keys.lease], args=[holder])
