"""``COMMAND_RATE`` for the whole cluster: one token bucket per client address, in Redis.

A client whose commands land on N instances (a load balancer takes turns) must not get N
times the rate, and one that sticks to one instance must get the whole rate, not a share.
So the bucket lives in Redis, and one script refills and spends it: no two instances can
spend the same token. The time is Redis's own (``TIME``), so the instances' clocks do not
matter. A bucket expires once it would be full again, so idle addresses cost nothing.

The instance's own bucket (the single-process one, with the same rate and burst) is asked
first: a flood from one address is refused there, without a Redis call per request. When
Redis cannot answer, the local bucket is all there is; that costs nothing in accuracy that
matters, since a command cannot reach the leader without Redis anyway.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..access import RateLimiter
from .keys import Keys
from .log import describe_redis_error

__all__ = ["SharedRateLimiter"]

log = logging.getLogger("sse_service.cluster")

TIMEOUT = 0.5  # seconds a rate check may wait for Redis before the local bucket decides alone

# KEYS: the bucket (a hash: tokens, at). ARGV: rate per second, burst.
# Returns the seconds to wait as a string (0 when a token was spent): a Lua number would be
# cut to an integer in the reply.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens < 1 then
    wait = (1 - tokens) / rate
else
    tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimiter:
    """What CommandEndpoint asks in a cluster (the same ``wait`` as RateLimiter)."""

    def __init__(self, local: RateLimiter, redis: Redis, keys: Keys) -> None:
        self.local = local
        self._keys = keys
        self._take = redis.register_script(_TAKE)
        self._failing = False

    async def wait(self, ip: str) -> float:
        """Spend one of this address's tokens. 0 when allowed, else the seconds until one is."""
        wait = self.local.take(ip)
        if wait:
            return wait
        try:
            async with asyncio.timeout(TIMEOUT):
                reply = await self._take(keys=[self._keys.rate(ip)], args=[repr(self.local.rate), self.local.burst])
        except (RedisError, OSError, TimeoutError) as e:
            if not self._failing:
                self._failing = True
                reason = describe_redis_error(e)
                log.warning("Command rate: Redis did not answer (%s); this instance counts alone", reason)
            return 0.0
        self._failing = False
        return float(reply)
